# frozen_string_literal: true

# What the names sidecar (Heapdiff::Names) costs a snapshot: its collection time and
# size against ObjectSpace.dump_all's time, in a process with a Rails app's libraries
# loaded and eager-loaded (the constants, modules and class ivars the names walk)
# and --objects live objects.
#
#   ruby -Ilib bench/names_cost.rb [--objects 1_000_000] [--runs 3]
#
# Each run: a full GC, dump_all into a temporary file, then the names as a snapshot
# collects them (GC off, after the dump). Prints the medians and PASS/MISS for the
# target: names at most 10% of the dump's time. Always exits 0: a benchmark, not a test.

require "heapdiff"
require "objspace"
require "fileutils"
require "optparse"
require "tmpdir"

module HeapdiffBench
  class NamesCost
    TARGET = 0.10
    # The library set of bench/generate.rb's Rails-sized process.
    LIBRARIES = %w[
      set yaml date time bigdecimal securerandom openssl uri net/http erb logger
      active_support/all active_record rails action_controller/railtie action_view active_job
      action_mailer sidekiq sidekiq/api
    ].freeze
    FRAMEWORKS = %w[ActiveRecord ActionController ActionView ActiveJob ActionMailer].freeze

    def initialize(argv)
      options = OptionParser.new.getopts(argv, "", "objects:1000000", "runs:3")
      @objects = Integer(options["objects"].delete("_"))
      @runs = Integer(options["runs"])
    end

    def run
      load_libraries
      @heap = Array.new(@objects / 4) { |i| ["key-#{i}", { i => "value-#{i}" }] }
      GC.start
      counts = ObjectSpace.count_objects
      puts format("heap: %<live>d live objects, %<modules>d modules, RSS %<rss>.0f MB",
                  live: counts[:TOTAL] - counts[:FREE], modules: ObjectSpace.each_object(Module).count, rss: rss_mb)
      results = Dir.mktmpdir("heapdiff-bench") { |dir| Array.new(@runs) { |i| measure(File.join(dir, "#{i}.json")) } }
      report(results)
    end

    private

    def load_libraries
      LIBRARIES.each do |lib|
        require lib
      rescue LoadError => e
        warn "names_cost: skipping #{lib}: #{e.message}"
      end
      FRAMEWORKS.each do |name|
        Object.const_get(name).eager_load!
      rescue NameError, LoadError => e
        warn "names_cost: eager load skipped: #{e.message}"
      end
    end

    # [dump seconds, names seconds, names bytes, entries, RSS growth in MB]
    def measure(path)
      GC.start(full_mark: true, immediate_sweep: true)
      started = now
      gc_count = GC.count
      compact_count = GC.stat(:compact_count)
      File.open(path, "w") { |io| ObjectSpace.dump_all(output: io) }
      dumped = now
      rss = rss_mb
      json = Heapdiff::Names.capture(gc_count, compact_count, traced: false)
      named = now
      entries = json ? JSON.parse(json)["entries"].size : 0
      [dumped - started, named - dumped, json&.bytesize || 0, entries, rss_mb - rss]
    ensure
      FileUtils.rm_f(path) # a dump each run: hundreds of MB
    end

    def report(results)
      dump, names, bytes, entries, rss = results.transpose.map { |values| values.sort[values.size / 2] }
      share = names / dump
      puts format("dump_all %.2f s; names %.3f s (%.1f%% of the dump), %d entries, %.1f MB of JSON, RSS +%.0f MB",
                  dump, names, share * 100, entries, bytes / 1e6, rss)
      puts "each run's names (s): #{results.map { |r| r[1].round(3) }.join(", ")}"
      puts format("%s: names at most %.0f%% of dump_all's time", share <= TARGET ? "PASS" : "MISS", TARGET * 100)
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def rss_mb
      File.read("/proc/self/status")[/^VmRSS:\s*(\d+) kB/, 1].to_i / 1024.0
    end
  end
end

HeapdiffBench::NamesCost.new(ARGV).run if $PROGRAM_NAME == __FILE__
