# frozen_string_literal: true

require "json"
require "tmpdir"
require "fileutils"
require "open3"
require_relative "../support/fixtures"
require_relative "../support/processes"
require_relative "../support/chromium"

# Trends across snapshots on the known leak (leak3: 1000 Leak objects, their ids and
# payloads kept per phase) and on a small process whose allocation site is a file
# named like markup. trend_sidekiq_spec.rb runs a real Sidekiq server.
RSpec.describe "Heapdiff.trend" do
  let(:leak3) { (0..2).map { |n| Fixtures.leak3("3.4", n) } }

  # leak3's dumps as a Recorder's directory, with sidecars 30 minutes apart.
  def recorder_dir(dir, pids: [4242] * 3, minutes: [0, 30, 60])
    leak3.each_with_index do |path, i|
      dump = File.join(dir, format("heap-%04d.json.gz", i + 1))
      FileUtils.cp(path, dump)
      meta = {
        "pid" => pids[i], "hostname" => "worker-1",
        "time" => (Time.utc(2026) + (60 * minutes[i])).strftime("%Y-%m-%dT%H:%M:%S.%6NZ"),
        "rss_bytes" => (100 + (10 * i)) * 1_000_000, "live_objects" => 30_000 + i, "gc_count" => 10 + i,
        "gc_stat" => { "heap_live_slots" => 25_000 + i, "minor_gc_count" => 7 + i, "major_gc_count" => 3 }
      }
      File.write(Heapdiff::Snapshot.meta_path_for(dump), JSON.generate(meta))
    end
    dir
  end

  context "on a list of dumps without sidecars" do
    let(:trend) { Heapdiff.trend(leak3) }

    it "ranks the three leaking sites first, growing by exactly 1000 retained objects a snapshot" do
      expect(trend.growing.first(3).map { |s| [s.label, s.location] }).to contain_exactly(
        ["STRING", "leak3.rb:17"], ["STRING", "leak3.rb:27"], ["OBJECT Leak", "leak3.rb:28"]
      )
      leak = trend.find { |s| s.location == "leak3.rb:28" }
      expect(leak).to have_attributes(verdict: :growing, counts: [1000, 2000, 3000], survived: [0, 1000, 2000],
                                      new_counts: [1000, 1000, 1000], growth: 2000, growth_per_snapshot: 1000.0,
                                      memsizes: [20_000, 40_000, 60_000], count: 3000, class_name: "Leak")
      expect(leak).to be_growing
      # Ruby 3.4 holds one more id String in each dump, a different one each time.
      ids = trend.find { |s| s.location == "leak3.rb:27" }
      expect([ids.counts, ids.survived]).to eq([[1001, 2001, 3001], [0, 1000, 2000]])
    end

    it "keeps the script's own dumps apart: a fourth, small growing site" do
      expect(trend.growing.size).to eq(4)
      expect(trend.growing.last).to have_attributes(location: "leak3.rb:34", counts: [0, 1, 2], rank: 4)
      expect(trend.growing.map(&:rank)).to eq([1, 2, 3, 4])
    end

    it "counts every live object of each dump in exactly one site" do
      per_snapshot = trend.map(&:counts).transpose.map(&:sum)
      expect(trend.memory.map(&:objects)).to eq(per_snapshot)
      expect(per_snapshot.each_cons(2).map { |a, b| b - a }).to eq([3002, 3001])
      expect(trend.memory.map(&:rss_bytes)).to all(be_nil)
    end

    it "gives growth per snapshot only, and says why" do
      expect(trend).not_to be_timed
      expect(trend.hours).to be_nil
      expect(trend.first.growth_per_hour).to be_nil
      expect(trend.warnings).to include("no sidecar with a time for 0.jsonl.gz, 1.jsonl.gz, 2.jsonl.gz: " \
                                        "growth is given per snapshot only, not per hour")
    end

    it "is Enumerable over ranked sites, each verdict one of three" do
      expect(trend.count).to eq(trend.size)
      expect(trend.map(&:rank)).to eq((1..trend.size).to_a)
      expect(trend.map(&:verdict).uniq).to contain_exactly(:growing, :stable, :transient)
      expect(trend.growing.size + trend.stable.size + trend.transient.size).to eq(trend.size)
      expect(trend[0]).to equal(trend.first)
    end

    it "names the suspect and a path from a root for a growing site, in the last dump" do
      leak = trend.find { |s| s.location == "leak3.rb:28" }
      expect(leak.suspect.top.object.type).to eq("ARRAY")
      expect(leak.suspect.top.count).to eq(3000)
      expect(leak.path.root).to eq("vm")
      expect(leak.path.target.location).to eq("leak3.rb:28")
      expect(leak.sample(2).map(&:class_name)).to eq(%w[Leak Leak])
      expect(trend.last_heap.path).to eq(leak3.last)
    end

    it "reads well: inspect, to_s" do
      expect(trend.inspect).to match(/\A#<Heapdiff::Trend snapshots=3 sites=\d+ growing=4 top=\w+.* at leak3\.rb:\d+>\z/)
      leak = trend.find { |s| s.location == "leak3.rb:28" }
      expect(leak.inspect).to eq("#<Heapdiff::Trend::Site ##{leak.rank} growing OBJECT Leak at leak3.rb:28 " \
                                 "counts=[1000, 2000, 3000] survived=[0, 1000, 2000]>")
      text = trend.to_s
      expect(text.lines.first).to start_with("Trend over 3 snapshots (0.jsonl.gz … 2.jsonl.gz): #{trend.size} sites, 4 growing")
      expect(text).to include("growing OBJECT Leak at leak3.rb:28: 1000 → 2000 → 3000 objects (+1000/snapshot), " \
                              "20.0 kB → 60.0 kB, 100% of each snapshot's objects still in the next")
      expect(text).to include("    path: ROOT vm → ")
      # 3000 of the 3001 id strings are held by the array, one by the roots: neither
      # share is rounded to 100% or 0%.
      expect(text).to include("    held: >99% held by ARRAY ").and include("; 1 object (<1%) held directly by ROOT vm")
    end
  end

  context "on a Recorder's directory (sidecars with times, RSS, GC counts)" do
    around { |example| Dir.mktmpdir { |dir| @dir = recorder_dir(dir) and example.run } }
    let(:trend) { Heapdiff.trend(@dir) }

    it "gives growth per hour from the sidecars' times" do
      expect(trend).to be_timed
      expect(trend.hours).to eq(1.0)
      leak = trend.find { |s| s.location == "leak3.rb:28" }
      expect(leak.growth_per_hour).to eq(2000.0)
      expect(trend.warnings).to be_empty
    end

    it "gives no rate per hour from a span under a minute, and says so" do
      Dir.mktmpdir do |dir|
        short = Heapdiff.trend(recorder_dir(dir, minutes: [0, 0.1, 0.2]))
        expect(short.hours * 3600).to be_within(1e-6).of(12)
        expect(short.map(&:growth_per_hour).uniq).to eq([nil])
        expect(short.warnings).to eq(["the snapshots span 12.0 s: growth is given per snapshot only (per hour needs 60 s)"])
        expect(short.to_s).not_to include("/hour")
        expect(trend.to_s).to include("(+1000/snapshot, +2000/hour)")
      end
    end

    it "signs rates without a -0" do
      site = trend.first
      expect([-0.2, -0.04, 0.0, -0.0, 0.4, 12.6, -800.0, 802_165.2].map { |r| site.send(:signed, r) })
        .to eq(%w[-0.2 +0 +0 +0 +0.4 +13 -800 +802165])
    end

    it "reports memory over time" do
      expect(trend.memory.map(&:to_h)).to eq(
        (0..2).map do |i|
          { index: i, path: File.join(@dir, "heap-000#{i + 1}.json.gz"), time: "2026-01-01T#{%w[00:00 00:30 01:00][i]}:00.000Z",
            rss_bytes: (100 + (10 * i)) * 1_000_000, live_objects: 30_000 + i, live_slots: 25_000 + i, gc_count: 10 + i,
            minor_gc_count: 7 + i, major_gc_count: 3, objects: trend.memory[i].objects, memsize: trend.memory[i].memsize }
        end
      )
    end

    it "writes JSON with the snapshots, the verdict counts and every site" do
      data = JSON.parse(trend.to_json)
      expect(data.keys).to eq(%w[leaks snapshots timed hours site_count verdicts memory_verdict sites work warnings])
      expect(data).to include("work" => [nil, nil], "timed" => true, "hours" => 1.0, "site_count" => trend.size, "warnings" => [])
      expect(data["verdicts"]).to eq("growing" => 4, "stable" => trend.stable.size, "transient" => trend.transient.size)
      expect(data["snapshots"].map { |s| s["rss_bytes"] }).to eq([100_000_000, 110_000_000, 120_000_000])
      expect(data["sites"].size).to eq(trend.size)
      leak = data["sites"].find { |s| s["location"] == "leak3.rb:28" }
      expect(leak).to include("verdict" => "growing", "type" => "OBJECT", "class_name" => "Leak", "label" => "OBJECT Leak",
                              "file" => "leak3.rb", "line" => 28, "counts" => [1000, 2000, 3000],
                              "survived" => [0, 1000, 2000], "new" => [1000, 1000, 1000], "growth" => 2000,
                              "growth_per_snapshot" => 1000.0, "growth_per_hour" => 2000.0,
                              "memsizes" => [20_000, 40_000, 60_000], "memsize_growth" => 40_000)
      # The first three growing sites carry their suspect and path; the others do not.
      expect(data["sites"].first(3)).to all(include("suspect", "path"))
      expect(leak["suspect"]["holders"].first).to include("count" => 3000, "share" => 1.0)
      expect(leak["path"]["root"]).to eq("vm")
      expect(data["sites"][3].keys).not_to include("suspect")
      expect(JSON.parse(JSON.generate(trend.to_h(top: 2)))["sites"].size).to eq(2)
    end
  end

  describe "errors" do
    it "needs two snapshots" do
      expect { Heapdiff.trend(leak3.first(1)) }.to raise_error(Heapdiff::TrendError, "heapdiff: a trend needs at least two snapshots, got 1")
      Dir.mktmpdir do |dir|
        expect { Heapdiff.trend(dir) }.to raise_error(Heapdiff::TrendError, /got 0/)
      end
    end

    it "follows one process, in time order" do
      Dir.mktmpdir do |dir|
        recorder_dir(dir, pids: [1, 1, 2])
        expect { Heapdiff.trend(dir) }.to raise_error(
          Heapdiff::MixedProcessesError, /come from 2: pid 1 on worker-1 \(2 snapshots\); pid 2 on worker-1 \(1 snapshot\)/
        )
      end
      Dir.mktmpdir do |dir|
        recorder_dir(dir, pids: [2, 1, 1])
        trend = Heapdiff.trend(dir, process: :latest)
        expect(trend.snapshots.map { |s| [File.basename(s.path), s.process.pid] })
          .to eq([["heap-0002.json.gz", 1], ["heap-0003.json.gz", 1]])
        expect(Heapdiff.trend(dir, process: 1).snapshots.size).to eq(2)
        expect { Heapdiff.trend(dir, process: 2) }.to raise_error(Heapdiff::TrendError, /got 1/)
      end
      Dir.mktmpdir do |dir|
        recorder_dir(dir, minutes: [0, 40, 20])
        expect { Heapdiff.trend(dir) }.to raise_error(Heapdiff::TrendError, /not in time order/)
      end
    end

    it "raises FileError, ParseError or TypeError for what is not snapshots" do
      expect { Heapdiff.trend("/nonexistent/heapdiff") }.to raise_error(Heapdiff::FileError, /no such directory/)
      expect { Heapdiff.trend(42) }.to raise_error(TypeError, /directory or an Array/)
      Dir.mktmpdir do |dir|
        text = File.join(dir, "notes.json")
        File.write(text, "hello\n")
        expect { Heapdiff.trend([leak3[0], text]) }.to raise_error(Heapdiff::ParseError, /notes\.json:1:/)
      end
    end
  end

  # A process that keeps 100 more Strings per snapshot, allocated in code whose file
  # name is markup: everything from the dump must reach the page as text.
  context "HTML report of a process whose file names are markup" do
    markup_file = "</script><script>document.title='pwned'</script><b>.rb"

    before(:all) do
      @dir = Dir.mktmpdir("heapdiff-trend-html")
      code = <<~RUBY
        require "heapdiff"
        Heapdiff.trace_allocations!
        KEEP = []
        3.times do
          eval("100.times { KEEP << 'kept ' * 2 }", binding, #{markup_file.inspect}, 1)
          Heapdiff.snapshot(dir: ARGV[0])
        end
      RUBY
      out, status = Processes.ruby(code, @dir)
      raise "snapshots failed: #{out}" unless status.success?

      @out, @err, @status = Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__),
                                           "report", @dir, "--top", "1", "--html", File.join(@dir, "report.html"))
      @html = File.read(File.join(@dir, "report.html"))
    end
    after(:all) { FileUtils.rm_rf(@dir) }

    it "writes the page from the CLI and still prints the trend's verdict and the diff of the latest three" do
      expect(@status.exitstatus).to eq(0)
      # Three snapshots with a memory breakdown: the memory verdict comes first, then
      # the trend's.
      expect(@out.lines.first).to start_with("Memory: ")
      expect(@out.lines[1]).to start_with("  RSS ")
      expect(@out.lines[2]).to start_with("Trend over 3 snapshots")
      # The program keeps one thing, KEEP: one leak (heapdiff's own sidecar string no longer a second).
      expect(@out).to include("\nDiff of the latest three (growing or not):\nLeaks: 1\n").and include("\nSites:\nRetained STRING 100 objects")
      expect(@err).to include("heapdiff: wrote #{File.join(@dir, "report.html")}: trend over 3 snapshots, 1 growing site\n")
      expect(Dir.children(@dir).grep(/\.tmp-/)).to be_empty
    end

    it "ranks the markup-named site first, growing by 100 a snapshot" do
      site = Heapdiff.trend(@dir).first
      expect(site).to have_attributes(location: "#{markup_file}:1", verdict: :growing, counts: [100, 200, 300])
    end

    it "escapes it everywhere, the embedded JSON included" do
      expect(@html).not_to include(markup_file)
      expect(@html).to include(CGI.escapeHTML(markup_file))
      expect(@html.scan("<script").size).to eq(2)
      expect(@html.scan("</script>").size).to eq(2)
      expect(@html).not_to match(%r{https?://(?!www\.w3\.org/2000/svg)})
    end

    it "shows it as text in a real browser, without errors" do
      dom, console = Chromium.dump_dom("file://#{File.join(@dir, "report.html")}")
      expect(console).to eq([])
      expect(dom).to include('<body data-ready="true">')
      expect(dom).to include("<title>heapdiff trend: 3 snapshots</title>")
      # Serialized as the DOM holds it: text, with only <, > and & escaped.
      expect(dom).to include(markup_file.gsub("&", "&amp;").gsub("<", "&lt;").gsub(">", "&gt;"))
    end
  end
end

RSpec.describe "Heapdiff::Trend#close" do
  let(:paths) { (0..2).map { |n| Fixtures.leak3("3.4", n) } }

  # What the extension reports to Ruby's GC shows in malloc_increase_bytes until the
  # next GC resets it, and a decrease stops at 0: the GC is off from before the load.
  it "frees the last snapshot and keeps the sites" do
    objects = Fixtures.count_records(paths.last)["objects"]
    GC.disable
    trend = Heapdiff.trend(paths)
    trend.last_heap
    before = GC.stat(:malloc_increase_bytes)
    expect(trend.close).to be_nil
    freed = before - GC.stat(:malloc_increase_bytes)
    GC.enable
    # At least the address column: 8 bytes per object of the last dump.
    expect(freed).to be >= 8 * objects
    expect(trend.last_heap).to be_closed
    expect { trend.sites.first.sample }.to raise_error(Heapdiff::Error, /closed/)
    expect(trend.sites.first.counts).to eq([1000, 2000, 3000])
  ensure
    GC.enable
  end

  it "closes the trend when the block ends, and returns the block's value" do
    kept = nil
    counts = Heapdiff.trend(paths) do |trend|
      kept = trend
      trend.sites.first.counts
    end
    expect(counts).to eq([1000, 2000, 3000])
    expect { kept.last_heap }.to raise_error(Heapdiff::Error, "heapdiff: the trend is closed")
  end
end
