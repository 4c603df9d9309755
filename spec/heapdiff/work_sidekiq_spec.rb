# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../../examples/sidekiq_leak/run"

# A real Sidekiq server (6.4 on the host, 7.3 on trixie) running two job classes in
# one queue: PlaceOrderJob leaks its SQL log lines (app.rb), each with the backtrace
# of its query (HEAPDIFF_LEAK_TRACE=1: about 7 KB a line, 8 lines a run, tens of MB
# over the run: enough to move RSS), MailJob leaks nothing.
# heapdiff's middleware snapshots it after every JOBS jobs, seven times; each phase of
# JOBS jobs mixes the two classes differently (MIX), so that the clean class's counts
# per interval differ from the leaking one's and the fit has to choose. The app counts
# its own runs per class and the strings it leaked, with their bytes.
module SidekiqWorkRun
  APP = File.expand_path("../support/apps/sidekiq_work.rb", __dir__)
  JOBS = 180
  # PlaceOrderJob runs per phase (the rest of JOBS are MailJob runs). Phase 0 ends at
  # the first snapshot; phases 1 to 6 are the six intervals.
  MIX = [90, 36, 144, 0, 90, 180, 54].freeze

  def self.run(tmp)
    dir = File.join(tmp, "snapshots")
    counts = File.join(tmp, "counts.json")
    env = { "HEAPDIFF_WORK_DIR" => dir, "HEAPDIFF_WORK_EVERY_JOBS" => JOBS.to_s, "HEAPDIFF_LEAK_TRACE" => "1" }
    SidekiqLeak::Server.new(tmp, log: $stderr, app: APP, env: env).run do |server|
      MIX.each_with_index do |leaking, phase|
        # Interleaved: the leaking jobs spread over the phase.
        jobs = Array.new(JOBS) { |i| i * leaking / JOBS == (i + 1) * leaking / JOBS ? "MailJob" : "PlaceOrderJob" }
        # PlaceOrderJob's customer is made by its first run (phase 0): later runs all
        # make the same queries, so each leaks as many strings.
        jobs.each_with_index { |klass, i| server.push(klass, [[phase, klass == "MailJob" ? i : 0]]) }
      end
      server.push("WorkCountsJob", [[counts]])
      server.wait_until(300, "the jobs") { File.exist?(counts) }
    end
    { dir: dir, app: JSON.parse(File.read(counts)), mail: JSON.parse(File.read("#{counts}.mail")) }
  end
end

RSpec.describe "What makes a real Sidekiq server grow: the leak fitted to its job class" do
  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-work-sidekiq")
    @run = SidekiqWorkRun.run(@tmp)
    @trend = Heapdiff.trend(@run[:dir])
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:trend) { @trend }
  let(:app) { @run[:app] }
  let(:phases) { (1...SidekiqWorkRun::MIX.size).map(&:to_s) }
  let(:leak) { trend.find { |s| s.location == "#{app["leak_file"]}:#{app["leak_line"]}" && s.type == "STRING" } }

  it "ran every job, and took seven snapshots of one process" do
    runs = SidekiqWorkRun::MIX.each_index.to_h { |p| [p.to_s, app["jobs_done"].fetch(p.to_s, 0) + @run[:mail].fetch(p.to_s, 0)] }
    expect(runs.values).to all(eq(SidekiqWorkRun::JOBS))
    expect(app["jobs_failed"]).to eq({})
    expect(trend.snapshots.size).to eq(7)
    expect(trend.snapshots.map { |s| s.meta["pid"] }.uniq).to eq([app["pid"]])
  end

  it "has each sidecar count the jobs of its interval per class, as the app counted them" do
    expected = phases.map do |p|
      { "PlaceOrderJob" => app["jobs_done"].fetch(p, 0), "MailJob" => @run[:mail].fetch(p, 0) }.select { |_, n| n.positive? }
    end
    expect(trend.work).to eq(expected.map { |jobs| { "jobs" => jobs, "requests" => {} } })
    expect(trend.snapshots.first.meta["work"]["jobs"]).to eq("PlaceOrderJob" => SidekiqWorkRun::MIX[0], "MailJob" => SidekiqWorkRun::JOBS - SidekiqWorkRun::MIX[0])
  end

  # The app's truth: the bytes of the strings it leaked in the six intervals, as Ruby
  # counts them (ObjectSpace.memsize_of: slot and malloc'd buffer, what the
  # breakdown's ruby_heap_live + ruby_malloc sum over all objects). The verdict's
  # ruby_objects growth holds more: the buffer Array's own growth (8 bytes a line, its
  # capacity doubling: under 0.1 MB) and what the rest of the server kept or let go in
  # between (+0.6 MB on Ruby 3.1 in a run without the backtraces, where the leak is
  # 0.1 MB; on Ruby 3.3 with ActiveRecord 7 and Sidekiq 7.3, 4.4 MB more than the leak
  # in a run of 37.6 MB). So the growth is the leak's bytes to within +tolerance+ below
  # and +excess+ above, plus +slack+ bytes either way.
  tolerance = 0.05
  excess = 0.15
  slack = 2_000_000

  it "calls the growth ruby_objects, by the bytes the app leaked (a few % below, #{(excess * 100).round}% above, ± 2 MB)" do
    leaked = phases.sum { |p| app["leak_bytes"].fetch(p, 0) }
    verdict = trend.memory_verdict
    expect(verdict.verdict).to eq(:ruby_objects), verdict.to_s
    expect(verdict.growth[:ruby_objects]).to be_between((leaked * (1 - tolerance)) - slack, (leaked * (1 + excess)) + slack)
    # Not within the stable band: RSS moved by more than 16 MB (or 10% of the first).
    first_rss = verdict.breakdowns.first["rss"]
    expect(verdict.growth[:rss]).to be > [first_rss * Heapdiff::MemoryVerdict::STABLE_FRACTION, Heapdiff::MemoryVerdict::STABLE_BYTES].max
    # The figures shown are those.
    expect(verdict).to have_attributes(bytes: verdict.growth[:ruby_objects], work: SidekiqWorkRun::JOBS * phases.size, slow: false)
    expect(verdict.to_s).to start_with(format("Memory: ruby_objects, +%.1f MB", verdict.bytes / 1e6))
    expect(verdict.to_s.lines.first).to include("per job or request")
    # heapdiff report DIR says the same first, rate per job included, from the sidecars.
    out, err, status = Open3.capture3(RbConfig.ruby, "-I", File.expand_path("../../lib", __dir__),
                                      File.expand_path("../../exe/heapdiff", __dir__), "report", @run[:dir])
    expect(status.exitstatus).to eq(0), err
    expect(out.lines.first).to eq(verdict.to_s.lines.first)
  end

  it "fits the leaking site's growth to PlaceOrderJob, at the rate the app leaked per run" do
    leaked = phases.map { |p| app["leak_counts"].fetch(p, 0) }
    expect(leak.counts.each_cons(2).map { |a, b| b - a }).to eq(leaked)
    # Each run leaks a string per query it makes: as many in every run on Ruby 3.1 and
    # ActiveRecord 6.1 (8), and the fit's rate is one of them.
    per_run = phases.filter_map { |p| app["leak_counts"][p].fdiv(app["jobs_done"][p]) if app["jobs_done"][p] }.uniq
    expect(per_run.max).to be <= per_run.min * 1.2

    driver = leak.growth_driver
    expect(driver).to have_attributes(status: :fitted, kind: "jobs", label: "PlaceOrderJob", fits: 6, intervals: 6)
    expect(driver.rate).to be_between(per_run.min, per_run.max)
    expect(driver.to_s).to eq(format("+%.1f STRING per PlaceOrderJob run (fits 6 of 6 intervals)", driver.rate))
    expect(leak.to_s.lines.last).to eq("    what makes it grow: #{driver}")
    expect(leak.to_h[:growth_driver]).to include(status: :fitted, label: "PlaceOrderJob", fits: 6)
  end

  it "does not fit the clean job class: its counts per interval do not follow the growth" do
    clean = leak.growth_driver.candidates.find { |c| c.label == "MailJob" }
    expect(clean.counts).to eq(phases.map { |p| @run[:mail].fetch(p, 0) })
    expect(clean.fits).to be <= 2
  end

  it "shows it in JSON and in the HTML report's site rows" do
    site = JSON.parse(trend.to_json)["sites"].find { |s| s["location"] == leak.location }
    expect(site["growth_driver"]).to include("status" => "fitted", "label" => "PlaceOrderJob", "text" => leak.growth_driver.to_s)
    expect(trend.to_html).to include(CGI.escapeHTML(leak.growth_driver.to_s))
  end
end
