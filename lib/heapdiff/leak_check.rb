# frozen_string_literal: true

require "tmpdir"
require "fileutils"
require_relative "../heapdiff"
require_relative "analysis/gem_attribution"

module Heapdiff
  # The leak check behind the RSpec matcher and the minitest assertion: runs a block
  # +warmup+ times, snapshots, runs it +iterations+ times, snapshots, runs it once
  # more, snapshots, and diffs the three dumps in this process. What the middle
  # interval allocated and the last dump still holds is retained; an allocation site
  # fails when it retains at least +per_iteration+ objects per iteration (or more
  # than +max+ objects in all, when +max:+ is given).
  #
  # Filters (+only:+, +ignore:+, each one pattern or an Array of them): a Symbol is an
  # object type (:string, :STRING), a Regexp matches the file path, a String is a gem
  # name (see GemAttribution: "app", "ruby stdlib", "rspec-core"…) or a part of the path.
  class LeakCheck
    # The test frameworks' own allocations (RSpec's, minitest's) are never the code
    # under test's.
    DEFAULT_IGNORE = [%r{/gems/rspec-[a-z]+-\d}, %r{/gems/minitest-\d}].freeze

    # The outcome: #leaks are the groups over the threshold, largest first.
    Result = Struct.new(:report, :leaks, :check, :dir, keyword_init: true) do
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

        lines = ["expected the block not to leak, but #{leaks.size} allocation site(s) retained " \
                 "objects in proportion to the iterations (#{check.threshold_text}):"]
        leaks.first(top).each do |group|
          lines << "  #{group.count} #{group.label} (#{group.memsize} bytes) at #{group.location}"
          lines << "    #{report.suspect(group)}"
        end
        lines << "  (#{leaks.size - top} more sites)" if leaks.size > top
        lines << "  snapshots kept in #{dir}" if dir
        lines.join("\n")
      end
    end

    attr_reader :warmup, :iterations, :per_iteration, :max, :only, :ignore

    # @param warmup [Integer] runs before the first snapshot
    # @param iterations [Integer] runs between the first two
    # @param per_iteration [Numeric] objects per iteration that fail a site
    # @param max [Integer, nil] objects in all that a site may retain (instead of +per_iteration+)
    # @param only [Symbol, Regexp, String, Array, nil]
    # @param ignore [Symbol, Regexp, String, Array, nil]
    # @param attribution [GemAttribution]
    # @raise [ArgumentError] a count or pattern that is refused
    def initialize(warmup: 2, iterations: 20, per_iteration: 1, max: nil, only: nil, ignore: nil,
                   attribution: GemAttribution.default)
      @warmup = integer(warmup, "warmup:", 0)
      @iterations = integer(iterations, "iterations:", 1)
      unless per_iteration.is_a?(Numeric) && per_iteration.positive?
        raise ArgumentError, "heapdiff: per_iteration: must be positive"
      end

      @per_iteration = per_iteration
      @max = max && integer(max, "max:", 0)
      @only = patterns(only)
      @ignore = DEFAULT_IGNORE + patterns(ignore)
      @attribution = attribution
    end

    # The smallest count that fails.
    #
    # @return [Integer] objects
    def limit
      max ? max + 1 : (per_iteration * iterations).ceil
    end

    # The threshold in words, for messages.
    #
    # @return [String]
    def threshold_text
      max ? "more than #{max} objects" : "#{per_iteration} object(s) per iteration, #{limit} over #{iterations} iterations"
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
      report = with_tracing { measure(dir, &block) }
      leaks = kept(report).select { |group| group.count >= limit }
      Result.new(report: report, leaks: leaks, check: self, dir: keep ? dir : nil)
    ensure
      FileUtils.rm_rf(dir) if dir && !keep
    end

    # The report's groups that the filters keep.
    #
    # @param report [Report]
    # @return [Array<Group>]
    def kept(report)
      report.select do |group|
        (only.empty? || only.any? { |p| match?(p, group) }) && ignore.none? { |p| match?(p, group) }
      end
    end

    private

    def measure(dir, &)
      warmup.times(&)
      before = Heapdiff.snapshot(dir: dir)
      iterations.times(&)
      after = Heapdiff.snapshot(dir: dir)
      yield
      later = Heapdiff.snapshot(dir: dir)
      report = Heapdiff.diff(before, after, later)
      # Only the last heap is needed after the diff (suspects and samples in the
      # failure message are on it): free the other two now, not at the GC's leisure.
      report.before.close
      report.after.close
      report
    end

    # Turns allocation tracing on for the run if it was off, and off again after.
    def with_tracing
      was_tracing = Heapdiff.tracing?
      Heapdiff.trace_allocations! unless was_tracing
      yield
    ensure
      Heapdiff.stop_tracing! unless was_tracing
    end

    def match?(pattern, group)
      case pattern
      when Symbol then group.type == pattern.to_s.upcase
      when Regexp then group.file ? pattern.match?(group.file) : false
      else
        group.file ? (@attribution.name_for(group.file) == pattern || group.file.include?(pattern)) : false
      end
    end

    def patterns(value)
      Array(value).each do |p|
        next if p.is_a?(Symbol) || p.is_a?(Regexp) || p.is_a?(String)

        raise TypeError, "heapdiff: a filter is a Symbol (type), Regexp (path) or String (gem or path), got #{p.class}"
      end
    end

    def integer(value, name, min)
      return value if value.is_a?(Integer) && value >= min

      raise ArgumentError, "heapdiff: #{name} must be an Integer >= #{min}, got #{value.inspect}"
    end
  end
end
