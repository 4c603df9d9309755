# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# `heapdiff verify` on two real recordings of one program with two unrelated leaks
# (spec/support/apps/two_leaks.rb): one before the session leak was fixed, one after,
# each by a Heapdiff::Recorder in its own spawned process. The program counts the jobs
# it ran and the objects each leak kept, per phase between two snapshots: the truth
# the verdicts and rates are checked against. AFTER runs more jobs than BEFORE (and
# mixes them otherwise), so that only a rate per job can call the event leak
# unchanged.
module TwoLeaksRun
  APP = File.expand_path("../support/apps/two_leaks.rb", __dir__)
  EXE = File.expand_path("../../exe/heapdiff", __dir__)
  BEFORE_JOBS = [30, 60, 45].freeze
  AFTER_JOBS = [90, 40, 70].freeze

  module_function

  # Runs the program; returns its recording's directory and its counts.
  def record(tmp, name, jobs, fixed:, sessions_per_job: 3)
    dir = File.join(tmp, name)
    counts = File.join(tmp, "#{name}.counts")
    out, status = Processes.ruby("load ARGV.shift", APP, dir, counts, *jobs.map(&:to_s),
                                 env: { "FIXED" => fixed ? "1" : "0", "SESSIONS_PER_JOB" => sessions_per_job.to_s })
    raise "two_leaks.rb failed: #{out}" unless status.success?

    header, *phases = File.readlines(counts).map { |line| JSON.parse(line) }
    { dir: dir, lines: header.fetch("lines"), phases: phases }
  end

  def heapdiff(*args)
    Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, EXE, *args)
  end
end

RSpec.describe "heapdiff verify on a leaky recording against a fixed one" do
  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-verify")
    @before = TwoLeaksRun.record(@tmp, "before", TwoLeaksRun::BEFORE_JOBS, fixed: false)
    @after = TwoLeaksRun.record(@tmp, "after", TwoLeaksRun::AFTER_JOBS, fixed: true)
    @verification = Heapdiff.verify(@before[:dir], @after[:dir])
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:verification) { @verification }

  # The program's own count: objects a leak kept per job over the whole recording.
  def per_job(run, leak)
    run[:phases].sum { |p| p["leaked"].fetch(leak, 0) }.fdiv(run[:phases].sum { |p| p["jobs"] })
  end

  def growth_per_phase(run, leak)
    run[:phases].map { |p| p["leaked"].fetch(leak, 0) }
  end

  # The row whose leak holds the +type+ objects made at the program's +mark+ line.
  def row_at(mark, type)
    line = @before[:lines].fetch(mark)
    verification.find do |row|
      (row.before || row.after).sites.any? { |key| key.start_with?("#{type} ") && key.end_with?("two_leaks.rb:#{line}") }
    end
  end

  it "says fixed for the leak the fix removed, at the rate per job the program leaked it before" do
    expect(growth_per_phase(@after, "sessions")).to all(eq(0))
    row = row_at("session-leak", "STRING")
    expect(row).to have_attributes(status: :fixed, unit: :unit, after: nil, after_rate: 0.0, reduction: 1.0)
    expect(row.before.counts.each_cons(2).map { |a, b| b - a }).to eq(growth_per_phase(@before, "sessions"))
    expect(row.before_rate).to eq(per_job(@before, "sessions"))
  end

  it "says unchanged for the unrelated leak left in, though AFTER ran more jobs" do
    expect(@after[:phases].sum { |p| p["jobs"] }).to be > @before[:phases].sum { |p| p["jobs"] }
    row = row_at("event-leak", "HASH")
    expect(row).to have_attributes(status: :unchanged, unit: :unit)
    expect(row.before.sites).to include(a_string_starting_with("STRING ").and(ending_with("two_leaks.rb:#{@before[:lines]["event-leak"]}")))
    expect(row.before.counts.each_cons(2).map { |a, b| b - a }).to eq(growth_per_phase(@before, "events"))
    expect(row.after.counts.each_cons(2).map { |a, b| b - a }).to eq(growth_per_phase(@after, "events"))
    expect([row.before_rate, row.after_rate]).to eq([per_job(@before, "events"), per_job(@after, "events")])
  end

  it "finds the program's two leaks and nothing else, and passes" do
    expect(verification.map(&:status)).to contain_exactly(:fixed, :unchanged)
    expect(verification).to be_passed
  end

  # Unfixed, with a phase of no jobs: no site rises in every step, so the trend finds no
  # leak; the leaks still grew, at their rates per job.
  it "does not call a leak fixed that grew in AFTER without being a leak by the trend's rule" do
    idle = TwoLeaksRun.record(@tmp, "idle", [50, 0], fixed: false)
    verification = Heapdiff.verify(@before[:dir], idle[:dir])
    expect(verification.map(&:status)).to all(eq(:unchanged))
    expect(verification.map { |row| row.after.at_sites }).to all(be(true))
    rates = verification.rows.to_h { |row| [row.signature, row.after_rate] }
    expect(rates).to eq(row_at("session-leak", "STRING").signature => per_job(idle, "sessions"),
                        row_at("event-leak", "HASH").signature => per_job(idle, "events"))
    expect(verification.warnings.last).to end_with("are leaks of one recording only: in the other, the rate is of " \
                                                   "all the objects of its sites, held through it or not")
  end

  it "says reduced, by how much, for a partial fix, and worse for a leak that grew faster" do
    partial = TwoLeaksRun.record(@tmp, "partial", [40, 20, 60], fixed: false, sessions_per_job: 1)
    faster = TwoLeaksRun.record(@tmp, "faster", [40, 20, 60], fixed: false, sessions_per_job: 6)
    session = row_at("session-leak", "STRING").signature
    row = Heapdiff.verify(@before[:dir], partial[:dir])[session]
    expect(row).to have_attributes(status: :reduced, after_rate: per_job(partial, "sessions"))
    expect(row.reduction).to be_within(1e-9).of(1 - (per_job(partial, "sessions") / per_job(@before, "sessions")))
    expect(Heapdiff.verify(@before[:dir], faster[:dir])[session])
      .to have_attributes(status: :worse, after_rate: per_job(faster, "sessions"))
  end

  context "with the command" do
    let(:fixed) { row_at("session-leak", "STRING").signature }
    let(:unchanged) { row_at("event-leak", "HASH").signature }

    it "prints the table, one line per leak, and exits 0" do
      out, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir], @after[:dir])
      expect(status.exitstatus).to eq(0), err
      expect(out.lines.first).to start_with("Leaks before → after, objects per job or request: 1 fixed, 1 unchanged")
      expect(out.lines.grep(/#{fixed}/)).to contain_exactly(a_string_starting_with("  fixed "))
      expect(out.lines.grep(/#{unchanged}/)).to contain_exactly(a_string_starting_with("  unchanged "))
    end

    it "gives the same verdicts for lists of dumps split by --, in JSON" do
      dumps = [@before, @after].map { |run| Dir.glob(File.join(run[:dir], "heap-[0-9][0-9][0-9][0-9].json")) }
      out, err, status = TwoLeaksRun.heapdiff("verify", *dumps[0], "--", *dumps[1], "--format", "json")
      expect(status.exitstatus).to eq(0), err
      json = JSON.parse(out)
      expect(json["leaks"].to_h { |l| [l["signature"], l["status"]] }).to eq(fixed => "fixed", unchanged => "unchanged")
      expect(json).to include("unit" => "unit", "passed" => true)
      out, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir], "--", *dumps[1], "--format", "json")
      expect(status.exitstatus).to eq(0), err
      expect(JSON.parse(out)["leaks"].to_h { |l| [l["signature"], l["status"]] }).to eq(fixed => "fixed", unchanged => "unchanged")
    end

    it "exits 1 for a leak that is new (the recordings swapped), naming it" do
      out, err, status = TwoLeaksRun.heapdiff("verify", @after[:dir], @before[:dir])
      expect(status.exitstatus).to eq(1)
      expect(out.lines.grep(/#{fixed}/)).to contain_exactly(a_string_starting_with("  new "))
      expect(err).to start_with("heapdiff: new leak #{fixed}: ")
    end

    it "exits 1 when a leak --fixed names is not fixed, and 0 when it is" do
      _, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir], @after[:dir], "--fixed", unchanged)
      expect(status.exitstatus).to eq(1)
      expect(err).to eq("heapdiff: leak #{unchanged} is unchanged, not fixed (--fixed)\n")
      _, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir], @after[:dir], "--fixed", fixed)
      expect(status.exitstatus).to eq(0), err
    end

    it "refuses what is not two recordings with a usage error" do
      _, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir])
      expect(status.exitstatus).to eq(2)
      expect(err).to start_with("heapdiff: verify needs BEFORE and AFTER")
      _, err, status = TwoLeaksRun.heapdiff("verify", @before[:dir], File.join(@tmp, "nowhere"))
      expect(status.exitstatus).to eq(2)
      expect(err).to start_with("heapdiff: no such directory: ")
      # Two dumps without --: the error says how verify takes dumps, not diff's usage.
      dumps = Heapdiff::Snapshot.list(@before[:dir]).first(2).map(&:path)
      _, err, status = TwoLeaksRun.heapdiff("verify", *dumps)
      expect(status.exitstatus).to eq(2)
      expect(err).to start_with("heapdiff: #{dumps[0]} is a file: verify takes two directories, or lists of dumps " \
                                "split by --: 'heapdiff verify BEFORE-DUMP… -- AFTER-DUMP…'\n")
    end
  end
end
