# frozen_string_literal: true

require "json"
require_relative "../printable"

module Heapdiff
  # Is the growth of a process's memory Ruby objects at all? Read from the memory
  # breakdown in its snapshots' sidecars (Heapdiff::Memory), without loading a dump:
  # which component grew from the first snapshot to the last, by how much, how fast.
  #
  # The verdicts, and what each tells to do:
  # - :ruby_objects: live Ruby objects (their slots and what they malloc'd) grew. Go to
  #   the growing allocation sites (Trend#growing) and their holders.
  # - :ruby_heap_fragmentation: free slots of the object heap grew while the live
  #   objects did not. GC.compact, or GC.auto_compact = true (Ruby ≥ 3.0), helps.
  # - :malloc_fragmentation: the allocator keeps what was freed (glibc's arenas). Try
  #   jemalloc (LD_PRELOAD=libjemalloc.so.2), or MALLOC_ARENA_MAX=2.
  # - :allocator_cache: the allocator holds freed pages that it gives back on its own
  #   (jemalloc's dirty pages, purged after dirty_decay_ms): not a leak; look at RSS
  #   after an idle spell.
  # - :native: memory that no Ruby object and no allocator statistic explains: a C
  #   extension's malloc or mmap, thread stacks. valgrind --tool=massif or heaptrack
  #   find its allocation site.
  # - :stable: RSS grew by at most STABLE_FRACTION of its first value or STABLE_BYTES,
  #   whichever is more, and live Ruby objects did not grow steadily (below).
  # - :unknown: fewer than MIN_SNAPSHOTS snapshots carry a breakdown (#reason says).
  #
  # The verdict is the component whose growth is the largest, in bytes; #growth has
  # every component's, so that each verdict shows the figures behind it.
  #
  # A slow leak hides in RSS's noise: within the stable band, the verdict is still
  # :ruby_objects, with #slow? true ("ruby_objects (slow)"), when live Ruby objects grew
  # in every one of at least SLOW_INTERVALS intervals after the first (the first holds
  # the warm-up: caches that fill, code that loads late), by SLOW_BYTES or more in all.
  # Growth in every interval is what tells a leak from the heap's noise (tens of KB
  # either way between two snapshots of an idle process); the floor keeps a handful of
  # objects from making a verdict of their own. Growth that pauses (an interval
  # without the leaking work) is not called out here: Trend#growing finds its site.
  class MemoryVerdict
    VERDICTS = %i[ruby_objects ruby_heap_fragmentation malloc_fragmentation allocator_cache native stable
                  unknown].freeze
    MIN_SNAPSHOTS = 3
    # A rate per hour from a shorter span says more about the moment than the trend.
    MIN_RATE_SECONDS = 60
    STABLE_FRACTION = 0.1
    STABLE_BYTES = 16 * 1024 * 1024
    SLOW_INTERVALS = 3
    SLOW_BYTES = 1024 * 1024
    # Component => the breakdown's figures it sums (see Heapdiff::Memory).
    COMPONENTS = {
      ruby_objects: %w[ruby_heap_live ruby_malloc],
      ruby_heap_fragmentation: %w[ruby_heap_free],
      malloc_fragmentation: %w[malloc_free],
      allocator_cache: %w[malloc_cached],
      native: %w[native]
    }.freeze
    ADVICE = {
      ruby_objects: "live Ruby objects grow: see the growing allocation sites and what holds them",
      ruby_heap_fragmentation: "free slots of the object heap grow while live objects do not: " \
                               "GC.compact, or GC.auto_compact = true (Ruby ≥ 3.0)",
      malloc_fragmentation: "the allocator keeps memory that was freed: try jemalloc " \
                            "(LD_PRELOAD=libjemalloc.so.2) or MALLOC_ARENA_MAX=2",
      allocator_cache: "the allocator holds freed pages it returns on its own (jemalloc's decay): " \
                       "not a leak; compare RSS after an idle spell",
      native: "memory that no Ruby object or allocator statistic explains: a C extension or mmap; " \
              "find it with valgrind --tool=massif or heaptrack",
      stable: "RSS stays within its noise; a leak smaller than that shows in the growing sites, not here"
    }.freeze
    SLOW_ADVICE = "live Ruby objects grow in every interval, though RSS has not moved beyond its noise yet: " \
                  "see the growing allocation sites and what holds them"

    class << self
      # @param snapshots [Array<Snapshot>] one process's, oldest first
      # @param work [Integer, nil] units of work (jobs, requests) done from the first
      #   snapshot to the last, for a rate per unit
      # @return [MemoryVerdict]
      def from_snapshots(snapshots, work: nil)
        points = snapshots.filter_map do |s|
          memory = s.meta&.dig("memory")
          [s.taken_at, memory] if memory.is_a?(Hash) && memory["rss"].is_a?(Integer)
        end
        new(points, work: work)
      end
    end

    # @return [Symbol] one of VERDICTS
    attr_reader :verdict
    # @return [Hash{Symbol => Integer}] each component's growth in bytes, first to last
    #   snapshot (and :rss)
    attr_reader :growth
    # @return [Float, nil] hours from the first snapshot to the last (nil for a span
    #   under MIN_RATE_SECONDS: no rate per hour then)
    attr_reader :hours
    # @return [Integer, nil] units of work in between, when known
    attr_reader :work
    # @return [String, nil] why there is no verdict (:unknown)
    attr_reader :reason
    # @return [Array<Hash{String => Object}>] the breakdowns, oldest first
    attr_reader :breakdowns

    # @return [Boolean] :ruby_objects although RSS stayed within the stable band: live
    #   Ruby objects grew in every interval after the first (see the class comment)
    def slow?
      @slow
    end
    alias slow slow?

    # @param points [Array<(Time, Hash)>] time and breakdown of each snapshot
    def initialize(points, work: nil)
      @breakdowns = points.map(&:last)
      @work = work
      @growth = {}
      @slow = false
      if points.size < MIN_SNAPSHOTS
        @verdict = :unknown
        @reason = "#{points.size} snapshot#{"s" unless points.size == 1} with a memory breakdown; " \
                  "#{MIN_SNAPSHOTS} are needed to tell"
        return
      end

      first, last = @breakdowns.values_at(0, -1)
      seconds = points.last.first - points.first.first
      @hours = seconds >= MIN_RATE_SECONDS ? seconds / 3600.0 : nil
      @growth[:rss] = last["rss"] - first["rss"]
      COMPONENTS.each { |name, keys| @growth[name] = keys.sum { |k| last[k].to_i - first[k].to_i } }
      @slow = stable? && steady_ruby_growth?
      @verdict = if @slow then :ruby_objects
                 elsif stable? then :stable
                 else
                   COMPONENTS.keys.max_by { |name| @growth[name] }
                 end
    end

    # Bytes the verdict's component grew (RSS for :stable).
    def bytes
      @growth[COMPONENTS.key?(verdict) ? verdict : :rss]
    end

    # @return [Float, nil] bytes per hour, when the snapshots have times
    def per_hour
      hours && bytes && (bytes / hours)
    end

    # @return [Float, nil] bytes per unit of work, when known
    def per_unit
      work&.positive? && bytes ? bytes.fdiv(work) : nil
    end

    # @return [String] what the verdict tells to do
    def advice
      slow? ? SLOW_ADVICE : ADVICE.fetch(verdict, reason)
    end

    def to_h
      { verdict: verdict, slow: slow?, bytes: bytes, per_hour: per_hour, per_unit: per_unit, work: work, hours: hours,
        growth: growth, advice: advice, reason: reason, breakdowns: breakdowns }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    # Two lines, what to do first, then where the memory went:
    # "Memory: malloc_fragmentation, +742.6 MB (+1.2 GB/hour) — the allocator keeps …\n
    #   RSS +777.2 MB = ruby objects +31.0 MB, …"
    def to_s
      return "Memory: unknown (#{reason})" if verdict == :unknown

      rates = [per_hour && "#{signed(per_hour)}/hour", per_unit && "#{signed(per_unit)} per job or request"].compact
      parts = COMPONENTS.keys.map { |name| "#{name.to_s.tr("_", " ")} #{signed(growth[name])}" }
      "Memory: #{name}, #{signed(bytes)}#{" (#{rates.join(", ")})" unless rates.empty?} — #{advice}\n  " \
        "RSS #{signed(growth[:rss])} = #{parts.join(", ")}"
    end

    def inspect
      "#<Heapdiff::MemoryVerdict #{name} #{bytes && signed(bytes)}>"
    end

    private

    # "ruby_objects (slow)", or the verdict.
    def name
      slow? ? "#{verdict} (slow)" : verdict.to_s
    end

    def stable?
      first_rss = @breakdowns.first["rss"]
      @growth[:rss] <= [first_rss * STABLE_FRACTION, STABLE_BYTES].max
    end

    # Live Ruby objects' bytes grew in each interval after the first, at least
    # SLOW_INTERVALS of them, by SLOW_BYTES or more in all.
    def steady_ruby_growth?
      sizes = @breakdowns.drop(1).map { |b| COMPONENTS[:ruby_objects].sum { |k| b[k].to_i } }
      steps = sizes.each_cons(2).map { |a, b| b - a }
      steps.size >= SLOW_INTERVALS && steps.all?(&:positive?) && steps.sum >= SLOW_BYTES
    end

    # "+1.2 GB", "-300.0 KB": decimal units, as the rest of heapdiff's text.
    def signed(bytes)
      unit, scale = [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]].find { |_, s| bytes.abs >= s } || ["B", 1]
      format(unit == "B" ? "%+.0f %s" : "%+.1f %s", bytes / scale, unit)
    end
  end
end
