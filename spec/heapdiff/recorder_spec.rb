# frozen_string_literal: true

require "logger"
require "stringio"
require "tmpdir"
require_relative "../support/processes"

RSpec.describe Heapdiff::Recorder do
  around do |example|
    Dir.mktmpdir("heapdiff-recorder") do |tmp|
      @tmp = tmp
      example.run
    ensure
      @recorder&.stop
    end
  end

  let(:dir) { File.join(@tmp, "snapshots") }
  let(:log) { StringIO.new }
  let(:logger) { Logger.new(log) }
  let(:taken) { Queue.new }

  def start(**options)
    @recorder = described_class.start(dir: dir, logger: logger, on_snapshot: ->(s) { taken << s }, **options)
  end

  def next_snapshot(timeout = 20)
    Processes.wait_for("a snapshot", timeout: timeout) { taken.empty? ? nil : taken.pop }
  end

  it "keeps exactly the newest `keep` snapshots" do
    recorder = described_class.new(dir: dir, keep: 3, logger: logger)
    5.times { recorder.snapshot_now }
    kept = [3, 4, 5].flat_map { |n| ["heap-000#{n}.json", "heap-000#{n}.meta.json", "heap-000#{n}.names.json"] }
    expect(Dir.children(dir).sort).to eq(kept)
    expect(log.string.scan(/heapdiff: snapshot \S+heap-000\d\.json \(requested/).size).to eq(5)
  end

  it "writes redacted dumps with redact: true, as Heapdiff.snapshot does" do
    secret = "recorder-secret-#{rand(1 << 30)}"
    recorder = described_class.new(dir: dir, logger: logger, redact: true)
    expect(recorder).to be_redact
    path = recorder.snapshot_now.path
    expect(secret.size).to be > 0 # alive until after the dump
    expect(File.read(path)).not_to include(secret)
    expect(Heapdiff::Snapshot.read(path).meta).to include("redacted" => true)
    expect(described_class.new(dir: dir, logger: logger)).not_to be_redact
  end

  it "takes a snapshot every `every` seconds from its thread, until stopped" do
    start(every: 0.2, keep: 10)
    first = next_snapshot
    second = next_snapshot
    # every counts from the end of the previous snapshot
    expect(second.taken_at - first.taken_at).to be >= 0.2
    expect(Thread.list.map(&:name)).to include("heapdiff-recorder")

    @recorder.stop
    expect(@recorder).not_to be_running
    expect(Thread.list.map(&:name)).not_to include("heapdiff-recorder")
    count = Dir.children(dir).size
    sleep 0.5
    expect(Dir.children(dir).size).to eq(count)
  end

  it "takes a snapshot when its signal arrives, and chains to the handler it replaced" do
    chained = Queue.new
    original = proc { chained << :called }
    previous = Signal.trap("USR2", original)
    begin
      start(every: nil, signal: "SIGUSR2")
      Process.kill("USR2", Process.pid)
      snapshot = next_snapshot
      expect(snapshot.path).to end_with("heap-0001.json")
      expect(chained.pop).to eq(:called)
      expect(log.string).to include("heap-0001.json (SIGUSR2")

      @recorder.stop
      expect(Signal.trap("USR2", "DEFAULT")).to equal(original)
    ensure
      Signal.trap("USR2", previous || "DEFAULT")
    end
  end

  it "takes a snapshot asked for with snapshot_soon on its own thread, and says when the heap is captured" do
    @recorder = described_class.new(dir: dir, every: nil, logger: logger, on_snapshot: ->(s) { taken << s })
    captured = @recorder.snapshot_soon(reason: "after job 3")
    expect(@recorder).to be_running
    expect(captured.pop).to be_nil # returns once the recorder's thread closed it
    expect(captured).to be_closed
    expect(next_snapshot.path).to end_with("heap-0001.json")
    expect(log.string).to include("heap-0001.json (after job 3, ")
  end

  it "takes a snapshot in the calling thread with snapshot_now" do
    start(every: nil)
    snapshot = @recorder.snapshot_now
    expect(snapshot).to be_complete
    expect(next_snapshot).to equal(snapshot)
  end

  it "hands fork: true snapshots to on_snapshot once complete, and prunes after them" do
    start(every: nil, fork: true, keep: 1)
    first = @recorder.snapshot_now
    expect(next_snapshot).to equal(first)
    expect(first).to be_complete
    second = @recorder.snapshot_now
    expect(next_snapshot).to equal(second)
    expect(Dir.children(dir).sort).to eq(%w[heap-0002.json heap-0002.meta.json heap-0002.names.json])
    expect(log.string).to match(/heap-0002\.json \(requested, [\d.]+ MB\) in [\d.]+ s, paused [\d.]+ s/)
  end

  it "logs a snapshot it cannot write, leaves nothing, and keeps running" do
    blocker = File.join(@tmp, "a-file")
    File.write(blocker, "")
    @recorder = described_class.start(dir: File.join(blocker, "sub"), every: 0.1, logger: logger)
    Processes.wait_for("two failures") { log.string.scan("failed").size >= 2 }
    expect(@recorder).to be_running
    expect(@recorder.snapshot_now).to be_nil
    expect(log.string).to match(%r{ERROR -- : heapdiff: snapshot \(every 0.1 s\) failed: snapshot in \S+/a-file/sub failed: Not a directory})
    expect(Dir.children(@tmp)).to eq(["a-file"])
  end

  it "logs permission denied and leaves nothing" do
    FileUtils.mkdir_p(dir, mode: 0o755)
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      if Process.uid.zero?
        Process::Sys.setgid(65_534)
        Process::Sys.setuid(65_534)
      else
        File.chmod(0o555, dir)
      end
      child_log = StringIO.new
      result = described_class.new(dir: dir, logger: Logger.new(child_log)).snapshot_now
      writer.write("#{result.inspect}\n#{child_log.string}")
      exit!(0)
    end
    writer.close
    Process.wait(pid)
    output = reader.read
    expect(output).to start_with("nil\n")
    expect(output).to match(/ERROR -- : heapdiff: snapshot \(requested\) failed: .*Permission denied/)
    expect(Dir.children(dir)).to be_empty
  end

  it "logs a full disk (here: the file size limit), leaves nothing, and the process goes on" do
    code = <<~RUBY
      require "heapdiff"
      require "logger"
      Signal.trap("XFSZ", "IGNORE")
      Process.setrlimit(:FSIZE, 200_000)
      logger = Logger.new($stdout)
      p Heapdiff::Recorder.new(dir: ARGV[0], logger: logger).snapshot_now
      recorder = Heapdiff::Recorder.start(dir: ARGV[0], every: nil, fork: true, logger: logger)
      recorder.snapshot_now.wait rescue p $!
      recorder.stop
      puts "still running"
    RUBY
    out, status = Processes.ruby(code, dir)
    expect(status).to be_success, out
    expect(out.lines).to include("nil\n")
    expect(out.scan(/ERROR -- : heapdiff: snapshot \(requested\) failed: .*File too large/).size).to eq(2), out
    expect(out).to include("#<Heapdiff::SnapshotError: heapdiff: the snapshot child")
    expect(out).to end_with("still running\n")
    expect(Dir.children(dir)).to be_empty
  end

  it "leaves nothing of its own in the diff of a program that keeps nothing between its snapshots" do
    # The program allocates nothing it keeps: whatever the diff finds is the
    # Recorder's. The sidecar's process_started_at, once made by Time#iso8601 in
    # Ruby's time.rb, showed as a 1-object leak of the Recorder's thread.
    code = <<~RUBY
      require "heapdiff"
      Heapdiff.trace_allocations!
      recorder = Heapdiff::Recorder.new(dir: ARGV[0])
      3.times { recorder.snapshot_now }
    RUBY
    out, status = Processes.ruby(code, dir)
    expect(status).to be_success, out
    report = Heapdiff.diff(*Heapdiff::Snapshot.list(dir))
    expect(report.map(&:location).grep(%r{/time\.rb:})).to eq([])
    report.close
  end

  it "checks its arguments" do
    expect { described_class.new(dir: 1) }.to raise_error(TypeError)
    expect { described_class.new(dir: dir, every: 0) }.to raise_error(ArgumentError, /every:/)
    expect { described_class.new(dir: dir, keep: 0) }.to raise_error(ArgumentError, /keep:/)
    expect { described_class.new(dir: dir, signal: "NOPE") }.to raise_error(ArgumentError, /signal:/)
    expect { described_class.new(dir: dir, on_snapshot: 1) }.to raise_error(ArgumentError, /on_snapshot:/)
  end

  it "starts nothing when heapdiff is required" do
    out, status = Processes.ruby('require "heapdiff"; p [Thread.list.size, Heapdiff.tracing?]')
    expect(status).to be_success, out
    expect(out).to eq("[1, false]\n")
  end
end
