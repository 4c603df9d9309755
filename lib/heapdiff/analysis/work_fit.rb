# frozen_string_literal: true

require "json"
require_relative "../arguments"
require_relative "../printable"

module Heapdiff
  class Trend
    # Which job class or route makes a site grow: the site's growth in each interval
    # between two snapshots set against the work each label (a job class, a route) did
    # in that interval (Heapdiff::Work, from the sidecars). Made by WorkFit.fit; a
    # growing Site gives its own as Site#growth_driver.
    #
    # +status+:
    # - :fitted: one label explains the growth: +rate+ objects per unit of its work,
    #   in +fits+ of +intervals+ intervals, and no other label fits as many;
    # - :steady: the best label fits, but every interval had about as much of its work
    #   (within the tolerance), so growth that is steady in time fits as well: the
    #   counts cannot tell;
    # - :ambiguous: +runner_up+ fits as many intervals (labels whose work always comes
    #   together, or too little difference between them to tell);
    # - :unexplained: no single label fits enough intervals (the closest is named);
    # - :too_few_intervals: fewer than WorkFit::MIN_INTERVALS intervals with counts;
    # - :no_work: the sidecars hold no counts (no Sidekiq or Rack middleware counted).
    #
    # The other members: +kind+ ("jobs" or "requests") and +label+ (a job class, a
    # route) of the best-fitting label, nil when there is none; +rate+, its objects per
    # run or request (Float); +fits+, the intervals it fits, of +intervals+ (those
    # whose sidecar has counts); +needed+, the fits an answer needs (for
    # :too_few_intervals, the intervals it needs); +runner_up+, a Candidate, for
    # :ambiguous; +candidates+, every label's fit (Candidate), best first;
    # +site_label+, what grows ("STRING"), for the text.
    GrowthDriver = Struct.new(:status, :site_label, :kind, :label, :rate, :fits, :intervals, :needed, :runner_up,
                              :candidates, keyword_init: true) do
      # Whether one label explains the growth.
      def fitted?
        status == :fitted
      end

      # "+8.0 STRING per PlaceOrderJob run (fits 6 of 6 intervals)", or why there is
      # no such answer.
      def to_s
        case status
        when :fitted then "#{per_unit} (fits #{fits} of #{intervals} intervals)"
        when :steady
          "#{per_unit} (fits #{fits} of #{intervals} intervals), but every interval had about as many: " \
          "growth steady in time fits as well, so the counts cannot tell"
        when :ambiguous
          "#{Printable.escape(label)} and #{Printable.escape(runner_up.label)} both fit #{fits} of #{intervals} " \
          "intervals: cannot tell which makes it grow"
        when :unexplained
          "no single job class or route explains the growth (closest: #{per_unit}, fits #{fits} of #{intervals} " \
          "intervals; #{needed} needed)"
        when :too_few_intervals
          "too few intervals to tell (#{intervals} with work counts, #{needed} needed)"
        else "no jobs or requests counted (the Sidekiq and Rack middlewares count them)"
        end
      end

      def inspect
        "#<Heapdiff::Trend::GrowthDriver #{status} #{self}>"
      end

      # The three best candidates only: a label per route can make hundreds.
      def to_h
        super.merge(label: Printable.utf8(label), runner_up: runner_up&.to_h, candidates: candidates.first(3).map(&:to_h),
                    text: to_s)
      end

      def to_json(*args)
        to_h.to_json(*args)
      end

      private

      def per_unit
        format("%+.1f %s per %s", rate, site_label, name_with_unit)
      end

      def name_with_unit
        "#{Printable.escape(label)} #{kind == "jobs" ? "run" : "request"}"
      end
    end

    # One label's fit (GrowthDriver#candidates): +rate+ (objects per run or request),
    # +fits+ (intervals), +residual+ (the growth it leaves unexplained, summed over
    # the intervals), +counts+ (its count per interval).
    Candidate = Struct.new(:kind, :label, :rate, :fits, :residual, :counts, keyword_init: true) do
      def to_h
        { kind: kind, label: Printable.utf8(label), rate: rate, fits: fits, counts: counts }
      end
    end

    # The fit rule, with few intervals in mind (a trend has a handful of snapshots).
    #
    # For each label (a job class, a route) with work in the intervals:
    # 1. its rate: the median, over the intervals where it ran, of the site's growth
    #    divided by its count (the median, so that one odd interval does not move it);
    # 2. an interval fits when the growth is within TOLERANCE of rate × count, or
    #    within SLACK objects of it (an interval without that work must show no growth,
    #    give or take SLACK).
    # The label that fits the most intervals (then the smallest total difference) is
    # the answer when it fits at least FIT_SHARE of them, no other label fits as many,
    # and its counts vary beyond the tolerance (else steady growth fits as well).
    # Fewer than MIN_INTERVALS intervals with counts: too few to tell.
    module WorkFit
      TOLERANCE = 0.2
      SLACK = 2
      MIN_INTERVALS = 3
      FIT_SHARE = 0.8

      module_function

      # A sidecar's "work" as #fit takes it: {kind => {label => count}} with only
      # Hash kinds and Integer counts ≥ 0 kept (a damaged sidecar costs its counts, not
      # the trend); nil when +meta_work+ is not a Hash.
      # @param meta_work [Object] what the sidecar holds under "work"
      # @return [Hash{String => Hash{String => Integer}}, nil]
      def normalize(meta_work)
        return nil unless Hash === meta_work

        meta_work.each_with_object({}) do |(kind, named), work|
          next unless String === kind && Hash === named

          work[kind] = named.select { |label, n| String === label && Integer === n && n >= 0 }
        end
      end

      # @param growth [Array<Integer>] the site's growth in each interval (objects)
      # @param work [Array<Hash, nil>] per interval, the sidecar's "work" ({kind =>
      #   {label => count}}, see #normalize), nil where the sidecar has none
      # @param site_label [String] "STRING", for the text
      # @return [GrowthDriver]
      # @raise [TypeError] for growth that is not Integers, work that is not Hashes or
      #   nil, a label that is not a String
      # @raise [ArgumentError] when +growth+ and +work+ differ in length
      def fit(growth, work, site_label: "objects")
        check(growth, work, site_label)
        counted = growth.zip(work.map { |w| normalize(w) }).select { |_, w| w }
        counts = counted.map(&:last)
        candidates = candidates(counted.map(&:first), counts)
        base = { site_label: site_label, intervals: counted.size, needed: MIN_INTERVALS, candidates: candidates }
        return GrowthDriver.new(status: :no_work, **base) if candidates.empty?
        return GrowthDriver.new(status: :too_few_intervals, **base) if counted.size < MIN_INTERVALS

        best, second = candidates
        needed = (FIT_SHARE * counted.size).ceil
        status = if best.fits < needed then :unexplained
                 elsif steady?(best.counts) then :steady
                 elsif second && second.fits >= best.fits then :ambiguous
                 else
                   :fitted
                 end
        GrowthDriver.new(status: status, **base, needed: needed, kind: best.kind, label: best.label, rate: best.rate,
                         fits: best.fits, runner_up: status == :ambiguous ? second : nil)
      end

      private_class_method def check(growth, work, site_label)
        unless Array === growth && growth.all? { |g| Integer === g }
          raise TypeError, "heapdiff: growth must be an Array of Integers, got #{Arguments.kind(growth)}"
        end
        unless Array === work && work.all? { |w| NilClass === w || Hash === w }
          raise TypeError, "heapdiff: work must be an Array of Hashes or nils, got #{Arguments.kind(work)}"
        end
        raise TypeError, "heapdiff: site_label must be a String, got #{Arguments.kind(site_label)}" unless String === site_label
        return if growth.size == work.size

        raise ArgumentError, "heapdiff: #{growth.size} growths for #{work.size} intervals of work"
      end

      # Every label's fit, best first.
      private_class_method def candidates(growth, counts)
        labels = counts.flat_map { |w| w.flat_map { |kind, named| named.keys.map { |label| [kind, label] } } }
        fitted = labels.uniq.filter_map do |kind, label|
          candidate(kind, label, growth, counts.map { |w| w.fetch(kind, {}).fetch(label, 0) })
        end
        fitted.sort_by { |c| [-c.fits, c.residual, c.kind, c.label] }
      end

      private_class_method def candidate(kind, label, growth, counts)
        ratios = growth.zip(counts).filter_map { |g, n| g.fdiv(n) if n.positive? }
        return nil if ratios.empty?

        rate = median(ratios)
        return nil unless rate.positive?

        misses = growth.zip(counts).map { |g, n| (g - (rate * n)).abs }
        fits = misses.zip(counts).count { |miss, n| miss <= [TOLERANCE * rate * n, SLACK].max }
        Candidate.new(kind: kind, label: label, rate: rate, fits: fits, residual: misses.sum, counts: counts)
      end

      # Counts that never differ by more than the tolerance allows: any steady growth
      # fits them within it.
      private_class_method def steady?(counts)
        counts.max * (1 - TOLERANCE) <= counts.min * (1 + TOLERANCE)
      end

      private_class_method def median(values)
        sorted = values.sort
        mid = sorted.size / 2
        sorted.size.odd? ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0
      end
    end
  end
end
