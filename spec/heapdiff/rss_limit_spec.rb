# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# A snapshot before the memory killer fires: when RSS first reaches the limit, then at
# each further step. The program grows its RSS in chunks, reads its own RSS after each,
# and counts the thresholds it crossed by the rule (one snapshot per crossing; a jump
# past several thresholds is one snapshot): that count is the truth.
RSpec.describe "Recorder rss_limit" do
  def grow(dir, recorder:, env: {}, chunks: 12)
    out, status = Processes.ruby(<<~RUBY, dir, env: env)
      require "heapdiff"
      require "etc"
      rss = -> { Integer(File.read("/proc/self/statm").split[1]) * Etc.sysconf(Etc::SC_PAGESIZE) }
      base = rss.call
      limit = base + (40 << 20)
      step = 0.2
      recorder = #{recorder}
      kept = []
      threshold = limit
      expected = 0
      #{chunks}.times do
        # Native memory, touched: RSS grows, and the dumps stay small and quick.
        kept << Fiddle::Pointer.malloc(10 << 20).tap { |p| p[0, 10 << 20] = "\\1" * (10 << 20) }
        now = rss.call
        if now >= threshold && expected < 5
          expected += 1
          threshold = (threshold * (1 + step)).ceil while threshold <= now
        end
        sleep 0.5 # the recorder's checks, and a snapshot of this small heap
      end
      sleep 0.5
      recorder.stop
      puts JSON.generate(expected: expected, limit: limit)
    RUBY
    raise out unless status.success?

    [JSON.parse(out.lines.last), out]
  end

  it "takes one forked snapshot when RSS first reaches the limit, then one per step" do
    Dir.mktmpdir do |dir|
      truth, log = grow(dir, recorder: "Heapdiff::Recorder.start(dir: ARGV[0], every: nil, rss_limit: limit, rss_check: 0.05)")
      snapshots = Heapdiff::Snapshot.list(dir)
      expect(truth["expected"]).to be >= 3 # the program crossed several thresholds
      expect(snapshots.size).to eq(truth["expected"]), log
      expect(snapshots.map { |s| s.meta["forked"] }).to all(be(true))
      expect(log.scan(/RSS [\d.]+ MB reached ([\d.]+) MB/).flatten.map(&:to_f).first).to be_within(0.1).of(truth["limit"] / 1e6)
    end
  end

  it "HEAPDIFF_RSS_LIMIT takes exactly one snapshot at the crossing" do
    Dir.mktmpdir do |dir|
      env = { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_EVERY" => "0", "HEAPDIFF_RSS_STEP" => "10" }
      out, status = Processes.ruby(<<~RUBY, env: env)
        rss = -> { Integer(File.read("/proc/self/statm").split[1]) * 4096 }
        ENV["HEAPDIFF_RSS_LIMIT"] = (rss.call + (30 << 20)).to_s
        require "heapdiff/auto"
        sleep 1.5
        require "fiddle"
        kept = Array.new(5) { Fiddle::Pointer.malloc(10 << 20).tap { |p| p[0, 10 << 20] = "\\1" * (10 << 20) } }
        sleep 2.5 # the check runs every second
        Heapdiff::Env.recorder.stop
        puts kept.size
      RUBY
      expect(status).to be_success, out
      expect(Heapdiff::Snapshot.list(dir).size).to eq(1), out
    end
  end

  it "refuses a limit that is no size" do
    expect { Heapdiff::Recorder.new(dir: "x", rss_limit: "lots") }.to raise_error(ArgumentError, /rss_limit: must be a positive number of bytes/)
    expect { Heapdiff::Recorder.new(dir: "x", rss_limit: "1G", rss_step: 0) }.to raise_error(ArgumentError, /rss_step/)
    expect(Heapdiff::Recorder.new(dir: "x", rss_limit: "1.5G").rss_limit).to eq(1.5 * (1 << 30))
  end
end
