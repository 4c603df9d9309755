# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# A real Puma cluster (Debian's puma: 5.6 on the host, 6.6 on trixie), 2 workers, the
# app behind Heapdiff::Rack. Each worker records its own snapshots (HEAPDIFF_SIGNAL
# sent to it, Heapdiff::Env.start in on_worker_boot), six of them; between two, a phase
# of requests to a leaking route and a clean one, mixed differently in each phase
# (MIX). Puma spreads the requests over the workers as it likes; each worker counts
# its own, and what it leaked.
module PumaWorkRun
  APP = File.expand_path("../support/apps/puma_work/config.ru", __dir__)
  # [leaking, clean] requests in each of the five phases between the six snapshots.
  MIX = [[4, 20], [20, 4], [10, 10], [16, 2], [2, 16]].freeze

  module_function

  def run(tmp)
    Processes.with_recording_workers(tmp, APP) do |_pids, dirs, port, counts|
      id = 0
      (MIX.size + 1).times do |n|
        Processes.snapshot_each(dirs, n + 1)
        break if n == MIX.size

        leaking, clean = MIX[n]
        paths = Array.new(leaking) { "/leak/#{id += 1}" } + Array.new(clean) { "/clean/#{id += 1}" }
        paths.shuffle(random: Random.new(n)).each { |path| Processes.http_get(port, "#{path}?phase=#{n + 1}") }
      end
      # Each worker's trend, over its own snapshots.
      { counts: counts.call,
        trends: dirs.to_h { |pid, d| [pid, Heapdiff.trend(Heapdiff::Snapshot.list(d, process: pid))] } }
    end
  end
end

RSpec.describe "What makes a real Puma cluster's workers grow: the leak fitted to its route" do
  before(:all) { @run = PumaWorkRun.run(@tmp = Dir.mktmpdir("heapdiff-work-puma")) }
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:phases) { (1..PumaWorkRun::MIX.size).map(&:to_s) }
  let(:routes) { { "leak" => "GET /leak/:id", "clean" => "GET /clean/:id" } }

  def leak_site(trend, counts)
    trend.find { |s| s.location == "#{counts["leak_file"]}:#{counts["leak_line"]}" && s.type == "STRING" }
  end

  it "served every request, and has each worker's six snapshots its own" do
    served = @run[:counts].values.flat_map { |c| phases.map { |p| c["requests"].fetch(p, {}).values.sum } }
    expect(served.sum).to eq(PumaWorkRun::MIX.flatten.sum)
    @run[:trends].each do |pid, trend|
      expect(trend.snapshots.size).to eq(6)
      expect(trend.snapshots.map(&:process).map(&:pid).uniq).to eq([pid])
    end
  end

  it "has each worker's sidecars count its own requests per route, as that worker counted them" do
    @run[:trends].each do |pid, trend|
      requests = @run[:counts][pid]["requests"]
      expected = phases.map do |p|
        { "jobs" => {}, "requests" => requests.fetch(p, {}).transform_keys(routes) }
      end
      expect(trend.work).to eq(expected)
    end
  end

  it "fits each worker's leaking site to the leaking route, at the strings the app leaked per request" do
    fitted = @run[:trends].filter_map do |pid, trend|
      counts = @run[:counts][pid]
      site = leak_site(trend, counts)
      leaked = phases.map { |p| counts["leak_counts"].fetch(p, 0) }
      expect(site.counts.each_cons(2).map { |a, b| b - a }).to eq(leaked)
      # A worker that Puma gave too few leaking requests to grow in most intervals has
      # no growing site to explain.
      next unless site.growing?

      expect(site.growth_driver).to have_attributes(status: :fitted, kind: "requests", label: "GET /leak/:id",
                                                    rate: Float(counts["per_request"]), fits: 5, intervals: 5)
      expect(site.to_s).to end_with("what makes it grow: +50.0 STRING per GET /leak/:id request (fits 5 of 5 intervals)")
      pid
    end
    expect(fitted).not_to be_empty
  end
end
