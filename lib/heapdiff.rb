# frozen_string_literal: true

# The pipeline, one folder a stage: capture (a dump of a live process) → the native
# core (parse, index, diff, graph; heapdiff.so) → analysis (the Ruby objects over its
# results) → html. The entry points users require by path (heapdiff/auto, rspec,
# minitest, rake_task, sidekiq, cli) stay at the top of lib/heapdiff.

# Foundations
require_relative "heapdiff/version"
require_relative "heapdiff/errors"
require_relative "heapdiff/arguments"
require_relative "heapdiff/printable"
require_relative "heapdiff/native"

# Capture: tracing allocations, writing snapshots, recording them over time
require_relative "heapdiff/capture/tracing"
require_relative "heapdiff/capture/memory"
require_relative "heapdiff/capture/snapshot"
require_relative "heapdiff/capture/names"
require_relative "heapdiff/capture/redactor"
require_relative "heapdiff/capture/recorder"
require_relative "heapdiff/capture/env"

# Analysis: one dump, a diff of three, the graph's answers, trends over many
require_relative "heapdiff/analysis/gem_attribution"
require_relative "heapdiff/analysis/site_filter"
require_relative "heapdiff/analysis/warnings"
require_relative "heapdiff/analysis/object"
require_relative "heapdiff/analysis/heap"
require_relative "heapdiff/analysis/group"
require_relative "heapdiff/analysis/report"
require_relative "heapdiff/analysis/name"
require_relative "heapdiff/analysis/path"
require_relative "heapdiff/analysis/suspect"
require_relative "heapdiff/analysis/leak"
require_relative "heapdiff/analysis/baseline"
require_relative "heapdiff/analysis/summary"
require_relative "heapdiff/analysis/trend"
require_relative "heapdiff/analysis/memory_verdict"
require_relative "heapdiff/analysis/leak_growth"
require_relative "heapdiff/analysis/verification"
require_relative "heapdiff/analysis/siblings"
# (heapdiff/html/trend_report is loaded by Trend#to_html, on first use.)

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
    # The names sidecar beside it (heap-0001.names.json, written by Heapdiff.snapshot),
    # if any, names the objects the code names: see Heap#name_of and Path.
    #
    # The index lives in Rust memory, which Ruby's GC is told about (so that dropped
    # heaps are collected); Heap#close frees it at once. With a block, yields the Heap,
    # closes it when the block returns (or raises) and returns the block's value.
    #
    # @param path [String, Pathname] a dump written by ObjectSpace.dump_all
    # @yieldparam heap [Heapdiff::Heap] closed when the block returns
    # @return [Heapdiff::Heap, Object] the heap, or the block's value
    # @raise [ParseError] the file is not a heap dump (#path, #line say where)
    # @raise [FileError] the file cannot be read
    # @raise [Interrupted] the load was stopped from outside (Thread#kill, Timeout)
    # @raise [TypeError] +path+ is not a String or Pathname
    def load(path)
      path = Arguments.path(path, "path")
      path = File.expand_path(path)
      heap = Heap._load(path)
      heap._attach_names(Names.read(Names.path_for(path)))
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
    #
    # @param before [String, Pathname, Heap] the first dump
    # @param after [String, Pathname, Heap] the second: the report's objects are its rows
    # @param later [String, Pathname, Heap, nil] the third: keeps what it still holds
    # @param include_noise [Boolean]
    # @return [Heapdiff::Report] groups by allocation site; sizes in bytes
    # @raise [MixedProcessesError] when the dumps' sidecars name different processes
    #   (dumps without a sidecar are checked by their heap pages: a warning)
    # @raise [ParseError, FileError, Interrupted] as Heapdiff.load, for the first failure
    def diff(before, after, later = nil, include_noise: false)
      Snapshot.check_one_process([before, after, later], "a diff")
      Report.build(*load_all([before, after, later]), include_noise: include_noise)
    end

    # How each allocation site evolves across the snapshots in a Recorder's directory
    # (+paths_or_dir+ a directory) or in a list of dumps (paths or Snapshots, oldest
    # first): a Trend. A trend follows one process: in a directory that several
    # processes share, pick one with +process:+ (see Snapshot.list).
    #
    # With a block, yields the trend and closes it (Trend#close) when the block ends,
    # returning the block's value: its last snapshot is freed at once.
    #
    # @param paths_or_dir [String, Pathname, Array<String, Pathname, Snapshot>]
    # @param process [nil, :latest, Integer, ProcessIdentity] for a directory: whose
    #   snapshots (nil: all, which must then be one process's)
    # @param include_noise [Boolean]
    # @yieldparam trend [Heapdiff::Trend]
    # @return [Heapdiff::Trend] without a block; the block's value with one
    # @raise [TrendError] fewer than two snapshots, or not in time order
    # @raise [MixedProcessesError] snapshots of several processes
    # @raise [ParseError, FileError, Interrupted] as Heapdiff.load
    def trend(paths_or_dir, process: nil, include_noise: false)
      trend = Trend.build(Trend.snapshots_from(paths_or_dir, process: process), include_noise: include_noise)
      return trend unless block_given?

      begin
        yield trend
      ensure
        trend.close
      end
    end

    # Whether a fix worked: each leak's growth rate in the recording +before+ the fix
    # against its rate in the one +after+ it (fixed, reduced, unchanged, worse, new;
    # see Verification). Each is a Recorder's directory (its latest process's
    # snapshots) or a list of one process's snapshots, oldest first.
    #
    # @param before [String, Pathname, Array<String, Pathname, Snapshot>]
    # @param after [String, Pathname, Array<String, Pathname, Snapshot>]
    # @return [Heapdiff::Verification]
    # @raise [TrendError] a recording with fewer than two snapshots
    # @raise [MixedProcessesError] a list of several processes' snapshots
    # @raise [ParseError, FileError, Interrupted] as Heapdiff.load
    def verify(before, after)
      Verification.build(before, after)
    end

    # The leaks every process in +dirs+ shares, apart from those only some have, each
    # with its count per process (see Siblings): Puma workers, Sidekiq swarm children,
    # one app's copies on several hosts. Each process's leaks come from the trend over
    # its latest +last+ snapshots (nil: all).
    #
    # @param dirs [String, Pathname, Array<String, Pathname>] directories of snapshots
    #   (their subdirectories one level down too: a forked Recorder's pid-PID)
    # @param last [Integer, nil]
    # @return [Heapdiff::Siblings]
    # @raise [TrendError] fewer than two processes with two snapshots each
    # @raise [ParseError, FileError, Interrupted] as Heapdiff.load
    def compare(dirs, last: nil)
      Siblings.build(dirs, last: last)
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
