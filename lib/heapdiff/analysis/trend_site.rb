# frozen_string_literal: true

require "json"
require_relative "allocation_site"

module Heapdiff
  class Trend
    # One allocation site (type, class, file, line, as a diff's Group) across the
    # snapshots. +counts+, +memsizes+ and +survived+ have one entry per snapshot;
    # +survived[k]+ counts the objects of snapshot k that are the same objects
    # (identity as in the diff) as in snapshot k-1.
    #
    # Without allocation tracing (or after a compaction on Ruby ≤ 3.3) the dumps cannot
    # always tell: +uncertain[k]+ of the survivors may be new objects in reused slots
    # (or moved ones). They are counted as survivors; the true figures are ranges:
    # #survived_ranges, #new_count_ranges, and #estimated? says so. #counts and
    # #growth stay exact (they count what each dump holds).
    #
    # The verdict (computed in heapdiff-core's trend.rs, where the rules are tested):
    # - :transient when most objects do not survive to the next snapshot (the
    #   survivors are fewer than half of the objects the snapshots before held), or
    #   only the last snapshot has any, or the last has none: objects come and go.
    # - :growing when they survive and the count grows monotonically or nearly so
    #   across at least 3 snapshots. Nearly, for n snapshots: the last count is above
    #   the first, the count rises in at least ⌈2(n-1)/3⌉ of the n-1 steps (both steps
    #   of 3 snapshots, 4 of 5 for 6), and no step falls by more than a tenth.
    # - :stable otherwise: retained, not growing (a cache that filled and stays).
    class Site
      include AllocationSite

      attr_reader :trend, :index, :type, :class_name, :subtype, :file, :line, :counts, :memsizes, :survived,
                  :verdict

      # @param trend [Trend]
      # @param index [Integer] the site's place in the trend (0 for the first)
      # @param fields [Hash{Symbol => Object}] Trend#_site's record (named in
      #   ext/heapdiff/src/trend.rs)
      def initialize(trend, index, fields)
        @trend = trend
        @index = index
        @type, @class_name, @subtype, @file, @line, @counts, @memsizes, @survived, verdict =
          fields.fetch_values(:type, :class_name, :subtype, :file, :line, :counts, :memsizes, :survived, :verdict)
        @verdict = verdict.to_sym
        [@counts, @memsizes, @survived].each(&:freeze)
      end

      # 1 for the first site.
      #
      # @return [Integer]
      def rank
        index + 1
      end

      Trend::VERDICTS.each do |verdict|
        define_method(:"#{verdict}?") { @verdict == verdict }
      end

      # Objects in the last snapshot (what a suspect's shares are of).
      #
      # @return [Integer]
      def count
        counts.last
      end

      # Memsize of the site's objects in the last snapshot, as the dump gives it.
      #
      # @return [Integer] bytes
      def memsize
        memsizes.last
      end

      # Objects of each snapshot that the one before did not have (all, for the first);
      # the low ends of #new_count_ranges.
      #
      # @return [Array<Integer>] one per snapshot
      def new_counts
        counts.zip(survived).map { |c, s| c - s }
      end

      # Per snapshot, the survivors whose identity the dumps leave open (see the class
      # comment): counted in #survived, maybe new.
      # @return [Array<Integer>]
      def uncertain
        @uncertain ||= trend._site_uncertain(index).freeze
      end

      # True when some snapshot's survivors and new objects are ranges.
      def estimated?
        uncertain.any?(&:positive?)
      end

      # Per snapshot, the survivors as a Range (low..high; a one-value range when exact).
      # @return [Array<Range>]
      def survived_ranges
        survived.zip(uncertain).map { |s, u| (s - u)..s }
      end

      # Per snapshot, the new objects as a Range (low..high).
      # @return [Array<Range>]
      def new_count_ranges
        new_counts.zip(uncertain).map { |n, u| n..(n + u) }
      end

      # Last count minus first.
      #
      # @return [Integer] objects (negative when the count fell)
      def growth
        counts.last - counts.first
      end

      # Last memsize minus first.
      #
      # @return [Integer] bytes
      def memsize_growth
        memsizes.last - memsizes.first
      end

      # Growth spread over the steps between snapshots.
      #
      # @return [Float] objects per snapshot
      def growth_per_snapshot
        growth.fdiv(counts.size - 1)
      end

      # nil when the snapshots have no times (no sidecars), or span less than
      # Trend::RATE_SPAN: a rate extrapolated from seconds to an hour says nothing.
      #
      # @return [Float, nil] objects per hour, from the sidecars' times
      def growth_per_hour
        hours = trend.hours
        hours && hours * 3600 >= RATE_SPAN ? growth / hours : nil
      end

      # What makes a growing site grow: its growth in each interval set against the
      # jobs and requests counted in that interval (Trend#work), as WorkFit says; nil
      # for a site that does not grow.
      # @return [GrowthDriver, nil]
      def growth_driver
        return nil unless growing?

        @growth_driver ||= WorkFit.fit(counts.each_cons(2).map { |a, b| b - a }, trend.work, site_label: label)
      end

      # Up to +n+ of the site's objects in the last snapshot.
      #
      # @param n [Integer]
      # @return [Array<Heapdiff::Object>] at most +n+
      # @raise [Heapdiff::Error] the trend is closed
      def sample(n = 1)
        trend._site_rows(index, n).map { |row| trend.last_heap.object(row) }
      end

      # Where the site's objects in the last snapshot are held (a Suspect). Builds the
      # last snapshot's dominator tree on first use.
      #
      # @param class_edges [Boolean]
      # @return [Suspect]
      # @raise [Heapdiff::Error] the trend is closed
      def suspect(class_edges: true)
        @suspect ||= {}
        @suspect[class_edges] ||=
          Suspect.from_native(self, trend.last_heap, trend._suspect(index, class_edges), class_edges: class_edges)
      end

      # The shortest path from a GC root to one of the site's objects in the last
      # snapshot, or nil when it has none there or no root reaches it.
      #
      # @param class_edges [Boolean]
      # @return [Path, nil]
      # @raise [Heapdiff::Error] the trend is closed
      def path(class_edges: true)
        @path ||= {}
        return @path[class_edges] if @path.key?(class_edges)

        object = sample.first
        @path[class_edges] = object && trend.last_heap.path_to_root(object, class_edges: class_edges)
      end

      # +details+: add the suspect and the path (they need the dominator tree).
      #
      # @param details [Boolean]
      # @return [Hash{Symbol => Object}] memsizes in bytes
      # @raise [Heapdiff::Error] +details: true+ on a closed trend
      def to_h(details: false)
        h = { rank: rank, verdict: verdict, type: type, class_name: Printable.utf8(class_name),
              subtype: Printable.utf8(subtype), label: label, file: Printable.utf8(file), line: line,
              location: file && location, counts: counts, memsizes: memsizes,
              survived: survived, new: new_counts, uncertain: uncertain, estimated: estimated?, growth: growth,
              growth_per_snapshot: growth_per_snapshot,
              growth_per_hour: growth_per_hour, memsize_growth: memsize_growth, growth_driver: growth_driver&.to_h }
        return h unless details

        h.merge(suspect: suspect.to_h.except(:group), path: path&.to_h)
      end

      # @return [String]
      def to_json(*args)
        to_h.to_json(*args)
      end

      # "  1. growing STRING at app.rb:97: 700 → 1400 → 2100 objects (+700/snapshot, +84000/hour), 100% kept",
      # and when jobs or requests were counted, a second line: what makes it grow.
      #
      # @return [String]
      def to_s
        rate = "#{signed(growth_per_snapshot)}/snapshot"
        rate += ", #{signed(growth_per_hour)}/hour" if growth_per_hour
        line = "#{format("%3d", rank)}. #{verdict} #{label} at #{location}: #{counts.join(" → ")} objects (#{rate}), " \
               "#{Printable.bytes(memsizes.first)} → #{Printable.bytes(memsizes.last)}, " \
               "#{kept_percent} of each snapshot's objects still in the next"
        driver = growth_driver
        driver.nil? || driver.status == :no_work ? line : "#{line}\n    what makes it grow: #{driver}"
      end

      # @return [String]
      def inspect
        "#<Heapdiff::Trend::Site ##{rank} #{verdict} #{label} at #{location} counts=#{counts} survived=#{survived}>"
      end

      # Share of the objects of snapshots 1..n-1 still there in the next one (counting
      # the uncertain survivors; #kept_share_low leaves them out).
      #
      # @return [Float, nil] 0.0..1.0; nil with a single snapshot or no objects
      def kept_share
        before = counts[0...-1].sum
        before.zero? ? nil : survived.drop(1).sum.fdiv(before)
      end

      # #kept_share without the survivors whose identity is open.
      def kept_share_low
        before = counts[0...-1].sum
        before.zero? ? nil : (survived.drop(1).sum - uncertain.drop(1).sum).fdiv(before)
      end

      private

      # "+800", "-0.2", "+0" (never "-0"): one decimal only where the whole number
      # would hide a change.
      def signed(rate)
        rounded = rate.round(rate.abs < 10 ? 1 : 0)
        return "+0" if rounded.zero?

        rounded == rounded.round ? format("%+d", rounded.round) : format("%+.1f", rounded)
      end

      def kept_percent
        share = kept_share
        return "none" unless share

        high = format("%.0f%%", share * 100)
        low = format("%.0f%%", kept_share_low * 100)
        low == high ? high : "#{low}–#{high} (an estimate: see the warnings)"
      end
    end
  end
end
