# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# `heapdiff compare` on a real Puma cluster (Debian's puma), 2 workers, the app behind
# Heapdiff::Rack (spec/support/apps/puma_siblings). Each worker records its own
# snapshots (HEAPDIFF_SIGNAL sent to it, Heapdiff::Env.start in on_worker_boot: each in
# DIR/pid-PID), three of them. Between two, each worker serves requests to /shared,
# and one worker (the leaker) to /only; both routes leak in the worker that serves them.
# Puma spreads requests as it likes: /shared goes on until each worker has served
# REQUESTS (the body names the worker that served), and /only is requested while the
# other worker is stopped (SIGSTOP, then SIGCONT), so that only the leaker can accept.
# Each worker counts what each leak kept.
module PumaSiblingsRun
  APP = File.expand_path("../support/apps/puma_siblings/config.ru", __dir__)
  EXE = File.expand_path("../../exe/heapdiff", __dir__)
  REQUESTS = 3
  # Requests a phase may take to give each worker its share, before the run fails.
  MAX_REQUESTS = 400

  module_function

  def run(tmp)
    Processes.with_recording_workers(tmp, APP) do |pids, dirs, port, counts|
      leaker = pids.last
      3.times do |n|
        Processes.snapshot_each(dirs, n + 1)
        break if n == 2

        serve(port, "/shared?phase=#{n + 1}", pids)
        alone(pids - [leaker]) { serve(port, "/only?phase=#{n + 1}", [leaker]) }
      end
      { dir: File.join(tmp, "snapshots"), leaker: leaker, pids: pids, counts: counts.call }
    end
  end

  # Runs the block with +pids+ stopped: the other workers serve what it requests.
  # SIGSTOP stops a process's threads one by one as each next runs: on a busy machine
  # a thread that has not stopped yet could still accept a request. So the block runs
  # once every thread is stopped (state T in /proc/PID/task/*/stat).
  def alone(pids)
    pids.each { |pid| Process.kill("STOP", pid) }
    Processes.wait_for("pids #{pids.join(", ")} to stop", timeout: 30) { pids.all? { |pid| stopped?(pid) } }
    yield
  ensure
    pids.each { |pid| Process.kill("CONT", pid) }
  end

  # Are all the threads of +pid+ stopped? The state is the field after the
  # parenthesised command name (proc(5)).
  def stopped?(pid)
    Dir.glob("/proc/#{pid}/task/*/stat").all? { |stat| File.read(stat)[/\) (\S)/, 1] == "T" }
  rescue SystemCallError
    false
  end

  # Requests +path+ until each of +pids+ has served REQUESTS of them.
  def serve(port, path, pids)
    served = Hash.new(0)
    MAX_REQUESTS.times do
      return if pids.all? { |pid| served[pid] >= REQUESTS }

      response = Processes.http_get(port, path) or raise "no answer to #{path}"
      pid = Integer(response.body)
      raise "#{path} was served by pid #{pid}, which should have been stopped" unless pids.include?(pid)

      served[pid] += 1
    end
    raise "Puma gave #{path} to #{served} in #{MAX_REQUESTS} requests, not #{REQUESTS} to each of #{pids}"
  end

  def heapdiff(*args)
    Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, EXE, *args)
  end
end

RSpec.describe "heapdiff compare on a real two-worker Puma cluster" do
  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-compare")
    @run = PumaSiblingsRun.run(@tmp)
    @siblings = Heapdiff.compare(@run[:dir])
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:siblings) { @siblings }
  let(:leaker) { @run[:leaker] }
  let(:other) { (@run[:pids] - [leaker]).first }

  # What +leak+ ("shared", "only") kept in +pid+, as that worker counted it.
  def kept(pid, leak)
    @run[:counts][pid]["leak_counts"][leak].values.sum
  end

  # The row whose leak holds the strings made at the app's +mark+ line.
  def row_at(mark)
    counts = @run[:counts].values.first
    key = "STRING #{counts["file"]}:#{counts["lines"].fetch(mark)}"
    siblings.find do |row|
      row.growths.compact.any? { |g| g.sites.any? { |s| s.start_with?("STRING ") && key.end_with?(s.delete_prefix("STRING ")) } }
    end
  end

  it "compares the two workers, each over its own three snapshots" do
    expect(siblings.processes.map { |p| p.identity.pid }).to match_array(@run[:pids])
    expect(siblings.processes.map { |p| p.snapshots.size }).to eq([3, 3])
  end

  it "names the worker that served the leaking route as the only one with its leak, with what it kept" do
    expect(kept(leaker, "only")).to be_positive
    expect(kept(other, "only")).to eq(0)
    row = row_at("only-leak")
    expect(row).not_to be_shared
    expect(siblings.some).to include(row)
    pids = siblings.processes.map { |p| p.identity.pid }
    expect(pids.zip(row.counts).to_h).to eq(leaker => kept(leaker, "only"), other => nil)
  end

  it "has the leak of every worker as shared, with each worker's own count" do
    row = row_at("shared-leak")
    expect(row).to be_shared
    pids = siblings.processes.map { |p| p.identity.pid }
    expect(pids.zip(row.counts).to_h).to eq(@run[:pids].to_h { |pid| [pid, kept(pid, "shared")] })
  end

  it "says so in the command's table and JSON" do
    only = row_at("only-leak").signature
    out, err, status = PumaSiblingsRun.heapdiff("compare", @run[:dir])
    expect(status.exitstatus).to eq(0), err
    # The counts' legend comes before the first of them.
    expect(out.lines[3]).to eq("Per process: the leak's objects at its last snapshot (+ growth since its first); - none.\n")
    some = out.lines.drop_while { |l| !l.start_with?("Only in some") }
    at = some.index { |l| l.include?(only) }
    expect(some[at]).to end_with(" (only in pid #{leaker})\n")
    counts = some[at + 1]
    expect(counts.split("  ").map(&:strip).reject(&:empty?))
      .to contain_exactly("pid #{leaker}: #{kept(leaker, "only")} (+#{kept(leaker, "only")})", "pid #{other}: -")

    out, err, status = PumaSiblingsRun.heapdiff("compare", @run[:dir], "--format", "json")
    expect(status.exitstatus).to eq(0), err
    json = JSON.parse(out)
    row = json["some"].find { |r| r["signature"] == only }
    pids = json["processes"].map { |p| p["pid"] }
    expect(pids.zip(row["counts"]).to_h).to eq(leaker => kept(leaker, "only"), other => nil)
  end

  it "refuses fewer than two processes to compare, naming the directory, with exit 2" do
    one = File.join(@run[:dir], "pid-#{leaker}")
    _, err, status = PumaSiblingsRun.heapdiff("compare", one)
    expect(status.exitstatus).to eq(2)
    expect(err).to eq("heapdiff: comparing needs at least two processes with two snapshots or more each, found 1 in #{one}\n")
    _, err, status = PumaSiblingsRun.heapdiff("compare")
    expect([status.exitstatus, err.lines.first]).to eq([2, "heapdiff: compare needs a directory\n"])
  end
end
