# frozen_string_literal: true

require_relative "heapdiff/version"
require_relative "heapdiff/errors"
require_relative "heapdiff/arguments"
require_relative "heapdiff/printable"
require_relative "heapdiff/native"
require_relative "heapdiff/object"
require_relative "heapdiff/heap"
require_relative "heapdiff/group"
require_relative "heapdiff/report"
require_relative "heapdiff/path"
require_relative "heapdiff/suspect"
require_relative "heapdiff/tracing"
require_relative "heapdiff/snapshot"
require_relative "heapdiff/redactor"
require_relative "heapdiff/recorder"
require_relative "heapdiff/trend"
require_relative "heapdiff/env"

# heapdiff finds memory leaks in Ruby processes: it loads heap dumps written by
# ObjectSpace.dump_all (in Rust, without holding the GVL), diffs them exactly, and
# hands back Ruby objects.
#
#   report = Heapdiff.diff("0.json", "1.json", "2.json")
#   puts report
module Heapdiff
  # Files under this directory are heapdiff's own: objects allocated there are noise.
  OWN_PATH = File.expand_path("heapdiff", __dir__)
  # Path prefixes the diff leaves out as heapdiff's own (whole path components).
  OWN_PATHS = ["#{OWN_PATH}/", File.expand_path("heapdiff.rb", __dir__)].freeze

  class << self
    # Loads a heap dump (plain or gzip) into an index. Raises ParseError when the file
    # is not a heap dump, FileError when it cannot be read.
    #
    # The index lives in Rust memory, which Ruby's GC is told about (so that dropped
    # heaps are collected); Heap#close frees it at once. With a block, yields the Heap,
    # closes it when the block returns (or raises) and returns the block's value.
    def load(path)
      path = Arguments.path(path, "path")
      heap = Heap._load(File.expand_path(path))
      return heap unless block_given?

      begin
        yield heap
      ensure
        heap.close
      end
    end

    # Objects in +after+ that +before+ did not have and, given +later+, that +later+
    # still has: what was allocated between the first two dumps and is still retained.
    # Arguments are paths or Heaps. +include_noise: true+ keeps the allocation tracer's
    # own object and heapdiff's own allocations.
    def diff(before, after, later = nil, include_noise: false)
      Report.build(*load_all([before, after, later]), include_noise: include_noise)
    end

    # How each allocation site evolves across the snapshots in a Recorder's directory
    # (+paths_or_dir+ a directory) or in a list of dumps (paths or Snapshots, oldest
    # first): a Trend. Raises TrendError for fewer than two snapshots.
    def trend(paths_or_dir, include_noise: false)
      Trend.build(Trend.snapshots_from(paths_or_dir), include_noise: include_noise)
    end

    private

    # Loads the paths among +values+ side by side, one Ruby thread each: loading runs
    # without the GVL, and one load's serial steps overlap another's parallel parse.
    # The first failure is raised as soon as it happens; the other loads are stopped.
    def load_all(values)
      results = values.dup
      done = Queue.new
      threads = []
      values.each_with_index do |value, i|
        next if NilClass === value || Heap === value

        threads << Thread.new do
          Thread.current.report_on_exception = false
          done << [i, begin
            load(value)
          rescue StandardError => e
            e
          end]
        end
      end
      threads.size.times do
        i, result = done.pop
        raise result if result.is_a?(Exception)

        results[i] = result
      end
      results
    ensure
      # Interrupted (Timeout, Ctrl-C) or one load failed: stop the others, and wait
      # for them so that no thread outlives the call.
      threads&.each(&:kill)&.each(&:join)
    end
  end
end
