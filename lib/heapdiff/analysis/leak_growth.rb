# frozen_string_literal: true

require "json"
require_relative "../arguments"
require_relative "../printable"

module Heapdiff
  # How fast one leak grew in one recording (a Trend over one process's snapshots):
  # its count at each snapshot, set against the hours the snapshots span (their
  # sidecars' times) and the units of work done between the first and the last (jobs
  # and requests the sidecars count, Trend#work_total). Plain data: the trend it came
  # from can be closed. Verification and Siblings compare these across recordings and
  # processes, matched by +signature+.
  #
  # +signature+ (12 hex characters), +title+, +holder_chain+ and +sites+ are the
  # leak's (Leak#signature, Leak#title, Leak#holder_chain, the keys of Leak#sites:
  # "TYPE path.rb:LINE");
  # +counts+ its objects at each snapshot, +memsize+ its bytes at the last (nil when
  # counted at its sites); +hours+ the span of the snapshots (nil without sidecar
  # times); +work+ the units of work from the first snapshot to the last (nil when
  # none were counted); +intervals+ the steps between snapshots.
  # +estimated+: whether the earlier counts are estimates (Leak#estimated?: a site
  # the leak holds part of is scaled by its share at the last snapshot).
  # +at_sites+: true when this is no leak of the recording (its sites do not grow by
  # the trend's rule there) and +counts+ are all the objects of its sites there
  # (LeakGrowth.at_sites), held through that holder or not.
  LeakGrowth = Struct.new(:signature, :title, :holder_chain, :sites, :counts, :memsize, :hours, :work, :intervals, :estimated,
                          :at_sites, keyword_init: true) do
    # @return [Leak::Identity] what matches it to the same leak in another recording
    #   or process (Leak::Identity#same?)
    def identity
      Leak::Identity.new(signature, holder_chain, sites)
    end

    # Objects at the last snapshot.
    # @return [Integer]
    def count
      counts.last
    end

    # Last count minus first.
    # @return [Integer] objects (negative when it fell)
    def growth
      counts.last - counts.first
    end

    # @return [Float, nil] objects per hour; nil without sidecar times, or for
    #   snapshots spanning less than Trend::RATE_SPAN seconds
    def per_hour
      LeakGrowth.units(hours: hours, work: work).include?(:hour) ? growth / hours : nil
    end

    # @return [Float, nil] objects per unit of work (job or request); nil when no work
    #   was counted
    def per_unit
      LeakGrowth.units(hours: hours, work: work).include?(:unit) ? growth.fdiv(work) : nil
    end

    # @return [Float] objects per step between two snapshots
    def per_snapshot
      growth.fdiv(intervals)
    end

    # The growth per +unit+ (:unit, :hour or :snapshot, see #per_unit, #per_hour,
    # #per_snapshot).
    # @param unit [Symbol]
    # @return [Float, nil]
    # @raise [ArgumentError] for another unit
    def rate(unit)
      raise ArgumentError, "heapdiff: unit must be :unit, :hour or :snapshot, got #{Arguments.kind(unit)}" \
        unless %i[unit hour snapshot].include?(unit)

      public_send(:"per_#{unit}")
    end

    # @return [Hash{Symbol => Object}] rates in objects per hour, unit of work and snapshot; memsize in bytes
    def to_h
      super.merge(title: Printable.utf8(title), sites: sites.map { |s| Printable.utf8(s) }, count: count,
                  growth: growth, per_hour: per_hour, per_unit: per_unit, per_snapshot: per_snapshot)
    end

    # @return [String] #to_h as JSON
    def to_json(*args)
      to_h.to_json(*args)
    end

    # @return [String]
    def inspect
      "#<Heapdiff::LeakGrowth #{signature} #{counts.join("→")} #{title}>"
    end
  end

  class << LeakGrowth
    # The units a recording gives rates in: :unit when it counted work, :hour when its
    # snapshots span at least Trend::RATE_SPAN seconds (shorter spans extrapolated to
    # an hour say nothing), and always :snapshot.
    # @param hours [Float, nil] Trend#hours
    # @param work [Integer, nil] Trend#work_total
    # @return [Array<Symbol>] best first
    def units(hours:, work:)
      [(:unit if work&.positive?), (:hour if hours && hours * 3600 >= Trend::RATE_SPAN), :snapshot].compact
    end

    # Every site of +trend+ by its key (Leak.site_key, paths as the leaks' own),
    # with its count at each snapshot: where to look for a leak of another recording.
    # @param trend [Trend]
    # @return [Hash{String => Array<Integer>}]
    # @raise [TypeError] +trend+ is not a Trend
    def site_counts(trend)
      raise TypeError, "heapdiff: expected a Trend, got #{Arguments.kind(trend)}" unless Trend === trend

      trend.each_with_object({}) do |site, counts|
        key = Leak.site_key(site, trend.app_root)
        counts[key] = counts.key?(key) ? counts[key].zip(site.counts).map(&:sum) : site.counts
      end
    end

    # +leak+ (a LeakGrowth of another recording) counted at its sites in a recording
    # where it is no leak: the objects of those sites at each of its snapshots
    # (+site_counts+, see #site_counts), in its +hours+ and +work+; nil when the
    # recording has none of the sites.
    # @param leak [LeakGrowth]
    # @param site_counts [Hash{String => Array<Integer>}]
    # @param hours [Float, nil]
    # @param work [Integer, nil]
    # @param intervals [Integer]
    # @return [LeakGrowth, nil]
    def at_sites(leak, site_counts, hours:, work:, intervals:)
      found = leak.sites.filter_map { |key| site_counts[key] }
      return nil if found.empty?

      LeakGrowth.new(signature: leak.signature, title: leak.title, holder_chain: leak.holder_chain, sites: leak.sites,
                     counts: found.transpose.map(&:sum),
                     memsize: nil, hours: hours, work: work, intervals: intervals, estimated: false, at_sites: true)
    end

    # The leaks of +trend+ (Trend#leaks: its growing sites, clustered by holder),
    # each as a LeakGrowth.
    # @param trend [Trend]
    # @return [Array<LeakGrowth>] largest growth first
    # @raise [TypeError] +trend+ is not a Trend
    def of(trend)
      raise TypeError, "heapdiff: expected a Trend, got #{Arguments.kind(trend)}" unless Trend === trend

      hours = trend.hours
      work = trend.work_total
      intervals = trend.snapshots.size - 1
      trend.leaks.map do |leak|
        LeakGrowth.new(signature: leak.signature, title: leak.title, holder_chain: leak.holder_chain,
                       sites: leak.sites.map(&:key), counts: leak.counts,
                       memsize: leak.memsize, hours: hours, work: work, intervals: intervals,
                       estimated: leak.estimated?, at_sites: false)
      end
    end
  end

  # Rows of leaks, one per signature (Verification's, Siblings'): Enumerable over
  # them, #rows, and #[] by signature. The includer sets @rows.
  module LeakRows
    include Enumerable

    # @return [Array<Struct>] the rows, in their order
    def rows
      @rows.dup
    end

    # @yieldparam row [Struct] each row, in order
    # @return [self, Enumerator]
    def each(&block)
      return enum_for(:each) { @rows.size } unless block

      @rows.each(&block)
      self
    end

    # The row of the leak with +signature+, or nil: the row's own (its first
    # recording's), or else the signature the leak has in another recording or process
    # (Row#signatures; a leak whose lines moved has another one there).
    # @param signature [String] 12 hex characters
    # @return [Struct, nil]
    def [](signature)
      @rows.find { |row| row.signature == signature } || @rows.find { |row| row.signatures.include?(signature) }
    end
  end
end
