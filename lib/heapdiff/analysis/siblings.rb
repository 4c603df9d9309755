# frozen_string_literal: true

require "json"
require_relative "../errors"
require_relative "../printable"
require_relative "../capture/snapshot"
require_relative "leak_growth"

module Heapdiff
  # The leaks of several processes that run the same code (Puma workers, Sidekiq
  # swarm children, one app on several hosts), matched by signature (Leak#signature):
  # those every process has (the code leaks) apart from those only some have (a leak
  # that depends on what a process was given to do: a route one worker served, a
  # tenant one host had). Made by Siblings.build or Heapdiff.compare; Enumerable over
  # Row, the leaks every process shares first, each group largest total growth first.
  #
  # Each process's leaks come from the trend over its own latest snapshots: a leak is
  # one of that trend's leaks that grew (Trend#leaks). A process where it is no leak is
  # looked at through the leak's sites (LeakGrowth.at_sites): when they grew there too
  # (a worker whose growth stalled for one interval, which the trend's rule does not
  # call growing), the process has the leak as well; Row#growths holds that
  # LeakGrowth (#at_sites true), or nil where the sites did not grow or do not exist.
  class Siblings
    include LeakRows

    # One leak across the processes: +signature+, +title+, and +growths+ (one per
    # process, in #processes order: the LeakGrowth in that process, counted at its
    # sites where it is no leak by the trend's rule but they grew; nil where it did not
    # grow).
    Row = Struct.new(:signature, :title, :growths, keyword_init: true) do
      # True when every process has it.
      def shared?
        growths.all?
      end

      # @return [Array<Integer, nil>] objects at each process's last snapshot, nil where
      #   it did not grow
      def counts
        growths.map { |g| g&.count }
      end

      # @return [Integer] objects it grew by, over every process that has it
      def total_growth
        growths.compact.sum(&:growth)
      end

      # @return [Array<String>] the leak's signature in each process that has it (they
      #   differ when Leak::Identity#same? matched it: hosts on other releases)
      def signatures
        [signature, *growths.compact.map(&:signature)].uniq
      end

      # @return [Hash{Symbol => Object}] counts and growths in objects, one per process (nil: no leak there)
      def to_h
        { signature: signature, title: Printable.utf8(title), shared: shared?, counts: counts,
          growths: growths.map { |g| g&.growth }, at_sites: growths.map { |g| g&.at_sites }, total_growth: total_growth }
      end

      # @return [String] #to_h as JSON
      def to_json(*args)
        to_h.to_json(*args)
      end

      # @return [String]
      def inspect
        "#<Heapdiff::Siblings::Row #{signature} #{shared? ? "shared" : "some"} counts=#{counts} #{title}>"
      end
    end

    # One process (a sibling): its +identity+ (ProcessIdentity), the +snapshots+ its
    # trend is over (their paths), +leaks+ (Array<LeakGrowth>), and +sites+: its trend's
    # sites and their counts (LeakGrowth.site_counts; nil: not known), +hours+, +work+,
    # +intervals+ (its trend's), to count another process's leak at its sites.
    Sibling = Struct.new(:identity, :snapshots, :leaks, :sites, :hours, :work, :intervals, keyword_init: true) do
      # @return [Hash{Symbol => Object}] the process and its snapshots' paths
      def to_h
        { pid: identity.pid, hostname: Printable.utf8(identity.hostname),
          started_at: identity.started_at&.getutc&.iso8601(2), process: identity.to_s,
          snapshots: snapshots.map { |s| Printable.utf8(s) } }
      end
    end

    class << self
      # The processes whose snapshots are in +dirs+ or in their subdirectories one level
      # down (a Recorder in a forked child writes to DIR/pid-PID), each process's leaks
      # from the trend over its latest +last+ snapshots (all when nil). Snapshots that
      # no sidecar names a process for, and processes with a single snapshot, are left
      # out with a warning. Each trend is closed before the next is made.
      #
      # @param dirs [String, Pathname, Array<String, Pathname>]
      # @param last [Integer, nil] snapshots per process (at least 2)
      # @return [Siblings]
      # @raise [FileError] no such directory, or one that cannot be listed
      # @raise [TrendError] fewer than two processes with two snapshots each
      # @raise [ParseError, Interrupted] as Heapdiff.trend
      # @raise [ArgumentError] +last+ below 2
      def build(dirs, last: nil)
        unless NilClass === last || (Integer === last && last >= 2)
          raise ArgumentError, "heapdiff: last: must be 2 or more, got #{Arguments.kind(last)}"
        end

        dirs = (Array === dirs ? dirs : [dirs]).map { |d| Arguments.path(d, "dir") }
        # uniq: a directory given with its own pid-PID subdirectory lists those twice.
        groups = Snapshot.processes(dirs.flat_map { |dir| in_dir(dir) }.uniq(&:path))
        warnings = []
        if (unnamed = groups.delete(nil))
          warnings << "#{unnamed.size} snapshot#{"s" unless unnamed.size == 1} without a sidecar naming " \
                      "their process left out"
        end
        single, several = groups.partition { |_, snapshots| snapshots.size < 2 }
        single.each { |identity, _| warnings << "#{identity}: a single snapshot, no trend; left out" }
        if several.size < 2
          # What was left out is why there are too few: said here, as no table follows.
          raise TrendError, "heapdiff: comparing needs at least two processes with two snapshots or more each, " \
                            "found #{several.size} in #{dirs.map { |d| Printable.escape(d) }.join(", ")}" \
                            "#{" (#{warnings.join("; ")})" unless warnings.empty?}"
        end

        several = several.map { |identity, snapshots| [identity, last ? snapshots.last(last) : snapshots] }
        several.select { |_, snapshots| snapshots.size == 2 }.each do |identity, _|
          warnings << "#{identity}: 2 snapshots, and a trend calls a site growing over 3 or more: no leak can show"
        end
        new(several.map { |identity, snapshots| process(identity, snapshots) }, warnings: warnings)
      end

      private

      def in_dir(dir)
        raise FileError, "heapdiff: no such directory: #{Printable.escape(dir)}" unless File.directory?(dir)

        subdirs = Dir.children(dir).sort.map { |name| File.join(dir, name) }.select { |path| File.directory?(path) }
        ([dir] + subdirs).flat_map { |d| Snapshot.list(d) }
      rescue SystemCallError => e
        raise FileError, "heapdiff: cannot list #{Printable.escape(dir)}: #{e.message}"
      end

      def process(identity, snapshots)
        trend = Trend.build(snapshots)
        begin
          Sibling.new(identity: identity, snapshots: snapshots.map(&:path),
                      leaks: LeakGrowth.of(trend).select { |leak| leak.growth.positive? },
                      sites: LeakGrowth.site_counts(trend), hours: trend.hours, work: trend.work_total,
                      intervals: trend.snapshots.size - 1)
        ensure
          trend.close
        end
      end
    end

    # @return [Array<Sibling>] the processes compared, in the order of Row#growths
    attr_reader :processes
    # @return [Array<String>] what was left out, and why
    attr_reader :warnings

    # @param processes [Array<Sibling>]
    # @param warnings [Array<String>]
    def initialize(processes, warnings: [])
      @processes = processes.freeze
      estimated = processes.flat_map(&:leaks).select(&:estimated).map(&:signature).uniq
      unless estimated.empty?
        warnings += ["the counts of #{estimated.join(", ")} are estimates before the last snapshot: a site they " \
                     "hold part of is counted by their share of it at the last one"]
      end
      @warnings = warnings.freeze
      @rows = same_leaks(processes).map { |growths| row(growths.compact.first.signature, growths) }
                                   .sort_by { |row| [row.shared? ? 0 : 1, -row.total_growth, row.signature] }.freeze
      return unless @rows.any? { |row| row.growths.compact.any?(&:at_sites) }

      @warnings += ["counts marked \"sites\" are of a process where the trend's rule does not call the leak growing " \
                    "but its sites grew: all the objects of those sites, held through it or not"]
    end

    # @return [Array<Row>] the leaks every process has
    def shared
      @rows.select(&:shared?)
    end

    # @return [Array<Row>] the leaks only some processes have
    def some
      @rows.reject(&:shared?)
    end

    # @return [Hash{Symbol => Object}] the processes, the shared and the other rows, warnings
    def to_h
      { processes: processes.map(&:to_h), shared: shared.map(&:to_h), some: some.map(&:to_h), warnings: warnings }
    end

    # @return [String] #to_h as JSON
    def to_json(*args)
      to_h.to_json(*args)
    end

    # The processes, then the shared leaks and those of only some (naming the
    # processes that have it), each with the objects it holds in each process (its
    # growth in brackets; "-" where it is no leak).
    def to_s
      lines = ["Leaks across #{processes.size} processes:"]
      processes.each { |p| lines << "  #{p.identity} (#{p.snapshots.size} snapshots)" }
      lines << "Per process: the leak's objects at its last snapshot (+ growth since its first); - none."
      [["In every process", shared], ["Only in some", some]].each do |heading, rows|
        lines << "#{heading} (#{rows.size}):"
        rows.each do |row|
          having = row.growths.zip(processes).filter_map { |g, p| g && name(p) }
          lines << "  #{row.signature}  #{Printable.escape(row.title)}" \
                   "#{" (only in #{having.join(", ")})" unless row.shared?}"
          cells = row.growths.zip(processes).map do |g, p|
            "#{name(p)}: #{g ? "#{g.count} (+#{g.growth}#{", sites" if g.at_sites})" : "-"}"
          end
          lines << "    #{cells.join("  ")}"
        end
      end
      warnings.each { |w| lines << "warning: #{w}" }
      lines.join("\n")
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Siblings processes=#{processes.map { |p| p.identity.pid }} shared=#{shared.size} some=#{some.size}>"
    end

    private

    # The processes' leaks gathered by leak: for each, its LeakGrowth in each process
    # (nil where it is none), matched by Leak::Identity#same? to the first process's
    # that has it (its signature, or its holder chain with a site in the same file:
    # hosts that run another release of a file still share its leaks).
    def same_leaks(processes)
      found = [] # growths, one per leak
      index = Leak::IdentityIndex.new
      processes.each_with_index do |process, i|
        process.leaks.each do |leak|
          identity = leak.identity
          growths = index.find(identity) { |known| known[i].nil? }
          unless growths
            found << (growths = Array.new(processes.size))
            index.add(identity, growths)
          end
          growths[i] = leak
        end
      end
      found
    end

    # The leak of +signature+ in each process: its LeakGrowth there, or where it is no
    # leak, its sites' growth when they grew.
    def row(signature, growths)
      known = growths.compact.first
      growths = growths.zip(processes).map do |growth, process|
        next growth if growth || process.sites.nil?

        at_sites = LeakGrowth.at_sites(known, process.sites, hours: process.hours, work: process.work,
                                                             intervals: process.intervals)
        at_sites if at_sites&.growth&.positive?
      end
      Row.new(signature: signature, title: known.title, growths: growths)
    end

    # "pid 4242", or "pid 4242@web-1" when the processes run on more than one host.
    def name(process)
      identity = process.identity
      hosts = processes.map { |p| p.identity.hostname }.uniq
      hosts.size > 1 ? "pid #{identity.pid}@#{Printable.escape(identity.hostname.to_s)}" : "pid #{identity.pid}"
    end
  end
end
