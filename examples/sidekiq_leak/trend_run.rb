# frozen_string_literal: true

# Runs the leaking Sidekiq app with trend_app.rb and lets heapdiff's middleware record
# six snapshots of the server, one after every JOBS_PER_SNAPSHOT jobs:
#
#   ruby examples/sidekiq_leak/trend_run.rb OUTDIR [JOBS_PER_SNAPSHOT]
#
# Writes OUTDIR/snapshots/heap-0001.json … heap-0006.json (with their sidecars), as a
# Recorder leaves them, and OUTDIR/expected.json with what the process itself counted:
#
#   leak_location, leak_per_snapshot (leaked Strings alive at each snapshot: the
#   cumulative counts per phase), cache_location, cache_size, receipt_location,
#   receipt_lines, jobs_per_snapshot, jobs_done, jobs_failed, pid.
#
# From Ruby: require_relative "trend_run"; SidekiqLeak::TrendRunner.new(outdir).run
# returns expected.json's contents.

require_relative "run"

module SidekiqLeak
  class TrendRunner
    include Logging
    SNAPSHOTS = 6
    DEFAULT_JOBS_PER_SNAPSHOT = 100
    APP = File.expand_path("trend_app.rb", __dir__)
    TIMEOUT = 600 # seconds, for all the jobs and snapshots

    def initialize(outdir, jobs_per_snapshot = DEFAULT_JOBS_PER_SNAPSHOT, log: $stderr)
      @outdir = File.expand_path(outdir)
      @jobs = jobs_per_snapshot
      @log = log
    end

    def run
      started = now
      dir = File.join(@outdir, "snapshots")
      FileUtils.rm_rf(dir)
      FileUtils.mkdir_p(@outdir)
      counts = Dir.mktmpdir("heapdiff-sidekiq-trend") { |tmp| record(tmp, dir) }
      expected = expected(counts)
      File.write(File.join(@outdir, "expected.json"), JSON.pretty_generate(expected) + "\n")
      say format("done in %.1f s: %s, leaked per snapshot %s", now - started, dir, expected["leak_per_snapshot"])
      expected
    end

    private

    # Pushes every job at once (one FIFO queue, one processor thread): the middleware
    # snapshots after jobs N, 2N, … 6N, then TrendCountsJob (job 6N+1) writes the counts.
    def record(tmp, dir)
      counts = File.join(tmp, "counts.json")
      env = { "HEAPDIFF_TREND_DIR" => dir, "HEAPDIFF_TREND_EVERY_JOBS" => @jobs.to_s }
      Server.new(tmp, log: @log, app: APP, env: env).run do |server|
        SNAPSHOTS.times { |phase| server.push("TrendOrderJob", Array.new(@jobs) { |i| [phase, i] }) }
        server.push("TrendCountsJob", [[counts]])
        server.wait_until(TIMEOUT, "the jobs") { File.exist?(counts) }
      end
      JSON.parse(File.read(counts)).merge(JSON.parse(File.read("#{counts}.trend")))
    end

    def expected(counts)
      leaked = counts["leak_counts"]
      stray = leaked.keys - Array.new(SNAPSHOTS, &:to_s)
      raise "leaked strings outside any phase: #{leaked.slice(*stray)}" unless stray.empty?

      per_phase = Array.new(SNAPSHOTS) { |p| leaked.fetch(p.to_s, 0) }
      {
        "leak_location" => "#{counts["leak_file"]}:#{counts["leak_line"]}",
        "leak_per_snapshot" => per_phase.each_index.map { |k| per_phase[0..k].sum },
        **counts.slice("cache_location", "cache_size", "receipt_location", "receipt_lines"),
        "jobs_per_snapshot" => @jobs,
        "jobs_done" => counts["jobs_done"],
        "jobs_failed" => counts["jobs_failed"],
        "pid" => counts["pid"]
      }
    end
  end
end

if $PROGRAM_NAME == __FILE__
  if ARGV.empty? || ARGV.size > 2 || ARGV.any? { |a| a.start_with?("-") }
    warn "usage: ruby #{$PROGRAM_NAME} OUTDIR [JOBS_PER_SNAPSHOT]"
    exit 2
  end
  SidekiqLeak::TrendRunner.new(ARGV[0], Integer(ARGV[1] || SidekiqLeak::TrendRunner::DEFAULT_JOBS_PER_SNAPSHOT)).run
end
