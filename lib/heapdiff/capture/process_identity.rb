# frozen_string_literal: true

require "etc"
require "time"
require_relative "../printable"

module Heapdiff
  # Which process a snapshot comes from: its host, its pid and when it started. Dumps
  # of different processes cannot be diffed (identity is an address, and addresses mean
  # something within one process only), and a pid alone does not name a process: pids
  # are reused (a restarted worker can get its old one), and two hosts can write to one
  # directory (a shared volume, a copied folder).
  #
  # Written into every snapshot's sidecar ("hostname", "pid", "process_started_at") and
  # read back by Snapshot#process. Older sidecars (heapdiff 0.1.0 before this field) have no start time:
  # their processes are told apart by host and pid only.
  #
  # @!attribute [r] hostname
  #   @return [String, nil] the host's name; in a redacted sidecar "sha256:" and a hash
  # @!attribute [r] pid
  #   @return [Integer]
  # @!attribute [r] started_at
  #   @return [Time, nil] when the process started (Linux: /proc, to 1/100 s); where
  #     /proc is missing, when heapdiff first asked in this process; nil in old sidecars
  ProcessIdentity = Struct.new(:hostname, :pid, :started_at, keyword_init: true) do
    class << self
      # The identity of this process, worked out once per pid (a forked child is a new
      # process: it gets its own).
      # @return [ProcessIdentity]
      def current
        pid = ::Process.pid
        cached = @current
        return cached if cached&.pid == pid

        @current = new(hostname: Etc.uname[:nodename], pid: pid, started_at: start_time(pid) || Time.now.utc.round(2))
      end

      # The identity a sidecar records, or nil when it names no pid.
      # @param meta [Hash{String => Object}, nil] a sidecar's contents
      # @return [ProcessIdentity, nil]
      def from_meta(meta)
        return nil unless meta.is_a?(Hash) && meta["pid"].is_a?(Integer)

        started = meta["process_started_at"]
        started = begin
          Time.iso8601(started)
        rescue ArgumentError, TypeError
          nil
        end
        new(hostname: meta["hostname"].is_a?(String) ? meta["hostname"] : nil, pid: meta["pid"], started_at: started)
      end

      private

      # Linux: the boot time (/proc/stat btime, in seconds) plus the process's start in
      # clock ticks after boot (/proc/PID/stat, field 22, see proc(5)). nil elsewhere.
      def start_time(pid)
        boot = File.read("/proc/stat")[/^btime (\d+)$/, 1] or return nil
        # The command name (field 2) is in parentheses and may hold spaces and ")":
        # the fields after it are counted from the last ")".
        fields = File.read("/proc/#{pid}/stat").rpartition(")").last.split
        ticks = Integer(fields[19])
        # Rounded as the sidecar writes it, so that a read-back identity equals this one.
        Time.at(Integer(boot) + Rational(ticks, Etc.sysconf(Etc::SC_CLK_TCK))).utc.round(2)
      rescue SystemCallError, IOError, ArgumentError, TypeError, NotImplementedError
        nil
      end
    end

    # The sidecar's fields for this identity.
    # @return [Hash{String => Object}]
    def to_meta
      { "hostname" => hostname, "pid" => pid, "process_started_at" => started_at&.getutc&.strftime("%FT%T.%2NZ") }
    end

    # "pid 4242 on web-1, started 2026-12-01 00:12:03 UTC"
    def to_s
      host = hostname&.start_with?("sha256:") ? "a redacted host" : hostname || "an unknown host"
      started = started_at ? ", started #{started_at.getutc.strftime("%F %T")} UTC" : ""
      "pid #{pid} on #{Printable.escape(host)}#{started}"
    end

    def inspect
      "#<Heapdiff::ProcessIdentity #{self}>"
    end
  end
end
