# frozen_string_literal: true

require "json"
require_relative "../errors"
require_relative "../arguments"
require_relative "../printable"
require_relative "process_identity"
require_relative "snapshot_writer"

module Heapdiff
  class << self
    # Takes a heap snapshot of this process: a full GC, then ObjectSpace.dump_all into
    # +path+, or into the next free heap-NNNN.json in +dir+ (default tmp/heapdiff), with
    # a sidecar heap-NNNN.meta.json. Files are mode 0600; directories it creates, 0700.
    # No reader ever sees a partial dump (see SnapshotWriter for the order of writes).
    #
    # +gzip: true+ compresses the dump. +fork: true+ has a forked child write it, so
    # that this process pauses only for the fork; the Snapshot it returns is then
    # pending until the child is done (Snapshot#wait). +redact: true+ writes the dump
    # without string, symbol and float values (see Heapdiff.redact): the unredacted
    # dump never has a name on disk.
    #
    # Raises SnapshotError when the snapshot cannot be written. It takes a lock, so
    # not from a signal handler: a Recorder's +signal:+ is made for that.
    #
    # @param path [String, Pathname, nil] where the dump goes (replaced, like File.write)
    # @param dir [String, Pathname, nil] or the directory of numbered snapshots
    # @param gzip [Boolean]
    # @param fork [Boolean]
    # @param redact [Boolean]
    # @return [Snapshot] complete, or pending with +fork: true+
    # @raise [SnapshotError] the dump, its sidecar or the directory could not be written
    # @raise [ArgumentError, TypeError] for both +path+ and +dir:+, or a path that is none
    def snapshot(path = nil, dir: nil, gzip: false, fork: false, redact: false)
      Snapshot.take(path, dir: dir, gzip: gzip, fork: fork, redact: redact)
    end
  end

  # A heap dump of a live process, with the sidecar that describes it (#meta: pid,
  # hostname, time, Ruby, GC.count and GC.stat, RSS, live objects, whether allocation
  # tracing was on, heapdiff's version, a sequence number).
  #
  # A snapshot taken with +fork: true+ is pending until its child has written it:
  # #path and #meta are nil until then, #wait blocks for it. Heapdiff.load and
  # Heapdiff.diff accept a Snapshot (through #to_path, which waits).
  class Snapshot
    DEFAULT_DIR = "tmp/heapdiff"
    DUMP_NAME = /\Aheap-(\d+)\.json(?:\.gz)?\z/

    Child = Struct.new(:dir, :path, :temp_suffix, :reader, :waiter, :work)
    private_constant :Child

    @lock = Mutex.new
    @sequence = 0

    # The parser's C entry point. Its objects are allocated in the file that calls it,
    # so a diff's own-objects filter knows what heapdiff parsed. Up to json 2.9 that is
    # JSON::Parser#parse; from 2.10 (sid's json 3.1) JSON::Parser#parse is Ruby in
    # json/ext.rb, which calls JSON::Ext::ParserConfig#parse.
    PARSER_CONFIG = defined?(JSON::Ext::ParserConfig) ? JSON::Ext::ParserConfig : nil
    private_constant :PARSER_CONFIG

    class << self
      # Parses +text+ (a JSON String) here; raises JSON::ParserError.
      def parse_json(text)
        PARSER_CONFIG ? PARSER_CONFIG.new(nil).parse(text) : JSON::Parser.new(text).parse
      end

      # Heapdiff.snapshot.
      #
      # @return [Snapshot]
      # @raise [SnapshotError, ArgumentError, TypeError] as Heapdiff.snapshot
      def take(path = nil, dir: nil, gzip: false, fork: false, redact: false)
        path = Arguments.path(path, "path", nil_ok: true)
        dir = Arguments.path(dir, "dir:", nil_ok: true)
        raise ArgumentError, "heapdiff: give a path or dir:, not both" if path && dir

        path &&= File.expand_path(path)
        dir = path ? File.dirname(path) : File.expand_path(dir || DEFAULT_DIR)
        @lock.synchronize do
          @sequence += 1
          writer = SnapshotWriter.new(dir: dir, path: path, gzip: gzip ? true : false, redact: redact ? true : false,
                                      sequence: @sequence)
          # Time.new rather than Time.now: Ruby 3.1 allocates the latter in
          # <internal:timev>, where a diff would not know it for heapdiff's own.
          taken_at = Time.new
          if fork
            pid, reader = writer.fork_write(taken_at)
            child = Child.new(dir, path, writer.temp_suffix, reader, Process.detach(pid), writer.work)
            new(taken_at: taken_at, child_pid: pid, child: child)
          else
            dump, meta_path, meta = writer.write(taken_at)
            new(taken_at: taken_at, path: dump, meta_path: meta_path, meta: meta)
          end
        end
      end

      # The complete snapshots in +dir+ (numbered names), oldest first.
      #
      # Several processes can share a directory (Puma workers, a restarted Sidekiq, two
      # hosts on one volume); their snapshots must not be diffed together. +process:+
      # picks one process's (as the sidecars name it, see ProcessIdentity):
      # - nil: all snapshots;
      # - :latest: those of the process that took the latest snapshot (by sidecar time);
      # - an Integer pid, or a ProcessIdentity: that process's.
      # With :latest or a pid, snapshots without a sidecar are left out when any
      # snapshot has one (which process took them is unknown); when none has, all are
      # kept.
      #
      # @param dir [String, Pathname]
      # @param process [nil, :latest, Integer, ProcessIdentity]
      # @return [Array<Snapshot>]
      # @raise [FileError] when the directory cannot be listed
      # @raise [MixedProcessesError] when the pid names more than one process in +dir+
      # @raise [ArgumentError] for another +process:+
      def list(dir, process: nil)
        of_process(all_in(dir), process, dir)
      end

      # The snapshots among +snapshots+ that +process+ picks, as Snapshot.list does.
      # @param snapshots [Array<Snapshot>]
      # @param process [nil, :latest, Integer, ProcessIdentity]
      # @param dir [String] where they are, for messages
      # @return [Array<Snapshot>]
      # @raise [MixedProcessesError] when the pid names more than one process
      # @raise [ArgumentError] for another +process+
      def of_process(snapshots, process, dir = "these snapshots")
        unless process.nil? || process == :latest || Integer === process || ProcessIdentity === process
          raise ArgumentError, "heapdiff: process: must be nil, :latest, a pid or a ProcessIdentity, " \
                               "got #{Arguments.kind(process)}"
        end

        return snapshots if process.nil?

        groups = processes(snapshots)
        named = groups.except(nil)
        return snapshots if named.empty?

        case process
        when :latest then named.values.last
        when ProcessIdentity then named.fetch(process, [])
        else
          matching = named.select { |identity, _| identity.pid == process }
          if matching.size > 1
            raise MixedProcessesError.new("heapdiff: pid #{process} names #{matching.size} processes in " \
                                          "#{Printable.escape(dir.to_s)}: #{describe(matching)}",
                                          matching.transform_values { |group| group.map(&:path) })
          end
          matching.values.first || []
        end
      end

      # Snapshots grouped by the process that took them, each group oldest first, the
      # groups ordered by their latest snapshot (the latest process last). Snapshots
      # without a sidecar naming their process are under nil.
      # @param snapshots [Array<Snapshot>]
      # @return [Hash{ProcessIdentity, nil => Array<Snapshot>}]
      def processes(snapshots)
        snapshots.group_by(&:process).sort_by { |_, group| group.map(&:taken_at).max }.to_h
      end

      # Raises MixedProcessesError unless the sidecars of +values+ (Snapshots, dump
      # paths; others are skipped) name at most one process. Dumps without a sidecar
      # pass: the diff then checks the dumps themselves (their heap pages).
      # @param values [Array<Snapshot, String, Pathname, Object>]
      # @param what [String] what needs one process, for the message: "a diff"
      # @return [nil]
      # @raise [MixedProcessesError]
      def check_one_process(values, what)
        snapshots = values.filter_map { |v| Snapshot === v ? v.wait : sidecar_only(v) }
        named = processes(snapshots).except(nil)
        return if named.size <= 1

        paths = named.transform_values { |group| group.map(&:path) }
        raise MixedProcessesError.new("heapdiff: #{what} needs snapshots of one process, and these come from " \
                                      "#{named.size}: #{describe(named)}", paths)
      end

      # The snapshot whose dump is +path+, with its sidecar's meta when it has one (a
      # damaged sidecar is left out, with a warning).
      #
      # @param path [String, Pathname]
      # @return [Snapshot]
      # @raise [FileError] no such dump
      def read(path)
        path = File.expand_path(Arguments.path(path, "path"))
        raise FileError, "heapdiff: no such dump: #{path}" unless File.file?(path)

        meta_path = meta_path_for(path)
        meta, taken_at = read_meta(meta_path)
        new(taken_at: taken_at || File.mtime(path), path: path, meta_path: meta && meta_path, meta: meta)
      rescue Errno::ENOENT
        raise FileError, "heapdiff: no such dump: #{path}"
      end

      # "dir/heap-0003.json" => "dir/heap-0003.meta.json" (also for .json.gz).
      #
      # @param path [String]
      # @return [String]
      def meta_path_for(path)
        "#{path.sub(/\.json(?:\.gz)?\z/, "")}.meta.json"
      end

      private

      # Every complete snapshot in +dir+, by number.
      def all_in(dir)
        dir = File.expand_path(Arguments.path(dir, "dir"))
        # Names are bytes: one that is not UTF-8 (no snapshot's) must not stop the listing.
        numbered = Dir.children(dir).filter_map { |name| (n = name.b[DUMP_NAME, 1]) && [n.to_i, name] }
        numbered.sort.filter_map do |_, name|
          read(File.join(dir, name))
        rescue FileError
          nil # deleted (a Recorder's keep) since the directory was read
        end
      rescue Errno::ENOENT
        []
      rescue SystemCallError => e
        raise FileError, "heapdiff: cannot list #{Printable.escape(dir)}: #{e.message}"
      end

      # "pid 1 on web-1, started … (3 snapshots); pid 2 on web-1, started … (1 snapshot)"
      def describe(groups)
        groups.map { |identity, group| "#{identity} (#{group.size} snapshot#{"s" unless group.size == 1})" }.join("; ")
      end

      # A Snapshot for the dump +value+ names, with its sidecar, without requiring the
      # dump to exist (loading it reports that); nil for what names no path.
      def sidecar_only(value)
        path = Arguments.path(value, "path")
        meta, taken_at = read_meta(meta_path_for(File.expand_path(path)))
        meta && new(taken_at: taken_at || Time.at(0), path: path, meta: meta)
      rescue TypeError
        nil
      end

      # [meta, time taken] from the sidecar at +meta_path+; [nil, nil] when there is none,
      # or when it is damaged (not JSON, not an object, a bad time), with a warning: a
      # damaged sidecar costs its snapshot the meta, never the listing.
      def read_meta(meta_path)
        return [nil, nil] unless File.file?(meta_path)

        # UTF-8 whatever the locale: heapdiff writes sidecars in UTF-8, and json 2.10+
        # transcodes a String in the default external encoding (US-ASCII without a
        # locale) and fails on its first non-ASCII byte.
        meta = JSON.parse(File.read(meta_path, encoding: Encoding::UTF_8))
        raise TypeError, "not a JSON object" unless meta.is_a?(Hash)

        [meta, meta["time"] && parse_time(meta["time"])]
      rescue JSON::ParserError, TypeError, ArgumentError, EncodingError, SystemCallError, IOError => e
        warn "heapdiff: ignoring the damaged sidecar #{Printable.escape(meta_path)}: #{e.class}: #{e.message[0, 200]}"
        [nil, nil]
      end

      def parse_time(text)
        require "time"
        Time.iso8601(text)
      end
    end

    # When the heap was captured (for fork: true, the moment of the fork).
    attr_reader :taken_at

    def initialize(taken_at:, path: nil, meta_path: nil, meta: nil, child_pid: nil, child: nil)
      @taken_at = taken_at
      @child_pid = child_pid
      @path = path
      @meta_path = meta_path
      @meta = meta
      @child = child
      @settled = child.nil?
      @error = nil
      @lock = Mutex.new
    end

    # The dump, once it is complete; nil while a forked child writes it or if it failed.
    #
    # @return [String, nil]
    def path
      settle(0)
      @path
    end

    # The sidecar's path, once the dump is complete.
    #
    # @return [String, nil]
    def meta_path
      settle(0)
      @meta_path
    end

    # The sidecar's contents (a Hash with String keys), once the dump is complete.
    #
    # @return [Hash{String => Object}, nil] nil without a sidecar, or while pending
    def meta
      settle(0)
      @meta
    end

    # @return [Boolean] true while a forked child writes the dump
    def pending?
      !settle(0)
    end

    # @return [Boolean] true once the dump is in place
    def complete?
      !path.nil?
    end

    # The SnapshotError of a forked snapshot whose child failed, else nil.
    #
    # @return [SnapshotError, nil]
    def error
      settle(0)
      @error
    end

    # The process that took the snapshot, as its sidecar names it (host, pid, start
    # time); nil without a sidecar, or while a forked snapshot is pending.
    # @return [ProcessIdentity, nil]
    def process
      @process ||= ProcessIdentity.from_meta(meta)
    end

    # The pid of the child that writes a fork: true snapshot (nil for one taken
    # in-process).
    attr_reader :child_pid

    # Waits for a forked snapshot's child, at most +timeout+ seconds (nil: no limit).
    # Returns self once the dump is complete, nil on timeout; raises SnapshotError if
    # the child failed (its temporary files are removed).
    #
    # @param timeout [Numeric, nil] seconds (nil: no limit)
    # @return [Snapshot, nil]
    # @raise [SnapshotError] the child failed
    def wait(timeout = nil)
      return nil unless settle(timeout)
      raise @error if @error

      self
    end

    # The dump's path, waiting for it if need be: Heapdiff.load(snapshot) works.
    #
    # @return [String]
    # @raise [SnapshotError] the child failed
    def to_path
      wait.path
    end

    # Loads the dump (Heapdiff.load); close the Heap when done (Heap#close), or load
    # with Heapdiff.load(snapshot) { |heap| … }.
    #
    # @return [Heapdiff::Heap]
    # @raise [ParseError, FileError, Interrupted, SnapshotError] as Heapdiff.load and #wait
    def load
      require_relative "../../heapdiff"
      Heapdiff.load(to_path)
    end

    def inspect
      state = if pending? then "pending (child pid #{child_pid})"
              elsif @error then "failed"
              else
                File.basename(@path)
              end
      "#<Heapdiff::Snapshot #{state} taken_at=#{taken_at.getutc.strftime("%Y-%m-%dT%H:%M:%S.%LZ")}>"
    end
    alias to_s inspect

    private

    # True once the outcome is known; waits up to +timeout+ seconds for the child.
    def settle(timeout)
      child = @child
      return true if @settled || child.nil?
      return false unless child.waiter.join(timeout)

      @lock.synchronize { finish unless @settled }
      true
    end

    # The child sent ["ok", meta] once the dump and sidecar were in place, or
    # ["error", message] (see SnapshotWriter#fork_write). The exit status only explains
    # a failure: code that reaps every child (a Puma master) may have taken it first.
    # Drops the child's objects afterwards.
    def finish
      child = @child
      status = child.waiter.value
      report = child.reader.read_nonblock(1 << 20, exception: false)
      child.reader.close
      outcome, *rest = begin
        Snapshot.parse_json(report) if report.is_a?(String)
      rescue JSON::ParserError
        nil
      end
      if outcome == "ok"
        @meta = rest.first
        @path = child.path || File.join(child.dir, @meta["dump"])
        @meta_path = self.class.meta_path_for(@path)
      else
        SnapshotWriter.remove_temps(child.dir, child.temp_suffix)
        Work.add(child.work) # the snapshot failed: its work goes to the next one
        @error = SnapshotError.new("heapdiff: the snapshot child (pid #{@child_pid}) #{ending(status)}" \
                                   "#{": #{rest.first}" if outcome == "error"}")
      end
      @child = nil
      @settled = true
    end

    def ending(status)
      if status.nil? then "ended without finishing"
      elsif status.signaled? then "was killed by SIG#{Signal.signame(status.termsig)}"
      else
        "exited with status #{status.exitstatus} before finishing"
      end
    end
  end
end
