# frozen_string_literal: true

require "json"
require "time"
require_relative "../errors"
require_relative "../capture/snapshot"
require_relative "memory_verdict"

module Heapdiff
  # How each allocation site evolves across N snapshots of one process (made by
  # Heapdiff.trend): live objects and memsize per snapshot, how many of them are the
  # same objects as in the snapshot before, and a verdict per site (see Site#verdict).
  # Enumerable over Site, ranked: growing sites first, largest growth first.
  #
  # Memory over time comes from the snapshots' sidecars (#memory): RSS, live slots, GC
  # counts. Growth per hour needs the sidecars' times; without them a trend gives growth
  # per snapshot only, and says so in #warnings.
  class Trend
    include Enumerable

    # One snapshot's memory: sidecar figures (nil without a sidecar) and what the sites
    # count in its dump (+objects+, +memsize+).
    Point = Struct.new(:index, :path, :time, :rss_bytes, :live_objects, :live_slots, :gc_count,
                       :minor_gc_count, :major_gc_count, :objects, :memsize, keyword_init: true) do
      def to_h
        super.merge(path: Printable.utf8(path), time: time&.getutc&.iso8601(3))
      end
    end

    VERDICTS = %i[growing stable transient].freeze
    # Seconds the snapshots must span for growth per hour (Site#growth_per_hour).
    RATE_SPAN = 60

    class << self
      # +snapshots+: Snapshots or dump paths, oldest first (Heapdiff.trend turns a
      # directory into Snapshot.list). Loads them one after the other without the GVL,
      # at most two at a time.
      #
      # @param snapshots [Array<Snapshot, String>]
      # @param include_noise [Boolean]
      # @return [Trend]
      # @raise [TrendError] snapshots that make no trend
      # @raise [ParseError, FileError, Interrupted] as Heapdiff.load
      def build(snapshots, include_noise: false)
        snapshots = snapshots.map { |s| s.is_a?(Snapshot) ? s.wait : Snapshot.read(s) }
        check(snapshots)
        trend = _build(snapshots.map(&:path), include_noise, include_noise ? [] : OWN_PATHS)
        trend.send(:attach, snapshots)
        trend
      end

      # The snapshots a directory (Snapshot.list, with +process:+) or a list of paths
      # stands for.
      #
      # @param paths_or_dir [String, Pathname, Array<String, Pathname, Snapshot>]
      # @param process [nil, :latest, Integer, ProcessIdentity] for a directory
      # @return [Array<Snapshot, String>] a directory's Snapshots, or the list as given
      # @raise [FileError] no such directory
      # @raise [TypeError] neither a directory nor a list
      def snapshots_from(paths_or_dir, process: nil)
        paths_or_dir = paths_or_dir.to_path if ::Object === paths_or_dir && paths_or_dir.respond_to?(:to_path)
        case paths_or_dir
        when String
          raise FileError, "heapdiff: no such directory: #{paths_or_dir}" unless File.directory?(paths_or_dir)

          Snapshot.list(paths_or_dir, process: process)
        when Array then paths_or_dir
        else raise TypeError, "heapdiff: expected a directory or an Array of dump paths, got #{Arguments.kind(paths_or_dir)}"
        end
      end

      # #work of a trend over +snapshots+, from their sidecars alone (nothing loaded):
      # `heapdiff report DIR` rates its memory verdict per unit with it.
      # @param snapshots [Array<Snapshot>] one process's, oldest first
      # @return [Array<Hash{String => Hash{String => Integer}}, nil>] one per interval
      def work_of(snapshots)
        snapshots.drop(1).map { |s| WorkFit.normalize(s.meta && s.meta["work"]) }.freeze
      end

      # #work_total of +work+ (see #work).
      # @param work [Array<Hash, nil>]
      # @return [Integer, nil]
      def work_total_of(work)
        counted = work.compact
        return nil if counted.empty?

        counted.sum { |interval| interval.each_value.sum { |labels| labels.each_value.sum } }
      end

      private

      # Identity across dumps means something only within one process, in time order.
      # Raises TrendError or MixedProcessesError.
      def check(snapshots)
        raise TrendError, "heapdiff: a trend needs at least two snapshots, got #{snapshots.size}" if snapshots.size < 2

        Snapshot.check_one_process(snapshots, "a trend")
        times = snapshots.filter_map { |s| s.meta&.dig("time") && s.taken_at }
        return if times.each_cons(2).all? { |a, b| a <= b }

        raise TrendError, "heapdiff: the snapshots are not in time order (their sidecars' times); give them oldest first"
      end
    end

    attr_reader :snapshots

    def sites
      @sites ||= Array.new(_site_count) { |i| Site.new(self, i, _site(i)) }
    end

    def each(&block)
      return enum_for(:each) { size } unless block

      sites.each(&block)
      self
    end

    def size
      _site_count
    end

    def [](index)
      sites[index]
    end

    VERDICTS.each do |verdict|
      define_method(verdict) { sites.select { |site| site.verdict == verdict } }
    end

    # True when every snapshot has a sidecar with its time: growth per hour is known.
    def timed?
      snapshots.all? { |s| s.meta&.dig("time") }
    end

    # Hours from the first snapshot to the last (nil unless #timed?).
    def hours
      return nil unless timed?

      (snapshots.last.taken_at - snapshots.first.taken_at) / 3600.0
    end

    # Memory over time: one Point per snapshot.
    def memory
      @memory ||= snapshots.each_with_index.zip(_totals).map do |(snapshot, i), (objects, memsize)|
        meta = snapshot.meta || {}
        gc = meta["gc_stat"] || {}
        Point.new(index: i, path: snapshot.path, time: meta["time"] && snapshot.taken_at,
                  rss_bytes: meta["rss_bytes"], live_objects: meta["live_objects"],
                  live_slots: gc["heap_live_slots"], gc_count: meta["gc_count"],
                  minor_gc_count: gc["minor_gc_count"], major_gc_count: gc["major_gc_count"],
                  objects: objects, memsize: memsize)
      end
    end

    # Which part of the process's memory grew, from the sidecars' breakdowns (see
    # MemoryVerdict): Ruby objects, fragmentation of the object heap or of malloc, the
    # allocator's cache, or native memory. :unknown without breakdowns.
    # @return [MemoryVerdict]
    def memory_verdict
      @memory_verdict ||= MemoryVerdict.from_snapshots(snapshots, work: work_total)
    end

    # The work done in each interval between two snapshots, from the later one's
    # sidecar (Heapdiff::Work: jobs per job class, requests per route): one Hash per
    # interval ({"jobs" => {"WidgetJob" => 12}, "requests" => {"GET /widgets/:id" =>
    # 40}}), nil where that sidecar has no counts. The first snapshot's counts (since
    # counting started) belong to no interval and are left out.
    # @return [Array<Hash{String => Hash{String => Integer}}, nil>] one per interval
    def work
      @work ||= Trend.work_of(snapshots)
    end

    # Units of work (jobs and requests of every label) from the first snapshot to the
    # last, or nil when no interval counted any.
    # @return [Integer, nil]
    def work_total
      Trend.work_total_of(work)
    end

    # The last snapshot, loaded (the trend keeps it for suspects and paths), with the
    # names of its names sidecar if it has one.
    #
    # @return [Heapdiff::Heap]
    # @raise [Heapdiff::Error] the trend is closed
    def last_heap
      @last_heap ||= _last_heap.tap do |heap|
        heap._attach_names(Names.read(Names.path_for(File.expand_path(snapshots.last.path))))
      end
    end

    # Frees the last snapshot now rather than when the GC collects this Trend. Sites,
    # counts, memory and warnings stay; #last_heap, suspects and samples need the
    # snapshot and raise Heapdiff::Error after this.
    #
    # @return [nil]
    def close
      @last_heap&.close
      _close
      nil
    end

    # The findings over the growing sites: sites whose objects in the last snapshot are
    # held through the same holder chain are one Leak (see Report#leaks), largest
    # growth first. Each has #counts, its count at each snapshot (a site the leak holds
    # part of is scaled by its share at the last snapshot: Leak#estimated?).
    # Paths in signatures lose the last snapshot's recorded app root (see
    # Report#app_root).
    #
    # @param class_edges [Boolean]
    # @return [Array<Leak>]
    # @raise [Heapdiff::Error] the trend is closed
    def leaks(class_edges: true)
      class_edges = class_edges ? true : false # any true value, as in Heap#path_to_root
      @leaks ||= {}
      @leaks[class_edges] ||= begin
        sites = growing.map { |site| [site, site.suspect(class_edges: class_edges)] }
        Leak.cluster(sites, app_root: app_root, trend: true)
            .sort_by { |l| [-l.growth, -l.count, l.signature] }.freeze
      end
    end

    # Where the app's files are, for Leak.normalize_path: the last snapshot's
    # (Leak.app_root).
    #
    # @return [String]
    def app_root
      @app_root ||= Leak.app_root(snapshots.last.path)
    end

    # What loading the snapshots found (compaction between them, what was recovered),
    # without #warnings' notes on growth per hour.
    # @return [Array<String>]
    def load_warnings
      @load_warnings ||= Warnings.fold(_warnings)
    end

    # Compaction between snapshots, what loading recovered, missing sidecars.
    def warnings
      @warnings ||= begin
        untimed = snapshots.reject { |s| s.meta&.dig("time") }.map { |s| File.basename(s.path) }
        untimed_warning = "no sidecar with a time for #{untimed.join(", ")}: growth is given per snapshot only, not per hour"
        short = hours && hours * 3600 < RATE_SPAN &&
                format("the snapshots span %.1f s: growth is given per snapshot only (per hour needs %d s)",
                       hours * 3600, RATE_SPAN)
        load_warnings + (untimed.empty? ? [] : [untimed_warning]) + (short ? [short] : [])
      end
    end

    # +top+: how many sites (nil: all). +suspects+: how many growing sites get their
    # suspect and path (each builds on the last snapshot's dominator tree). +only:+,
    # +ignore:+: which sites (see SiteFilter); the counts stay those of every site.
    def to_h(top: nil, suspects: 3, only: nil, ignore: nil)
      filter = SiteFilter.new(only: only, ignore: ignore)
      shown = filter.select(sites)
      {
        leaks: leaks.select { |l| l.sites.any? { |s| filter.keep?(s.site) } }.map(&:to_h),
        snapshots: memory.map(&:to_h),
        timed: timed?,
        hours: hours,
        site_count: size,
        verdicts: VERDICTS.to_h { |v| [v, count { |s| s.verdict == v }] },
        memory_verdict: memory_verdict.to_h,
        sites: (top ? shown.first(top) : shown).map { |s| s.to_h(details: s.growing? && s.index < suspects) },
        work: work,
        warnings: warnings
      }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    # The self-contained HTML report (see Trend::HTML).
    def to_html(**options)
      require_relative "../html/trend_report"
      HTML.new(self, **options).render
    end

    # "Trend over 6 snapshots (heap-0001.json … heap-0006.json), 5.2 min: 15857 sites,
    # 1 growing, 15750 stable, 106 transient": the first line of #to_s.
    def headline
      first, last = memory.values_at(0, -1)
      span = format(", %.1f min", hours * 60) if hours
      verdicts = VERDICTS.map { |v| "#{count { |s| s.verdict == v }} #{v}" }.join(", ")
      "Trend over #{snapshots.size} snapshots (#{File.basename(first.path)} … #{File.basename(last.path)})" \
        "#{span}: #{size} sites, #{verdicts}"
    end

    # The headline, memory, the leaks (the growing sites gathered under their named
    # holders, #leaks), and the first +top+ growing sites (the first +suspects+ of
    # them with where they are held), then warnings. +only:+, +ignore:+: which sites
    # (see SiteFilter).
    def to_s(top: 10, suspects: 3, only: nil, ignore: nil)
      first, last = memory.values_at(0, -1)
      lines = [headline]
      lines << "  #{memory_verdict.to_s.gsub("\n", "\n  ")}" unless memory_verdict.verdict == :unknown
      lines << "  RSS #{mb(first.rss_bytes)} → #{mb(last.rss_bytes)}" if first.rss_bytes && last.rss_bytes
      lines << "  live objects #{memory.map(&:objects).join(" → ")}"
      filter = SiteFilter.new(only: only, ignore: ignore)
      found = leaks.select { |l| l.sites.any? { |s| filter.keep?(s.site) } }
      found.first(top).each { |leak| lines << "  #{leak.to_s(sites: 3).gsub("\n", "\n  ")}" }
      lines << "  (#{found.size - top} more leak#{"s" unless found.size - top == 1})" if found.size > top
      shown = filter.select(growing)
      shown.first(top).each_with_index do |site, i|
        lines << site.to_s
        next unless i < suspects

        lines << "    held: #{site.suspect.holders.first(2).map(&:to_s).join("; ")}" if site.suspect.top
        lines << "    path: #{site.path}" if site.path
      end
      lines << "(#{growing.size - shown.size} growing left out by only/ignore)" if shown.size < growing.size
      lines << "No site grows." if growing.empty?
      warnings.each { |w| lines << "warning: #{w}" }
      lines.join("\n")
    end

    def inspect
      top = growing.first
      head = top ? " top=#{top.label} #{top.counts.first}→#{top.counts.last} at #{top.location}" : ""
      "#<Heapdiff::Trend snapshots=#{snapshots.size} sites=#{size} growing=#{growing.size}#{head}>"
    end

    private

    def attach(snapshots)
      @snapshots = snapshots.freeze
    end

    def mb(bytes)
      format("%.1f MB", bytes / 1e6)
    end
  end
end

# Site uses Trend::VERDICTS.
require_relative "trend_site"
require_relative "work_fit"
