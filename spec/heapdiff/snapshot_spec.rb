# frozen_string_literal: true

require "etc"
require "json"
require "logger"
require "time"
require "tmpdir"
require "zlib"
require_relative "../support/processes"

RSpec.describe "Heapdiff.snapshot" do
  around do |example|
    Dir.mktmpdir("heapdiff-snapshot") do |tmp|
      @tmp = tmp
      example.run
    end
  end

  let(:dir) { File.join(@tmp, "snapshots") }

  def mode(path)
    File.stat(path).mode & 0o777
  end

  def with_umask(mask)
    previous = File.umask(mask)
    yield
  ensure
    File.umask(previous)
  end

  it "writes heap-0001.json and its sidecar, mode 0600, in directories it makes 0700" do
    nested = File.join(dir, "a", "b")
    snapshot = with_umask(0o022) { Heapdiff.snapshot(dir: nested) }

    expect(snapshot.path).to eq(File.join(nested, "heap-0001.json"))
    expect(snapshot.meta_path).to eq(File.join(nested, "heap-0001.meta.json"))
    expect(Dir.children(nested).sort).to eq(%w[heap-0001.json heap-0001.meta.json heap-0001.names.json])
    expect([snapshot.path, snapshot.meta_path, Heapdiff::Names.path_for(snapshot.path)].map { |p| mode(p) }).to all(eq(0o600))
    expect([dir, File.join(dir, "a"), nested].map { |d| mode(d) }).to all(eq(0o700))
    expect(File.foreach(snapshot.path).first).to start_with('{"type":"ROOT"')
  end

  it "leaves the mode of a directory that exists alone" do
    FileUtils.mkdir_p(dir, mode: 0o755)
    Heapdiff.snapshot(dir: dir)
    expect(mode(dir)).to eq(0o755)
  end

  it "numbers on from the highest number in the directory" do
    FileUtils.mkdir_p(dir)
    File.write(File.join(dir, "heap-0007.json"), "")
    File.write(File.join(dir, "heap-0009.meta.json"), "{}")
    expect(File.basename(Heapdiff.snapshot(dir: dir).path)).to eq("heap-0010.json")
    expect(File.basename(Heapdiff.snapshot(dir: dir).path)).to eq("heap-0011.json")
  end

  it "describes the process in the sidecar" do
    first = Heapdiff.snapshot(dir: dir)
    second = Heapdiff.snapshot(dir: dir)
    meta = second.meta

    expect(JSON.parse(File.read(second.meta_path))).to eq(meta)
    expect(meta).to include(
      "pid" => Process.pid, "hostname" => Etc.uname[:nodename], "ruby_version" => RUBY_VERSION,
      "ruby_platform" => RUBY_PLATFORM, "heapdiff_version" => Heapdiff::VERSION, "heapdiff_path" => Heapdiff::OWN_PATH,
      "tracing" => Heapdiff.tracing?, "forked" => false, "gzip" => false, "dump" => "heap-0002.json",
      "app_root" => Dir.pwd
    )
    expect(meta["sequence"]).to eq(first.meta["sequence"] + 1)
    expect(meta["gc_count"]).to be > first.meta["gc_count"]
    expect(meta["gc_stat"]).to include("count" => meta["gc_count"], "heap_live_slots" => be > 0)
    expect(meta["live_objects"]).to be > 1000
    expect(meta["rss_bytes"]).to be > 1_000_000
    expect(Time.iso8601(meta["time"])).to be_within(0.001).of(second.taken_at)
  end

  it "loads as a Heap, and Heapdiff.diff takes Snapshots" do
    snapshots = Array.new(2) { Heapdiff.snapshot(dir: dir) }
    heap = snapshots.first.load
    expect(heap).to be_a(Heapdiff::Heap)
    expect(heap.size).to be > 1000
    expect(Heapdiff.diff(*snapshots)).to be_a(Heapdiff::Report)
  end

  it "writes to a path it is given, replacing what is there, with the sidecar beside it" do
    path = File.join(dir, "before.json")
    FileUtils.mkdir_p(dir)
    File.write(path, "old")
    snapshot = Heapdiff.snapshot(path)
    expect(snapshot.path).to eq(path)
    expect(snapshot.meta_path).to eq(File.join(dir, "before.meta.json"))
    expect(File.read(path, 2)).to eq('{"')
    expect(Dir.children(dir).sort).to eq(%w[before.json before.meta.json before.names.json])
  end

  it "gzips the dump when asked" do
    snapshot = Heapdiff.snapshot(dir: dir, gzip: true)
    expect(File.basename(snapshot.path)).to eq("heap-0001.json.gz")
    expect(File.binread(snapshot.path, 2).bytes).to eq([0x1f, 0x8b])
    expect(Zlib::GzipReader.open(snapshot.path, &:gets)).to start_with('{"type":"ROOT"')
    expect(snapshot.load.size).to be > 1000
    expect(Dir.children(dir).sort).to eq(%w[heap-0001.json.gz heap-0001.meta.json heap-0001.names.json])
  end

  it "checks its arguments" do
    expect { Heapdiff.snapshot("x.json", dir: dir) }.to raise_error(ArgumentError, /path or dir:/)
    expect { Heapdiff.snapshot(42) }.to raise_error(TypeError, /String or Pathname/)
    expect { Heapdiff.snapshot(dir: 42) }.to raise_error(TypeError, /String or Pathname/)
  end

  it "raises SnapshotError, leaving nothing, when it cannot write" do
    blocker = File.join(@tmp, "a-file")
    File.write(blocker, "")
    expect { Heapdiff.snapshot(dir: File.join(blocker, "sub")) }
      .to raise_error(Heapdiff::SnapshotError, %r{snapshot in .*a-file/sub failed}) { |e| expect(e.cause).to be_a(SystemCallError) }
    expect(Dir.children(@tmp)).to eq(["a-file"])
  end

  it "lists the snapshots of a directory, oldest first, and reads one back" do
    taken = Array.new(3) { Heapdiff.snapshot(dir: dir) }
    listed = Heapdiff::Snapshot.list(dir)
    expect(listed.map(&:path)).to eq(taken.map(&:path))
    expect(listed.map(&:meta)).to eq(taken.map(&:meta))
    expect(listed.map { |s| s.taken_at.to_r }).to eq(taken.map { |s| s.taken_at.floor(6).to_r })
    expect(Heapdiff::Snapshot.list(File.join(@tmp, "none"))).to eq([])
  end

  it "leaves its own objects out of a diff: an idle process's snapshots diff to (almost) nothing" do
    code = <<~RUBY
      require "heapdiff"
      Heapdiff.trace_allocations!
      reports = [false, true].to_h do |fork|
        snapshots = Array.new(3) { Heapdiff.snapshot(dir: ARGV[0], fork: fork).wait }
        report = Heapdiff.diff(*snapshots)
        [fork, [report.total_count, report.filtered_count, report.map(&:location)]]
      end
      puts JSON.generate(reports)
    RUBY
    out, status = Processes.ruby(code, dir)
    expect(status).to be_success, out
    in_process, forked = JSON.parse(out.lines.last).values_at("false", "true")

    # What heapdiff allocates is left out, and some of it is retained...
    expect([in_process[1], forked[1]]).to all(be > 20)
    # ...what remains are one-time caches: of the script's own first calls, of
    # dump_all's first return (objspace.rb), a method entry (fork).
    expect([in_process[0], forked[0]]).to all(be <= 2)
    expect(in_process[2] + forked[2]).to all(satisfy { |loc| !loc.include?(Heapdiff::OWN_PATH) })
  end

  describe "with fork: true" do
    it "has a child write the dump, which gets its name only when complete" do
      snapshot = Heapdiff.snapshot(dir: dir, fork: true)
      expect(snapshot.child_pid).to be_a(Integer)
      while snapshot.pending?
        expect(snapshot.path).to be_nil
        # The child may have put the dump in place and not exited yet: then the sidecar
        # is there too.
        names = Dir.children(dir)
        expect(names).to include("heap-0001.meta.json") if names.include?("heap-0001.json")
      end
      expect(snapshot.wait).to equal(snapshot)
      expect(snapshot.path).to eq(File.join(dir, "heap-0001.json"))
      expect(snapshot.meta).to include("pid" => Process.pid, "forked" => true, "dump" => "heap-0001.json")
      expect(JSON.parse(File.read(snapshot.meta_path))).to eq(snapshot.meta)
      expect(mode(snapshot.path)).to eq(0o600)
      expect(Dir.children(dir).sort).to eq(%w[heap-0001.json heap-0001.meta.json heap-0001.names.json])
      expect(snapshot.load.size).to be > 1000
    end

    it "reports a child killed mid-dump as a SnapshotError and leaves nothing behind" do
      ballast = Array.new(300_000) { |i| "ballast-#{i}" }
      snapshot = Heapdiff.snapshot(dir: dir, fork: true)
      Processes.wait_for("the child's dump to grow") do
        Dir.children(dir).any? { |n| n.start_with?(".heap-") && File.size(File.join(dir, n)) > 1_000_000 }
      end
      Process.kill(:KILL, snapshot.child_pid)

      expect { snapshot.wait }.to raise_error(Heapdiff::SnapshotError, /pid #{snapshot.child_pid}.*SIGKILL/)
      expect(snapshot.path).to be_nil
      expect(snapshot.error).to be_a(Heapdiff::SnapshotError)
      expect(Dir.children(dir)).to be_empty
      expect(ballast.size).to eq(300_000)
    end

    it "returns nil from wait when the child has not finished in time" do
      snapshot = Heapdiff.snapshot(dir: dir, fork: true)
      expect(snapshot.wait(0)).to be_nil if snapshot.pending?
      expect(snapshot.wait(60)).to equal(snapshot)
    end
  end

  describe "a process killed with SIGKILL in the middle of a snapshot" do
    it "leaves no dump that looks complete, only a hidden temporary the Recorder removes" do
      code = <<~RUBY
        require "heapdiff"
        Heapdiff.trace_allocations!
        ballast = Array.new(300_000) { |i| "ballast-\#{i}" }
        Heapdiff.snapshot(dir: ARGV[0])
        puts ballast.size
      RUBY
      pid = Processes.spawn_ruby(code, dir, log: File::NULL)
      temp = Processes.wait_for("the dump to grow") do
        Dir.exist?(dir) && Dir.children(dir).find { |n| File.size(File.join(dir, n)) > 1_000_000 }
      end
      Process.kill(:KILL, pid)
      Process.wait(pid)

      expect(Dir.children(dir)).to eq([temp])
      expect(temp).to match(/\A\.heap-0001\.json\.tmp-#{pid}-\h{16}\z/)
      expect(Heapdiff::Snapshot.list(dir)).to be_empty

      Heapdiff::Recorder.new(dir: dir, logger: Logger.new(File::NULL)).snapshot_now
      expect(Dir.children(dir).sort).to eq(%w[heap-0001.json heap-0001.meta.json heap-0001.names.json])
    end
  end
end
