# frozen_string_literal: true

# The pause a snapshot costs the process it is taken in: Heapdiff.snapshot in-process
# against fork: true, on a heap of about a million live objects.
#
#   ruby -Ilib bench/snapshot_fork.rb [--objects 1_000_000] [--runs 3]
#
# Builds the heap with allocation tracing on (as the binstub runs), then takes --runs
# snapshots each way, alternating, into a temporary directory. Two measures of the
# pause, both in the parent:
#
#   call   how long Heapdiff.snapshot takes to return
#   stall  the longest a ticker thread (1 ms sleeps) could not run: an in-process
#          dump holds the GVL throughout, so every thread stops
#
# For fork: true it also reports how long the child took to have the dump in place
# (Snapshot#wait). Prints the medians and PASS/MISS for the target: fork's pause at
# most 1/5 of the in-process one. Always exits 0: a benchmark, not a test.

require "heapdiff"
require "optparse"
require "tmpdir"

module HeapdiffBench
  class SnapshotFork
    TARGET = 0.2

    def initialize(argv)
      @objects = 1_000_000
      @runs = 3
      OptionParser.new do |o|
        o.on("--objects N", Integer, "live objects to build (default 1_000_000)") { |n| @objects = n }
        o.on("--runs N", Integer, "snapshots each way (default 3)") { |n| @runs = n }
      end.parse!(argv)
    end

    def run
      Heapdiff.trace_allocations!
      @heap = build_heap
      Dir.mktmpdir("heapdiff-bench") do |dir|
        warm_up(dir)
        results = { in_process: [], fork: [] }
        @runs.times do
          results[:in_process] << measure { Heapdiff.snapshot(dir: dir) }
          results[:fork] << measure { Heapdiff.snapshot(dir: dir, fork: true) }
          prune(dir)
        end
        report(results)
      end
    end

    private

    # About @objects live objects: per entry an Array, two Strings and a Hash.
    def build_heap
      started = now
      heap = Array.new(@objects / 4) { |i| ["key-#{i}", { i => "value-#{i}" }] }
      GC.start
      counts = ObjectSpace.count_objects
      @live = counts[:TOTAL] - counts[:FREE]
      puts format("heap: %d live objects (built in %.1f s), RSS %.0f MB", @live, now - started, rss_mb)
      heap
    end

    def warm_up(dir)
      Heapdiff.snapshot(dir: dir)
      Heapdiff.snapshot(dir: dir, fork: true).wait
      prune(dir)
    end

    # Runs the block with a ticker thread beside it. Returns [call, stall, done, size].
    def measure
      stall = 0.0
      ticking = true
      ready = Queue.new
      ticker = Thread.new do
        ready << true
        while ticking
          t = now
          sleep 0.001
          gap = now - t - 0.001
          stall = gap if gap > stall
        end
      end
      ready.pop
      sleep 0.01
      started = now
      snapshot = yield
      call = now - started
      sleep 0.01
      ticking = false
      ticker.join
      snapshot.wait
      done = now - started
      [call, stall, done, File.size(snapshot.path)]
    end

    def prune(dir)
      Dir.children(dir).each { |name| File.unlink(File.join(dir, name)) }
    end

    def report(results)
      ip = medians(results[:in_process])
      fk = medians(results[:fork])
      puts format("dump: %.0f MB", ip[3] / 1e6)
      puts format("%-12s %10s %10s %14s", "", "call (s)", "stall (s)", "dump done (s)")
      puts format("%-12s %10.3f %10.3f %14.3f", "in-process", ip[0], ip[1], ip[2])
      puts format("%-12s %10.3f %10.3f %14.3f", "fork: true", fk[0], fk[1], fk[2])
      results.each do |name, runs|
        puts "  #{name}: " + runs.map { |c, s, d, _| format("call %.3f stall %.3f done %.3f", c, s, d) }.join(" | ")
      end
      ratio = fk[0] / ip[0]
      stall_ratio = fk[1] / ip[1]
      verdict = ratio <= TARGET && stall_ratio <= TARGET ? "PASS" : "MISS"
      puts format("%s: fork's pause is %.3f of the in-process one (call), %.3f (stall); target <= %.2f",
                  verdict, ratio, stall_ratio, TARGET)
    end

    def medians(runs)
      runs.transpose.map { |values| values.sort[values.size / 2] }
    end

    def rss_mb
      File.read("/proc/self/status")[/^VmRSS:\s*(\d+)/, 1].to_i / 1024.0
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end

HeapdiffBench::SnapshotFork.new(ARGV).run if $PROGRAM_NAME == __FILE__
