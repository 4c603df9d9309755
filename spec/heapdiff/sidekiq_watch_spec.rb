# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"
require_relative "../../examples/sidekiq_leak/run"

# A real Sidekiq server (6.4 on the host, 7.3 on trixie, 8.1 on sid) against its own
# redis-server on loopback, with Heapdiff::Sidekiq.install(watch: true): every
# finished job is watched. LeakyJob keeps its instances in LeakyJob::REGISTRY,
# CleanJob keeps nothing (spec/support/apps/sidekiq_watch.rb). The middleware
# snapshots the server after every JOBS jobs, three times. Each phase alternates the
# two classes, then ends with TAIL LeakyJobs: a finished job's payload can stay
# referenced from the processor thread's C stack (conservatively: no path in the
# dump) until later jobs overwrite it, so that the jobs a snapshot follows are ones
# whose instances are meant to live. The app counts its runs per class and its
# registry.
module SidekiqWatchRun
  APP = File.expand_path("../support/apps/sidekiq_watch.rb", __dir__)
  JOBS = 40
  TAIL = 4
  PHASES = 3
  # The job classes of a phase, in order.
  KINDS = Array.new(JOBS) { |i| i < JOBS - TAIL && i.even? ? "CleanJob" : "LeakyJob" }.freeze

  def self.run(tmp)
    dir = File.join(tmp, "snapshots")
    counts = File.join(tmp, "counts.json")
    env = { "HEAPDIFF_WATCH_DIR" => dir, "HEAPDIFF_WATCH_EVERY_JOBS" => JOBS.to_s }
    log = nil
    SidekiqLeak::Server.new(tmp, log: $stderr, app: APP, env: env).run do |server|
      PHASES.times do |phase|
        KINDS.each_with_index { |klass, i| server.push(klass, [[(phase * JOBS) + i]]) }
      end
      server.push("WatchCountsJob", [[counts]])
      server.wait_until(300, "the jobs") { File.exist?(counts) }
      # The last snapshot's log line comes once its dump and sidecars are written.
      server.wait_until(300, "the last snapshot") { File.read(server.sidekiq_log).include?("heap-000#{PHASES}.json (") }
      log = File.read(server.sidekiq_log)
    end
    { dir: dir, counts: JSON.parse(File.read(counts)), log: log }
  end
end

RSpec.describe "Watched jobs of a real Sidekiq server: the instances a leaky job keeps alive" do
  before(:all) { @run = SidekiqWatchRun.run(@tmp = Dir.mktmpdir("heapdiff-sidekiq-watch")) }
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:counts) { @run[:counts] }
  let(:snapshots) { Heapdiff::Snapshot.list(@run[:dir]) }
  let(:per_phase) { SidekiqWatchRun::KINDS.tally }

  it "ran every job, and snapshotted the server after each phase" do
    expect(counts["runs"]).to eq(per_phase.transform_values { |n| n * SidekiqWatchRun::PHASES })
    expect(counts["registry"]).to eq(counts["runs"]["LeakyJob"])
    expect(snapshots.map { |s| File.basename(s.path) }).to eq(%w[heap-0001.json heap-0002.json heap-0003.json])
    expect(snapshots.map { |s| s.meta["pid"] }.uniq).to eq([counts["pid"]])
  end

  it "records in each sidecar every LeakyJob run so far as alive, and no CleanJob" do
    snapshots.each_with_index do |snapshot, i|
      alive = per_phase["LeakyJob"] * (i + 1)
      survivors = snapshot.meta["survivors"]
      expect(survivors).to include("LeakyJob" => include("count" => alive, "watched" => alive)), snapshot.path
      # Besides, at most the payloads (args) of some of the TAIL LeakyJobs last run, from
      # the C stack (one, when it happens, on the host's Sidekiq 6.4).
      expect(survivors.keys - ["LeakyJob"]).to all(eq("LeakyJob args")), "#{snapshot.path}: #{survivors}"
      expect(survivors.fetch("LeakyJob args", {}).fetch("count", 0)).to be < SidekiqWatchRun::TAIL
    end
  end

  it "heapdiff report DIR shows the path from a root through LeakyJob::REGISTRY to one of them" do
    out, err, status = Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__),
                                      "report", @run[:dir])
    expect(status.exitstatus).to eq(0), err
    leaked = counts["registry"]
    section = out[/^Watched objects still alive at heap-0003\.json.*\z/m]
    expect(section).to match(/^  LeakyJob: #{leaked} of #{leaked} watched — ROOT .* → LeakyJob::REGISTRY ARRAY 0x\h+ \(#{leaked} refs\) → \[\d+\] OBJECT LeakyJob 0x\h+( \(\d+ refs?\))?$/)
    expect(section).not_to include("CleanJob")
    # At most some of the last jobs' payloads besides (see the sidecars' example).
    expect(section.lines.drop(2)).to all(start_with("  LeakyJob args: ")).and(have_attributes(size: be <= 1))
  end
end
