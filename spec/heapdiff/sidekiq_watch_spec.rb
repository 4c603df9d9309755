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
# two classes, then ends with TAIL LeakyJobs: a finished job's instance or payload can
# stay referenced from the processor thread's machine stack (the "machine_context"
# root, scanned conservatively) until later jobs overwrite the slot, so that the jobs
# a snapshot follows are mostly ones whose instances are meant to live. The app counts its runs per class and its
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

  # Survivors besides LeakyJob's instances: a finished job (instance or payload) can stay
  # referenced from the processor thread's machine stack, which the GC scans
  # conservatively, until later calls overwrite the slot (about one run in three has a
  # CleanJob of the last phase there). Each such label's sampled addresses in the dump
  # must be held only from "machine_context": no precise root reaches them.
  def conservative_only?(snapshot, label, survivor)
    heap = Heapdiff.load(snapshot.path)
    paths = survivor["addresses"].filter_map { |a| heap.at(a) }.map { |o| heap.path_to_root(o) }
    expect(paths).to all(be_nil.or(be_conservative)), "#{snapshot.path}: #{label} #{paths.map(&:to_s)}"
  end

  it "records in each sidecar every LeakyJob run so far as alive, and CleanJobs only from a machine stack" do
    snapshots.each_with_index do |snapshot, i|
      alive = per_phase["LeakyJob"] * (i + 1)
      survivors = snapshot.meta["survivors"]
      expect(survivors).to include("LeakyJob" => include("count" => alive, "watched" => alive)), snapshot.path
      survivors.except("LeakyJob").each do |label, survivor|
        expect(survivor["count"]).to be < SidekiqWatchRun::TAIL, "#{snapshot.path}: #{label} #{survivor}"
        conservative_only?(snapshot, label, survivor)
      end
    end
  end

  it "heapdiff report DIR shows the path from a root through LeakyJob::REGISTRY to one of them" do
    out, err, status = Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__),
                                      "report", @run[:dir])
    expect(status.exitstatus).to eq(0), err
    leaked = counts["registry"]
    section = out[/^Watched objects still alive at heap-0003\.json.*\z/m]
    expect(section).to match(/^  LeakyJob: #{leaked} of #{leaked} watched — ROOT .* → LeakyJob::REGISTRY ARRAY 0x\h+ \(#{leaked} refs\) → \[\d+\] OBJECT LeakyJob 0x\h+( \(\d+ refs?\))?$/)
    # Any other line is a job held only from a machine stack, and says so.
    others = section.lines.drop(1).reject { |line| line.start_with?("  LeakyJob: ") }
    expect(others).to all(match(/ — ROOT machine_context → .*\(held only from a thread's machine stack, which the GC scans conservatively: /))
  end
end
