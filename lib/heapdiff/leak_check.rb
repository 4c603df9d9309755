# frozen_string_literal: true

require "tmpdir"
require "fileutils"
require_relative "../heapdiff"
require_relative "analysis/gem_attribution"
require_relative "analysis/site_filter"

module Heapdiff
  # The leak check behind the RSpec matcher and the minitest assertion. It runs a
  # block +warmup+ times, then measures in windows of +iterations+ runs, a snapshot
  # before and after each, runs the block once more and takes a last snapshot; each
  # window is a three-dump diff in this process (what the window allocated that the
  # snapshot after the next run still holds is retained).
  #
  # The rule, by default: an allocation site fails when it retains objects in each of
  # two consecutive windows. Any steady retention fails, however slow (one object
  # every second call is 10 and 10 over 20 iterations); what fills once and stays (a
  # memoized value, a cache filled during warmup), or a "last result" replaced by
  # the next call, retains nothing in the second window and passes. Given
  # +per_iteration:+ (one window), a site fails when it retains at least that many
  # objects per iteration; given +max:+ (one window), more than +max+ objects.
  #
  # Filters (+only:+, +ignore:+, each one pattern or an Array of them) are SiteFilter's:
  # a Symbol is an object type (:string, :STRING), a Regexp matches the file path, a
  # String is a gem name (see GemAttribution: "app", "ruby stdlib", "rspec-core"…) or a
  # part of the path.
  #
  # +baseline:+ (a Baseline file, see Heapdiff::Baseline) accepts the leaks it knows:
  # a site fails only when it is part of a leak (Report#leaks, in the last window)
  # whose signature the baseline does not have. The failure message gives each new
  # leak's signature and title.
  class LeakCheck
    # The test frameworks' own allocations (RSpec's, minitest's) are never the code
    # under test's.
    DEFAULT_IGNORE = [%r{/gems/rspec-[a-z]+-\d}, %r{/gems/minitest-\d}].freeze

    # The outcome: #leaks are the groups of the last window that fail the rule, largest
    # first; #first_counts, for the default rule, the same sites' counts in the window
    # before ({[type, class_name, file, line] => count}).
    # #new_leaks, with a baseline, are the Leaks (Report#leaks) the failing sites are in
    # that the baseline does not know.
    Result = Struct.new(:report, :leaks, :check, :dir, :first_counts, :new_leaks, keyword_init: true) do
      def leaked?
        !leaks.empty?
      end

      # Every group the filters kept, over the threshold or not.
      def groups
        check.kept(report)
      end

      def message(top: 5)
        unless leaked?
          return "expected the block not to retain objects, and it retained none over the threshold " \
                 "(#{check.threshold_text})"
        end

        lines = ["expected the block not to leak, but #{leaks.size} allocation site(s) #{check.rule_text}:"]
        leaks.first(top).each do |group|
          counts = first_counts ? "#{first_counts.fetch(LeakCheck.site(group))} then #{group.count}" : group.count
          lines << "  #{counts} #{group.label} (#{Printable.bytes(group.memsize)}) at #{group.location}"
          lines << "    #{report.suspect(group)}"
        end
        lines << "  (#{leaks.size - top} more sites)" if leaks.size > top
        new_leaks&.each { |leak| lines << "  not in the baseline #{check.baseline.path}: leak #{leak.signature} #{leak.title}" }
        lines << "  snapshots kept in #{dir}" if dir
        lines.join("\n")
      end
    end

    attr_reader :warmup, :iterations, :per_iteration, :max, :baseline

    # The filters' patterns (+ignore+ includes DEFAULT_IGNORE).
    def only = @filter.only
    def ignore = @filter.ignore

    # @param warmup [Integer] runs before the first snapshot (>= 0)
    # @param iterations [Integer] runs in each window (>= 1)
    # @param per_iteration [Numeric, nil] one window; fail at this many objects per iteration
    # @param max [Integer, nil] one window; fail above this many objects
    # @param only [Symbol, Regexp, String, Array, nil] keep only groups matching one of these
    # @param ignore [Symbol, Regexp, String, Array, nil] leave out groups matching one of these
    # @param baseline [String, Pathname, Baseline, nil] known leaks, which do not fail
    # @param attribution [GemAttribution]
    # @raise [ArgumentError] for a count out of range, or both per_iteration: and max:
    # @raise [TypeError] for a filter that is not a Symbol, Regexp or String
    # @raise [BaselineError] +baseline+ cannot be read
    def initialize(warmup: 2, iterations: 20, per_iteration: nil, max: nil, only: nil, ignore: nil,
                   baseline: nil, attribution: GemAttribution.default)
      @warmup = integer(warmup, "warmup:", 0)
      @iterations = integer(iterations, "iterations:", 1)
      unless per_iteration.nil? || (per_iteration.is_a?(Numeric) && per_iteration.positive?)
        raise ArgumentError, "heapdiff: per_iteration: must be positive"
      end
      raise ArgumentError, "heapdiff: give per_iteration: or max:, not both" if per_iteration && max

      @per_iteration = per_iteration
      @max = max && integer(max, "max:", 0)
      @filter = SiteFilter.new(only: only, ignore: DEFAULT_IGNORE + Array(ignore), attribution: attribution)
      # Module#===, not is_a?: a BasicObject has no methods to ask.
      @baseline = NilClass === baseline || Baseline === baseline ? baseline : Baseline.load(baseline)
    end

    # The key of an allocation site across the windows' reports.
    def self.site(group)
      [group.type, group.class_name, group.file, group.line]
    end

    # The default rule: retention in each of two windows (no per_iteration:, no max:).
    def steady?
      per_iteration.nil? && max.nil?
    end

    # The smallest count in a window that fails (for the default rule, in each window).
    #
    # @return [Integer] objects
    def limit
      return 1 if steady?

      max ? max + 1 : (per_iteration * iterations).ceil
    end

    # The rule, for messages: "objects kept in each of two windows of 20 iterations".
    #
    # @return [String]
    def threshold_text
      return "any steady retention: objects kept in each of two windows of #{iterations} iterations" if steady?

      return "max: #{max}, more than #{max} objects over #{iterations} iterations" if max

      "#{per_iteration} object(s) per iteration, #{limit} over #{iterations} iterations"
    end

    # What a failing site did, for the failure message.
    def rule_text
      return "retained objects in each of two windows of #{iterations} iterations (any steady retention fails)" if steady?
      return "retained more than max: #{max} objects over #{iterations} iterations" if max

      "retained objects in proportion to the iterations (#{threshold_text})"
    end

    # Runs the check on the block (see the class comment). The report's last dump
    # stays loaded for Result#message's suspects; the first two are closed.
    #
    # @yield the code under test
    # @return [Result]
    # @raise [ArgumentError] no block
    # @raise [SnapshotError] a snapshot could not be written
    def run(&block)
      raise ArgumentError, "heapdiff: the leak check needs a block" unless block

      keep = %w[1 true yes on].include?(ENV.fetch("HEAPDIFF_KEEP", "").downcase)
      dir = Dir.mktmpdir("heapdiff-")
      *earlier, report = with_tracing { measure(dir, &block) }
      leaks = kept(report).select { |group| group.count >= limit }
      first_counts = earlier.first && kept(earlier.first).to_h { |group| [LeakCheck.site(group), group.count] }
      earlier.each(&:close)
      leaks.select! { |group| first_counts.fetch(LeakCheck.site(group), 0) >= limit } if first_counts
      fresh = baseline && new_leaks(report, leaks)
      leaks.select! { |group| fresh.any? { |leak| leak.sites.any? { |s| s.site.equal?(group) } } } if fresh
      Result.new(report: report, leaks: leaks, check: self, dir: keep ? dir : nil, first_counts: first_counts,
                 new_leaks: fresh)
    ensure
      FileUtils.rm_rf(dir) if dir && !keep
    end

    # The report's groups that the filters keep.
    #
    # @param report [Report]
    # @return [Array<Group>]
    def kept(report)
      @filter.select(report)
    end

    private

    # The leaks of +report+ that hold one of the failing +groups+ and that the
    # baseline does not know.
    def new_leaks(report, groups)
      baseline.new_leaks(report.leaks).select { |leak| leak.sites.any? { |s| groups.include?(s.site) } }
    end

    # One Report per window, oldest first. The block is called without arguments:
    # RSpec's compound matchers refuse two matchers that both pass some. Only the
    # dumps' paths are kept between snapshots: a Snapshot's sidecar values (strings
    # made by Ruby's time.rb, not by heapdiff's files) would otherwise be retained in
    # the next window, as if the block had kept them.
    def measure(dir, &block)
      warmup.times { block.call }
      snapshots = [Heapdiff.snapshot(dir: dir).path]
      (steady? ? 2 : 1).times do
        iterations.times { block.call }
        snapshots << Heapdiff.snapshot(dir: dir).path
      end
      block.call
      snapshots << Heapdiff.snapshot(dir: dir).path
      snapshots.each_cons(3).map do |before, after, later|
        report = Heapdiff.diff(before, after, later)
        # Only the last heap is needed after the diff (suspects and samples in the
        # failure message are on it): free the other two now, not at the GC's leisure.
        report.before.close
        report.after.close
        report
      end
    end

    # Turns allocation tracing on for the run if it was off, and off again after.
    def with_tracing
      was_tracing = Heapdiff.tracing?
      Heapdiff.trace_allocations! unless was_tracing
      yield
    ensure
      Heapdiff.stop_tracing! unless was_tracing
    end

    def integer(value, name, min)
      return value if value.is_a?(Integer) && value >= min

      raise ArgumentError, "heapdiff: #{name} must be an Integer >= #{min}, got #{value.inspect}"
    end
  end
end
