# frozen_string_literal: true

require "rake"
require "rake/tasklib"
require_relative "cli"

module Heapdiff
  # Rake tasks over the CLI's commands:
  #
  #   require "heapdiff/rake_task"
  #   Heapdiff::RakeTask.new             # heapdiff:diff[a,b,c], heapdiff:report[dir],
  #                                      # heapdiff:path[dump,address], heapdiff:summary[dump]
  #   Heapdiff::RakeTask.new(:leaks) { |t| t.top = 20; t.fail_over = 500 }
  #
  # A task fails (raises) when its command exits non-zero: a usage error, an
  # unreadable dump, or more retained objects than +fail_over+.
  class RakeTask < ::Rake::TaskLib
    # Options passed to every command (see `heapdiff --help`).
    attr_accessor :name, :format, :top, :by, :fail_over, :out, :err

    def initialize(name = :heapdiff)
      super()
      @name = name
      @format = "text"
      @top = 10
      @by = nil
      @fail_over = nil
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
        desc "Diff the latest three snapshots in a directory"
        task(:report, %i[dir]) { |_, args| run("report", args.to_a, fail_over: true) }
        desc "The path from a GC root to an object of a dump"
        task(:path, %i[dump address]) { |_, args| run("path", args.to_a) }
        desc "What a heap dump holds: top types, classes, locations, gems; duplicated strings"
        task(:summary, %i[dump]) { |_, args| run("summary", args.to_a, grouped: true) }
      end
    end

    # +fail_over+ and +grouped+: whether the command takes --fail-over and --by.
    def run(command, args, fail_over: false, grouped: fail_over)
      argv = [command, *args, "--format", format.to_s, "--top", top.to_s]
      argv += ["--by", by.to_s] if grouped && by
      argv += ["--fail-over", self.fail_over.to_s] if fail_over && self.fail_over
      status = CLI.new(out: out, err: err).run(argv)
      raise "heapdiff #{command} failed (exit status #{status})" unless status.zero?
    end
  end
end
