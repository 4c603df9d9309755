# frozen_string_literal: true

require "rake"
require "rake/tasklib"
require_relative "cli"

module Heapdiff
  # Rake tasks over the CLI's commands:
  #
  #   require "heapdiff/rake_task"
  #   Heapdiff::RakeTask.new             # heapdiff:diff[a,b,c], heapdiff:report[dir,html],
  #                                      # heapdiff:trend[dir,html], heapdiff:path[dump,address],
  #                                      # heapdiff:summary[dump]
  #   Heapdiff::RakeTask.new(:leaks) { |t| t.top = 20; t.fail_over = 500; t.html = "tmp/trend.html" }
  #
  # Known leaks: heapdiff:diff and heapdiff:report read +baseline+ (by default
  # heapdiff_baseline.json in the project root, where Rake runs, when that file
  # exists) and then fail only for leaks it does not have; heapdiff:baseline[dir]
  # writes it from the latest snapshots, for review in a pull request. +baseline =
  # nil+ reads none.
  #
  # heapdiff:report and heapdiff:trend without a directory read +dir+: by default
  # HEAPDIFF_DIR, else tmp/heapdiff (where heapdiff/auto writes). A task fails (raises)
  # when its command exits non-zero: a usage error, an unreadable dump, or more
  # retained objects than +fail_over+.
  class RakeTask < ::Rake::TaskLib
    # Options passed to every command (see `heapdiff --help`). +html+: a file that
    # heapdiff:report and heapdiff:trend also write the trend to, as HTML.
    attr_accessor :name, :format, :top, :by, :fail_over, :html, :baseline, :out, :err
    attr_writer :dir

    # The baseline file read when it exists (relative to the project root: Rake runs
    # tasks in the Rakefile's directory).
    DEFAULT_BASELINE = "heapdiff_baseline.json"

    # The snapshot directory of report and trend when the task is given none (read
    # when the task runs).
    def dir
      @dir || ENV.fetch("HEAPDIFF_DIR", "").then { |d| d.empty? ? Snapshot::DEFAULT_DIR : d }
    end

    def initialize(name = :heapdiff)
      super()
      @name = name
      @format = "text"
      @top = 10
      @by = nil
      @fail_over = nil
      @html = nil
      @baseline = DEFAULT_BASELINE
      @dir = nil
      @out = $stdout
      @err = $stderr
      yield self if block_given?
      define
    end

    private

    def define
      namespace(name) do
        desc "Diff two or three heap dumps"
        task(:diff, %i[before after later]) { |_, args| run("diff", args.to_a, fail_over: true) }
        desc "The leaks that grow over the snapshots in a directory (HEAPDIFF_DIR or tmp/heapdiff), " \
             "then the diff of the latest three"
        task(:report, %i[dir html]) { |_, args| run("report", snapshots(args), fail_over: true) }
        desc "Write the leaks of the latest snapshots in a directory to the baseline (#{DEFAULT_BASELINE})"
        task(:baseline, %i[dir]) { |_, args| write_baseline(args) }
        desc "Every allocation site across the snapshots in a directory (HEAPDIFF_DIR or tmp/heapdiff)"
        task(:trend, %i[dir html]) { |_, args| run("trend", snapshots(args), grouped: false) }
        desc "The path from a GC root to an object of a dump"
        task(:path, %i[dump address]) { |_, args| run("path", args.to_a) }
        desc "What a heap dump holds: top types, classes, locations, gems; duplicated strings"
        task(:summary, %i[dump]) { |_, args| run("summary", args.to_a, grouped: true) }
      end
    end

    # The directory and --html options of report and trend, from the task's arguments
    # or its settings.
    def snapshots(args)
      html = args[:html] || self.html
      [args[:dir] || dir, *(["--html", html.to_s] if html)]
    end

    # +fail_over+ and +grouped+: whether the command takes --fail-over and --by.
    def run(command, args, fail_over: false, grouped: fail_over)
      argv = [command, *args, "--format", format.to_s]
      argv += ["--top", top.to_s] if CLI::TOP.include?(command)
      argv += ["--by", by.to_s] if grouped && by
      argv += ["--fail-over", self.fail_over.to_s] if fail_over && self.fail_over
      argv += ["--baseline", baseline.to_s] if fail_over && baseline && File.exist?(baseline)
      # No "Try 'heapdiff … --help'": the user typed a Rake task, not the command.
      status = CLI.new(out: out, err: err, hint: false).run(argv)
      raise "heapdiff #{command} failed (exit status #{status})" unless status.zero?
    end

    def write_baseline(args)
      raise "heapdiff:baseline needs a baseline file (t.baseline is nil)" unless baseline

      argv = ["report", args[:dir] || dir, "--format", format.to_s, "--top", top.to_s, "--write-baseline", baseline.to_s]
      status = CLI.new(out: out, err: err, hint: false).run(argv)
      raise "heapdiff report failed (exit status #{status})" unless status.zero?
    end
  end
end
