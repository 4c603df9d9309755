# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"
require_relative "../support/fixtures"

# Several processes writing snapshots to one directory (Puma workers, a restarted
# Sidekiq, two hosts on one volume): their dumps must never be diffed together. The
# programs below count their own truth: how many strings each process retained, at
# which line.
RSpec.describe "snapshots of several processes in one directory" do
  root = File.expand_path("../..", __dir__)

  # A master and a worker forked from it take turns: master 1, worker 1, master 2,
  # worker 2, master 3, worker 3. Between its snapshots each keeps strings it allocates
  # at its own line: the master 300 a round, the worker 200. The worker snapshots last.
  program = <<~RUBY
    require "heapdiff"
    require "json"
    Heapdiff.trace_allocations!
    dir = ARGV.fetch(0)
    go_r, go_w = IO.pipe
    done_r, done_w = IO.pipe
    kept = []
    worker = fork do
      3.times do |round|
        go_r.read(1)
        200.times { |i| kept << "worker \#{round} \#{i}" } # WORKER_LINE
        Heapdiff.snapshot(dir: dir)
        done_w.write("x")
      end
      exit!(0)
    end
    3.times do |round|
      300.times { |i| kept << "master \#{round} \#{i}" } # MASTER_LINE
      Heapdiff.snapshot(dir: dir)
      go_w.write("x")
      done_r.read(1)
    end
    Process.wait(worker)
    lines = File.readlines(__FILE__)
    puts JSON.generate(master: Process.pid, worker: worker, per_round: { master: 300, worker: 200 },
                       master_line: lines.index { |l| l.include?("# MASTER_LINE") } + 1,
                       worker_line: lines.index { |l| l.include?("# WORKER_LINE") } + 1)
  RUBY

  def heapdiff(*args)
    out, err, status = Open3.capture3(RbConfig.ruby, "-I#{File.expand_path("../../lib", __dir__)}",
                                      File.expand_path("../../exe/heapdiff", __dir__), *args)
    [out, err, status.exitstatus]
  end

  # One recording shared by the examples: [dir, the program's truth].
  before(:context) do
    @dir = Dir.mktmpdir("heapdiff-processes")
    script = File.join(@dir, "app.rb")
    File.write(script, program)
    out, status = Open3.capture2e(RbConfig.ruby, "-I", "#{root}/lib", script, File.join(@dir, "snaps"))
    raise "the program failed: #{out}" unless status.success?

    @truth = JSON.parse(out.lines.last)
    @snaps = File.join(@dir, "snaps")
  end

  after(:context) { FileUtils.rm_rf(@dir) }

  let(:master) { @truth["master"] }
  let(:worker) { @truth["worker"] }

  it "names each snapshot's process by host, pid and start time" do
    all = Heapdiff::Snapshot.list(@snaps)
    expect(all.map { |s| s.process.pid }).to eq([master, worker] * 3)
    groups = Heapdiff::Snapshot.processes(all)
    expect(groups.keys.map(&:pid)).to eq([master, worker]) # the worker took the latest
    expect(groups.keys.map(&:hostname).uniq).to eq([Etc.uname[:nodename]])
    expect(groups.keys.map(&:started_at)).to all(be_a(Time))
    expect(groups.keys.map(&:started_at).uniq.size).to eq(2)
    expect(Heapdiff::Snapshot.list(@snaps, process: :latest).map { |s| s.process.pid }).to eq([worker] * 3)
    expect(Heapdiff::Snapshot.list(@snaps, process: master).size).to eq(3)
    expect(Heapdiff::Snapshot.list(@snaps, process: groups.keys.first).size).to eq(3)
    expect { Heapdiff::Snapshot.list(@snaps, process: "x") }.to raise_error(ArgumentError, /process:/)
  end

  it "refuses to diff or trend snapshots of two processes, naming both" do
    mixed = Heapdiff::Snapshot.list(@snaps).last(3)
    expect { Heapdiff.diff(*mixed) }.to raise_error(Heapdiff::MixedProcessesError) { |e|
      expect(e.message).to match(/a diff needs snapshots of one process, and these come from 2: pid #{master} on .* \(1 snapshot\); pid #{worker} on .* \(2 snapshots\)/)
      expect(e.processes.keys.map(&:pid)).to eq([master, worker])
    }
    # Paths find their sidecars too.
    expect { Heapdiff.diff(*mixed.map(&:path)) }.to raise_error(Heapdiff::MixedProcessesError)
    expect { Heapdiff.trend(@snaps) }.to raise_error(Heapdiff::MixedProcessesError, /a trend needs snapshots of one process/)
  end

  it "diffs one process's snapshots right: each process's own leak" do
    [[master, "master"], [worker, "worker"]].each do |pid, who|
      report = Heapdiff.diff(*Heapdiff::Snapshot.list(@snaps, process: pid))
      group = report.find { |g| g.line == @truth["#{who}_line"] }
      expect(group).to have_attributes(type: "STRING", count: @truth["per_round"][who])
      expect(report.warnings.grep(/processes/)).to be_empty
    ensure
      report&.close
    end
    expect(Heapdiff.trend(@snaps, process: :latest).snapshots.map { |s| s.process.pid }).to eq([worker] * 3)
  end

  it "heapdiff report DIR reports the latest process and says which, or the one --pid names" do
    out, err, status = heapdiff("report", @snaps, "--format", "json")
    expect(status).to eq(0)
    expect(err).to match(/holds snapshots of 2 processes; reporting pid #{worker} on .* \(3 snapshots\); --pid to choose: #{master} \(3\), #{worker} \(3\)/)
    groups = JSON.parse(out)["groups"]
    expect(groups.find { |g| g["line"] == @truth["worker_line"] }).to include("count" => 200)
    expect(groups.find { |g| g["line"] == @truth["master_line"] }).to be_nil

    out, err, status = heapdiff("report", @snaps, "--pid", master.to_s, "--format", "json")
    expect(status).to eq(0)
    expect(err).to match(/reporting pid #{master} .*\(3 snapshots\)\n\z/)
    expect(JSON.parse(out)["groups"].find { |g| g["line"] == @truth["master_line"] }).to include("count" => 300)

    out, err, status = heapdiff("report", @snaps, "--pid", "1")
    expect([out, status]).to eq(["", 2])
    expect(err).to include("no snapshot of pid 1 in #{@snaps}; its snapshots are of #{master} (3), #{worker} (3)")

    html = File.join(@dir, "trend.html")
    _, err, status = heapdiff("report", @snaps, "--html", html)
    expect(status).to eq(0)
    expect(err).to include("wrote #{html}: trend over 3 snapshots")
  end

  it "warns when dumps without sidecars come from processes started apart (no shared heap pages)" do
    Dir.mktmpdir do |dir|
      dumps = (1..2).map do |n|
        path = File.join(dir, "#{n}.json")
        out, status = Processes.ruby(<<~RUBY, path)
          require "objspace"
          kept = Array.new(5000) { |i| "s\#{i}" }
          GC.start
          File.open(ARGV[0], "w") { |f| ObjectSpace.dump_all(output: f) }
          kept.size
        RUBY
        raise out unless status.success?

        path
      end
      report = Heapdiff.diff(*dumps)
      expect(report.warnings.grep(/compacted/)).to be_empty # no compaction happened
      expect(report.warnings).to include(a_string_matching(/#{dumps[0]} and #{dumps[1]} share \d+ of their \d+ and \d+ heap pages: .* look like dumps of different processes/))
      report.close
    end
    # Three dumps of one process: no such warning.
    leak3 = (0..2).map { |n| Fixtures.leak3("3.1", n) }
    report = Heapdiff.diff(*leak3)
    expect(report.warnings.grep(/different processes/)).to be_empty
    report.close
  end
end
