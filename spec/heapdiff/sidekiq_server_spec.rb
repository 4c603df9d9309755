# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../../examples/sidekiq_leak/run"

# Runs the server of examples/sidekiq_leak (its own redis-server on 127.0.0.1)
# through a binstub, as docs/snapshots.md tells a new user to.
module SidekiqServerRun
  JOBS_PER_PHASE = 150

  BINSTUB = <<~RUBY
    #!/usr/bin/env ruby
    # frozen_string_literal: true

    require "heapdiff/auto"
    load Gem.bin_path("sidekiq", "sidekiq")
  RUBY

  # Runs the server with +env+ added to the HEAPDIFF_* variables; returns what it left:
  # snapshots in DIR, the app's own counts, Sidekiq's log.
  def self.run(tmp, env)
    dir = File.join(tmp, "snapshots")
    binstub = File.join(tmp, "sidekiq")
    File.write(binstub, BINSTUB)
    server = SidekiqLeak::Server.new(tmp, log: $stderr, binstub: binstub, env: {
      "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_KEEP" => "10",
      "HEAPDIFF_EVERY_JOBS" => JOBS_PER_PHASE.to_s
    }.merge(env))
    counts = File.join(tmp, "counts.json")
    begin
      server.start
      3.times { |phase| server.push("PlaceOrderJob", Array.new(JOBS_PER_PHASE) { |i| [phase, i] }) }
      server.push("CountsJob", [[counts]])
      server.wait_until(300, "the jobs") { File.exist?(counts) }
      # The third snapshot's log line comes after the job that asked for it (fork: true).
      server.wait_until(60, "the third snapshot") { File.read(server.sidekiq_log).include?("heap-0003.json (") }
    rescue StandardError
      server.dump_logs
      raise
    ensure
      server.stop
    end
    { dir: dir, counts: JSON.parse(File.read(counts)), log: File.read(server.sidekiq_log) }
  end
end

# A real Sidekiq server (Debian's ruby-sidekiq: 6.4 on the host, 7.3 on trixie, 8.1
# on sid) against a real redis-server on loopback, started with a binstub holding
# `require "heapdiff/auto"` and HEAPDIFF_* variables. Its jobs leak SQL log lines into a thread-local buffer, each tagged with
# its phase, and count them. heapdiff's middleware snapshots the server after every
# JOBS_PER_PHASE jobs: exactly at the ends of the three phases.
RSpec.describe "Snapshots of a real Sidekiq server, taken by heapdiff's middleware" do
  shared_examples "snapshots of a leaking server" do
    let(:snapshots) { Heapdiff::Snapshot.list(run[:dir]) }
    let(:counts) { run[:counts] }

    it "took a snapshot after every #{SidekiqServerRun::JOBS_PER_PHASE} jobs, with no job failing" do
      expect(counts["jobs_done"]).to eq(%w[0 1 2].to_h { |p| [p, SidekiqServerRun::JOBS_PER_PHASE] })
      expect(counts["jobs_failed"]).to eq({})
      expect(snapshots.map { |s| File.basename(s.path) }).to eq(%w[heap-0001.json heap-0002.json heap-0003.json])
      expect(snapshots.map { |s| s.meta["pid"] }.uniq).to eq([counts["pid"]])
      expect(snapshots.map { |s| s.meta["tracing"] }).to all(be(true))
      (1..3).each { |n| expect(run[:log]).to include("heap-000#{n}.json (after job #{n * SidekiqServerRun::JOBS_PER_PHASE}") }
    end

    it "keeps them private: files 0600 in a directory it made 0700" do
      expect(File.stat(run[:dir]).mode & 0o777).to eq(0o700)
      files = Dir.children(run[:dir]).map { |n| File.join(run[:dir], n) }
      expect(files.size).to eq(9) # each dump with its meta and names sidecars
      expect(files.map { |f| File.stat(f).mode & 0o777 }).to all(eq(0o600))
    end

    it "lets Heapdiff.diff name the leaking line first, with the exact count of the middle phase" do
      report = Heapdiff.diff(*snapshots)
      top = report.first
      expect(top.type).to eq("STRING")
      expect(top.location).to eq("#{counts["leak_file"]}:#{counts["leak_line"]}")
      expect(counts["leak_counts"]["1"]).to be > SidekiqServerRun::JOBS_PER_PHASE
      expect(top.count).to eq(counts["leak_counts"]["1"])
      expect(top.sample(5).map(&:value)).to all(start_with("phase=1 "))
      expect(report.warnings.grep(/compacted/)).to be_empty
    end
  end

  context "with the dump in the processor thread" do
    before(:all) do
      @tmp = Dir.mktmpdir("heapdiff-sidekiq-server")
      @run = SidekiqServerRun.run(@tmp, {})
    end
    after(:all) { FileUtils.rm_rf(@tmp) }
    let(:run) { @run }

    include_examples "snapshots of a leaking server"
  end

  context "with fork: true (HEAPDIFF_FORK=1)" do
    before(:all) do
      @tmp = Dir.mktmpdir("heapdiff-sidekiq-server")
      @run = SidekiqServerRun.run(@tmp, { "HEAPDIFF_FORK" => "1" })
    end
    after(:all) { FileUtils.rm_rf(@tmp) }
    let(:run) { @run }

    include_examples "snapshots of a leaking server"

    it "had children write the dumps" do
      expect(snapshots.map { |s| s.meta["forked"] }).to all(be(true))
      expect(run[:log]).to match(/heap-0001\.json \(after job #{SidekiqServerRun::JOBS_PER_PHASE}, [\d.]+ MB\) in [\d.]+ s, paused [\d.]+ s/)
    end
  end
end
