# frozen_string_literal: true

# What the memory verdicts cost a process (issue 17):
# - the memory breakdown every snapshot's sidecar carries (Heapdiff::Memory.breakdown),
#   against ObjectSpace.dump_all of the same heap, on LIVE objects (default 1,000,000);
# - watching finished jobs (Heapdiff::Sidekiq install(watch: true)): the middleware's
#   throughput with and without watching, JOBS jobs (default 200,000), each allocating
#   a few small objects, alternating off/on RUNS times (default 5), medians; one job in
#   WATCH_EVERY watched (default 100).
#
#   ruby -Ilib bench/memory_cost.rb
#
# A benchmark, not a test: prints figures and exits 0.

require "heapdiff"
require "heapdiff/sidekiq"
require "tmpdir"

live = Integer(ENV.fetch("LIVE", "1000000"))
jobs = Integer(ENV.fetch("JOBS", "200000"))
runs = Integer(ENV.fetch("RUNS", "5"))
clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
median = ->(values) { values.sort[values.size / 2] }
time = lambda do |&block|
  t = clock.call
  block.call
  clock.call - t
end

# An application-like heap: strings, arrays, hashes, objects with ivars.
Kept = Struct.new(:name, :tags, :attrs)
KEPT = Array.new(live / 4) { |i| Kept.new("name #{i}", ["t#{i % 50}"], { id: i }) }
GC.start
puts format("heap: %d live objects (Ruby %s)", ObjectSpace.count_objects.then { |c| c[:TOTAL] - c[:FREE] }, RUBY_VERSION)

breakdown = median.call(Array.new(runs) { time.call { Heapdiff::Memory.breakdown } })
dump = median.call(Array.new([runs, 3].min) { time.call { File.open(File::NULL, "w") { |f| ObjectSpace.dump_all(output: f) } } })
puts format("memory breakdown: %.1f ms; dump_all to /dev/null: %.0f ms; breakdown = %.1f%% of the dump",
            breakdown * 1e3, dump * 1e3, breakdown / dump * 100)

class BenchJob
  def perform(i) = ["done #{i}", { i: i }]
end

recorder = Heapdiff::Recorder.new(dir: File.join(Dir.tmpdir, "heapdiff-bench-#{Process.pid}"), every: 3600)
plain = Heapdiff::Sidekiq::Middleware.new(Heapdiff::Sidekiq::Schedule.new(recorder, every_jobs: jobs * 10))
# One job in WATCH_EVERY watched (default 100, as Heapdiff::Sidekiq.install).
watch_every = Integer(ENV.fetch("WATCH_EVERY", "100"))
watched = Heapdiff::Sidekiq::Middleware.new(
  Heapdiff::Sidekiq::Schedule.new(recorder, every_jobs: jobs * 10)
                             .watch!(every: watch_every, threshold: jobs * 10, check_every: jobs * 10)
)
run = lambda do |middleware|
  time.call do
    jobs.times do |i|
      job = BenchJob.new
      middleware.call(job, { "args" => [i] }, "default") { job.perform(i) }
    end
  end
end
off = []
on = []
runs.times do
  off << run.call(plain)
  on << run.call(watched)
  Heapdiff::Watch.clear
end
puts format("Sidekiq middleware, %d jobs: %.0f jobs/s unwatched, %.0f jobs/s watched: watching costs %.1f µs a job (%+.1f%%)",
            jobs, jobs / median.call(off), jobs / median.call(on), (median.call(on) - median.call(off)) / jobs * 1e6,
            ((median.call(on) / median.call(off)) - 1) * 100)
