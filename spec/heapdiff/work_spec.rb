# frozen_string_literal: true

require "json"
require "tmpdir"

# Heapdiff::Work, the process-wide counts of jobs and requests, and how snapshots take
# them into their sidecars.
RSpec.describe Heapdiff::Work do
  before { described_class.reset }
  after { described_class.reset }

  it "counts per kind and label, and #take hands the counts over and starts again" do
    3.times { described_class.count(:jobs, "WidgetJob") }
    described_class.count("requests", "GET /widgets/:id")
    expect(described_class.counts).to eq("jobs" => { "WidgetJob" => 3 }, "requests" => { "GET /widgets/:id" => 1 })
    expect(described_class.take).to eq("jobs" => { "WidgetJob" => 3 }, "requests" => { "GET /widgets/:id" => 1 })
    expect(described_class.take).to eq("jobs" => {}, "requests" => {})
  end

  it "adds taken counts back" do
    described_class.count(:jobs, "A")
    taken = described_class.take
    described_class.count(:jobs, "A")
    described_class.add(taken)
    described_class.add(nil)
    expect(described_class.counts["jobs"]).to eq("A" => 2)
  end

  it "refuses other kinds and labels that are not Strings" do
    expect { described_class.count(:minutes, "x") }.to raise_error(ArgumentError, /:jobs or :requests/)
    expect { described_class.count(:jobs, :WidgetJob) }.to raise_error(TypeError, /must be a String/)
    expect { described_class.count(BasicObject.new, "x") }.to raise_error(ArgumentError)
  end

  it "tells apart at most MAX_LABELS labels per kind, for the life of the process, the rest as (other)" do
    250.times { |i| described_class.count(:requests, "GET /page-#{i}") }
    first = described_class.take["requests"]
    expect(first.size).to eq(described_class::MAX_LABELS + 1)
    expect(first).to include("GET /page-0" => 1, "GET /page-199" => 1, "(other)" => 50)
    described_class.count(:requests, "GET /page-3")
    described_class.count(:requests, "GET /page-220")
    described_class.count(:jobs, "StillRoomForJobs")
    expect(described_class.take).to eq("jobs" => { "StillRoomForJobs" => 1 },
                                       "requests" => { "GET /page-3" => 1, "(other)" => 1 })
  end

  it "cuts long labels and makes them valid UTF-8" do
    described_class.count(:requests, "GET /#{"a" * 500}")
    described_class.count(:requests, "GET /\xFF".b)
    labels = described_class.counts["requests"].keys
    expect(labels.map(&:bytesize).max).to eq(described_class::MAX_LABEL_BYTES)
    expect(labels).to include("GET /\\xFF")
    expect(labels).to all(satisfy { |l| l.valid_encoding? && l.frozen? })
  end

  it "loses no count when threads count at once" do
    threads = Array.new(8) { |t| Thread.new { 5000.times { |i| described_class.count(:jobs, "Job#{(t + i) % 3}") } } }
    threads.each(&:join)
    expect(described_class.counts["jobs"].values.sum).to eq(40_000)
  end

  it "starts from zero in a forked child" do
    described_class.count(:jobs, "Parent")
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      described_class.count(:jobs, "Child")
      writer.write(JSON.generate(described_class.counts))
      exit!(0)
    end
    writer.close
    child = JSON.parse(reader.read)
    Process.wait(pid)
    expect(child).to eq("jobs" => { "Child" => 1 }, "requests" => {})
    expect(described_class.counts["jobs"]).to eq("Parent" => 1)
  end

  describe "in snapshots" do
    around { |example| Dir.mktmpdir("heapdiff-work") { |dir| (@dir = dir) && example.run } }

    it "writes the counts since the previous snapshot into each sidecar" do
      2.times { described_class.count(:jobs, "WidgetJob") }
      first = Heapdiff.snapshot(dir: @dir)
      described_class.count(:requests, "GET /")
      second = Heapdiff.snapshot(dir: @dir)
      expect(first.meta["work"]).to eq("jobs" => { "WidgetJob" => 2 }, "requests" => {})
      expect(second.meta["work"]).to eq("jobs" => {}, "requests" => { "GET /" => 1 })
      expect(JSON.parse(File.read(second.meta_path))["work"]).to eq(second.meta["work"])
      expect(described_class.counts).to eq("jobs" => {}, "requests" => {})
    end

    it "keeps request paths in a redacted sidecar only as hashes" do
      described_class.count(:requests, "GET /reset/s3cr3t-t0ken")
      described_class.count(:requests, "widgets#show")
      described_class.count(:jobs, "WidgetJob")
      work = Heapdiff.snapshot(dir: @dir, redact: true).meta["work"]
      hash = Digest::SHA256.hexdigest("/reset/s3cr3t-t0ken")[0, 16]
      expect(work).to eq("jobs" => { "WidgetJob" => 1 }, "requests" => { "GET sha256:#{hash}" => 1, "widgets#show" => 1 })
    end

    it "gives the counts back when the snapshot fails, for the next one" do
      described_class.count(:jobs, "WidgetJob")
      blocked = File.join(@dir, "file")
      File.write(blocked, "")
      expect { Heapdiff.snapshot(dir: File.join(blocked, "sub")) }.to raise_error(Heapdiff::SnapshotError)
      expect(described_class.counts["jobs"]).to eq("WidgetJob" => 1)
      expect(Heapdiff.snapshot(dir: @dir).meta["work"]["jobs"]).to eq("WidgetJob" => 1)
    end

    it "takes the counts in the parent for fork: true (the child's copy is not the one reset)" do
      described_class.count(:jobs, "WidgetJob")
      snapshot = Heapdiff.snapshot(dir: @dir, fork: true)
      described_class.count(:jobs, "AfterFork")
      expect(snapshot.wait.meta["work"]["jobs"]).to eq("WidgetJob" => 1)
      expect(described_class.counts["jobs"]).to eq("AfterFork" => 1)
    end

    it "gives the counts back when a forked snapshot's child fails" do
      described_class.count(:jobs, "WidgetJob")
      # The child inherits the stub: its dump fails.
      allow(ObjectSpace).to receive(:dump_all).and_raise(IOError, "no space left")
      snapshot = Heapdiff.snapshot(dir: @dir, fork: true)
      expect(described_class.counts["jobs"]).to eq({})
      expect { snapshot.wait }.to raise_error(Heapdiff::SnapshotError, /no space left/)
      expect(described_class.counts["jobs"]).to eq("WidgetJob" => 1)
    end
  end
end
