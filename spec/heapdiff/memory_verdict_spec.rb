# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# Is the growth Ruby objects, fragmentation, or native memory? Real processes, each
# recorded by a Recorder with six snapshots; each grows (or not) in one way only, and
# says by how much in its own terms.
RSpec.describe "Memory verdicts" do
  jemalloc = Dir["/usr/lib/*/libjemalloc.so.2"].first

  # Runs +body+ (Ruby, with `recorder` and `round` in scope) between six snapshots.
  def record(dir, body, env: {})
    out, status = Processes.ruby(<<~RUBY, dir, env: env)
      require "heapdiff"
      recorder = Heapdiff::Recorder.new(dir: ARGV[0], every: 3600, keep: 10)
      #{body.fetch(:setup, "")}
      6.times do |round|
        if round.positive?
          #{body.fetch(:round)}
        end
        recorder.snapshot_now
      end
      recorder.stop
    RUBY
    raise out unless status.success?

    Heapdiff::Snapshot.list(dir)
  end

  def verdict_of(dir, body, env: {})
    snapshots = record(dir, body, env: env)
    expect(snapshots.size).to eq(6)
    expect(snapshots.map { |s| s.meta["memory"] }).to all(include("rss", "ruby_heap_live", "malloc_free", "native"))
    Heapdiff::MemoryVerdict.from_snapshots(snapshots)
  end

  # Many threads allocate and free medium strings, a few of which survive in a bounded
  # ring: live objects stay flat, glibc's arenas keep the freed chunks.
  churn = {
    setup: "RING = Array.new(200); LOCK = Mutex.new; $n = 0",
    round: <<~RUBY
      Array.new(16) do
        Thread.new do
          local = Array.new(3000) { |i| "x" * (1_000 + ((i * 7919) % 29_000)) }
          local.each_slice(50) { |s| LOCK.synchronize { RING[($n += 1) % RING.size] = s.first } }
          local.clear
        end
      end.each(&:join)
    RUBY
  }

  it "calls arena fragmentation malloc_fragmentation under glibc, with the figures behind it" do
    Dir.mktmpdir do |dir|
      verdict = verdict_of(dir, churn)
      expect(verdict.verdict).to eq(:malloc_fragmentation), verdict.to_s
      expect(verdict.growth[:malloc_fragmentation]).to be > 1e8
      expect(verdict.growth[:ruby_objects]).to be < verdict.growth[:malloc_fragmentation] / 4
      expect(verdict.to_s).to match(/\AMemory: malloc_fragmentation, \+\d+\.\d MB — .*jemalloc.*\n  RSS \+/)
      expect(verdict.breakdowns.map { |b| b["allocator"] }.uniq).to eq(["glibc"])
    end
  end

  it "does not call the same program's memory fragmentation under jemalloc" do
    skip "libjemalloc2 is not installed" unless jemalloc
    Dir.mktmpdir do |dir|
      verdict = verdict_of(dir, churn, env: { "LD_PRELOAD" => jemalloc })
      expect(verdict.breakdowns.map { |b| b["allocator"] }.uniq).to eq(["jemalloc"])
      expect(verdict.verdict).not_to eq(:malloc_fragmentation), verdict.to_s
    end
  end

  it "calls Fiddle.malloc blocks that are never freed native" do
    Dir.mktmpdir do |dir|
      leak = { setup: 'require "fiddle"; BLOCKS = []',
               round: "20.times { p = Fiddle.malloc(1 << 20); Fiddle::Pointer.new(p)[0, 1 << 20] = \"\\1\" * (1 << 20); " \
                      "BLOCKS << p }" }
      verdict = verdict_of(dir, leak)
      expect(verdict.verdict).to eq(:native), verdict.to_s
      # 5 rounds of 20 MiB, touched: the growth is theirs, within what else moved.
      expect(verdict.growth[:native]).to be_within(2e7).of(5 * 20 * (1 << 20))
    end
  end

  it "calls live Ruby objects that pile up ruby_objects" do
    Dir.mktmpdir do |dir|
      verdict = verdict_of(dir, { setup: "KEPT = []", round: "200_000.times { |i| KEPT << \"kept \#{i}\" * 4 }" })
      expect(verdict.verdict).to eq(:ruby_objects), verdict.to_s
    end
  end

  it "calls a steady process stable" do
    Dir.mktmpdir do |dir|
      verdict = verdict_of(dir, { round: "20_000.times { |i| \"garbage \#{i}\" }" })
      expect(verdict.verdict).to eq(:stable), verdict.to_s
      expect(verdict.to_s).to start_with("Memory: stable")
    end
  end

  it "calls Ruby objects that grow in every interval, within RSS's noise, ruby_objects (slow)" do
    Dir.mktmpdir do |dir|
      # 6,000 strings of 200 bytes a round, 1.5 MB: 7 MB over the five rounds, within
      # the 16 MB of RSS that counts as stable. The program counts their bytes as Ruby
      # does (ObjectSpace.memsize_of: what the breakdown's ruby objects sum).
      kept = File.join(dir, "kept")
      snapshots = record(dir, { setup: "require 'objspace'; KEPT = []; $bytes = 0",
                                round: "6_000.times { |i| s = \"k\" * 200; KEPT << s; $bytes += ObjectSpace.memsize_of(s) }; " \
                                       "File.write(#{kept.dump}, $bytes.to_s)" })
      verdict = Heapdiff::MemoryVerdict.from_snapshots(snapshots)
      expect(verdict).to have_attributes(verdict: :ruby_objects, slow?: true), verdict.to_s
      expect(verdict.growth[:rss]).to be <= Heapdiff::MemoryVerdict::STABLE_BYTES
      # The strings, and KEPT's own growth (8 bytes a string, its capacity doubling):
      # within 1 MB.
      expect(verdict.growth[:ruby_objects]).to be_within(1e6).of(Integer(File.read(kept)))
      expect(verdict.to_s).to match(/\AMemory: ruby_objects \(slow\), \+\d+\.\d MB — live Ruby objects grow in every interval.*\n  RSS \+/)
      expect(verdict.inspect).to start_with("#<Heapdiff::MemoryVerdict ruby_objects (slow) +")
      expect(verdict.to_h).to include(verdict: :ruby_objects, slow: true)
    end
  end

  it "calls growth within RSS's noise stable unless every interval after the first grows, by 1 MB or more in all" do
    t = Time.utc(2026)
    base = { "rss" => 100_000_000, "ruby_heap_live" => 10_000_000, "ruby_malloc" => 0, "ruby_heap_free" => 0,
             "malloc_free" => 0, "malloc_cached" => 0, "native" => 0 }
    verdict = lambda do |live|
      Heapdiff::MemoryVerdict.new(live.each_with_index.map do |l, i|
        [t + (i * 60), base.merge("ruby_heap_live" => l, "rss" => base["rss"] + l - live[0])]
      end)
    end
    mb = 1 << 20
    steady = [0, 2, 3, 4, 5, 6].map { |n| (10 * mb) + (n * mb / 3) }
    expect(verdict.call(steady)).to have_attributes(verdict: :ruby_objects, slow?: true, bytes: 2 * mb)
    # A pause (an interval without the leaking work), warm-up in the first interval
    # alone, too few intervals after the first, under SLOW_BYTES in all: stable.
    paused = steady.values_at(0, 1, 2, 2, 4, 5)
    warm_up = [10 * mb, 12 * mb, 12 * mb, 12 * mb, 12 * mb, 12 * mb]
    expect([paused, warm_up, steady.first(4), steady.map { |l| l / 4 }].map { |live| verdict.call(live).verdict })
      .to eq(%i[stable stable stable stable])
    expect(verdict.call(warm_up)).to have_attributes(slow?: false)
  end

  it "says when there are too few snapshots to tell" do
    verdict = Heapdiff::MemoryVerdict.new([[Time.now, { "rss" => 1 }]] * 2)
    expect(verdict.verdict).to eq(:unknown)
    expect(verdict.to_s).to eq("Memory: unknown (2 snapshots with a memory breakdown; 3 are needed to tell)")
  end

  it "gives rates per hour and per unit of work from the snapshots' times" do
    t = Time.utc(2026)
    base = { "rss" => 1e8.to_i, "ruby_heap_live" => 1e7.to_i, "ruby_malloc" => 0, "ruby_heap_free" => 0,
             "malloc_free" => 0, "malloc_cached" => 0, "native" => 0 }
    points = [0, 1, 2].map { |h| [t + (h * 3600), base.merge("rss" => (100 + (50 * h)) * 1_000_000, "native" => 5e7.to_i * h)] }
    verdict = Heapdiff::MemoryVerdict.new(points, work: 1000)
    expect(verdict).to have_attributes(verdict: :native, bytes: 100_000_000, hours: 2.0, per_hour: 5e7, per_unit: 1e5)
    expect(verdict.to_s).to include("(+50.0 MB/hour, +100.0 KB per job or request)")
    expect(Heapdiff::MemoryVerdict.new(points.map { |tm, b| [t + ((tm - t) / 3600), b] }).per_hour).to be_nil # 2 s
    expect(JSON.parse(verdict.to_json)).to include("verdict" => "native", "per_hour" => 5e7)
  end

  it "heapdiff report DIR prints the memory verdict first" do
    Dir.mktmpdir do |dir|
      record(dir, { setup: "KEPT = []", round: "200_000.times { |i| KEPT << \"kept \#{i}\" * 4 }" })
      html = File.join(dir, "trend.html")
      out, status = Processes.ruby('require "heapdiff/cli"; exit Heapdiff::CLI.new.run(["report", *ARGV, "--top", "1"])',
                                   dir, "--html", html)
      expect(status.exitstatus).to eq(0), out
      # (stderr's "heapdiff: wrote …" is mixed in, ahead of the buffered stdout)
      expect(out.lines.reject { |l| l.start_with?("heapdiff: ") }.first).to start_with("Memory: ruby_objects, +")
      # The HTML report: the verdict, and the breakdown as a stacked area, a layer each.
      page = File.read(html)
      expect(page).to include("<p class=\"verdict\">Memory: ruby_objects, +")
      svg = page[%r{<svg id="breakdown".*?</svg>}m]
      expect(svg.scan("<polygon").size).to eq(5)
      expect(svg).to match(%r{<title>ruby_objects: [\d.]+ MB( → [\d.]+ MB){5}</title>})
    end
  end
end
