# frozen_string_literal: true

# A leak hunt as a developer would run it, with heapdiff doing the analysis:
#
#   ruby -Ilib examples/leak_hunt.rb [JOBS_PER_PHASE]
#
# 1. Runs the Sidekiq server of examples/sidekiq_leak (its own redis-server on
#    127.0.0.1), with allocation tracing on, and takes a heap dump after each of
#    three batches of jobs.
# 2. Diffs the three dumps: objects allocated during the second batch and still
#    alive after the third.
# 3. Prints the report, top group first, and checks it against the count the app
#    itself kept of the strings it leaked.

require "heapdiff"
require "json"
require "tmpdir"
require_relative "sidekiq_leak/run"

jobs = Integer(ARGV.fetch(0, SidekiqLeak::Runner::DEFAULT_JOBS_PER_PHASE))

Dir.mktmpdir("heapdiff-demo") do |dir|
  puts "== 1. A Sidekiq server with a leak: #{jobs} jobs per batch, a heap dump after each batch"
  SidekiqLeak::Runner.new(dir, jobs, log: File.open(File::NULL, "w")).run
  paths = (0..2).map { |n| File.join(dir, "#{n}.json") }
  paths.each { |p| puts format("   %-8s %6.1f MB", File.basename(p), File.size(p) / 1e6) }

  puts "\n== 2. heapdiff: what the second batch allocated that is still alive after the third"
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  heaps = paths.map { |p| Heapdiff.load(p) }
  report = Heapdiff.diff(*heaps)
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  heaps.each { |h| puts "   #{h.inspect}  (#{h.recovered_lines} broken lines recovered)" }
  puts format("   loaded and diffed in %.2f s", elapsed)

  puts "\n== 3. The leaks (one per holder: what keeps the objects, then where they were made), then the sites"
  report.leaks.first(3).each { |leak| puts leak.to_s(sites: 3).lines.map { |l| "   #{l}" }.join }
  puts report.to_s(top: 8).lines.map { |l| "   #{l}" }.join

  top = report.first
  puts "\n   Three of the #{top.count} retained objects at the top site:"
  top.sample(3).each { |o| puts "     #{o.inspect}" }

  expected = JSON.parse(File.read(File.join(dir, "expected.json")))
  truth = expected["per_phase"]["1"]
  exact = top.location == expected["leak_location"] && top.count == truth
  puts "\n== The app counted #{truth} strings leaked during the second batch at #{expected["leak_location"]}."
  verdict = exact ? "heapdiff's top group matches exactly." : "MISMATCH: heapdiff's top group is #{top.count} at #{top.location}."
  puts "   #{verdict}"
  exit(exact ? 0 : 1)
end
