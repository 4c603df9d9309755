# frozen_string_literal: true

require "heapdiff/rspec"

RSpec.describe "The leak matcher" do
  def leak_failure(&)
    expect(&).to raise_error(RSpec::Expectations::ExpectationNotMetError) { |e| return e.message }
  end

  it "fails for a block that keeps what it allocates, naming the site and the exact count" do
    kept = []
    line = __LINE__ + 1
    message = leak_failure { expect { kept << ("leaked" * 4) }.not_to leak(iterations: 25) }
    expect(message).to include("retained objects in each of two windows of 25 iterations (any steady retention fails)")
    expect(message).to include("25 then 25 STRING (")
    expect(message).to include("at #{__FILE__}:#{line}")
    expect(message).to match(/25 STRING from #{Regexp.escape(__FILE__)}:#{line} — 100% held by .*ARRAY .* ← ROOT/)
  end

  it "counts several objects per iteration exactly" do
    kept = []
    line = __LINE__ + 1
    message = leak_failure { expect { kept << Array.new(3) { Object.new } }.not_to leak(iterations: 10) }
    expect(message).to include("30 then 30 OBJECT Object (").and include("at #{__FILE__}:#{line}")
    expect(message).to include("10 then 10 ARRAY (")
  end

  it "passes for a lazy cache that fills during warmup" do
    cache = {}
    expect { %i[a b c].each { |key| cache[key] ||= "value of #{key}" } }.not_to leak
  end

  it "passes for memoization" do
    memo = Class.new { def value = @value ||= Array.new(10, &:to_s) }.new
    expect { memo.value }.not_to leak
  end

  it "passes for code that retains nothing, however much it allocates" do
    expect { Array.new(200) { |i| "temporary #{i}" }.map(&:upcase).join }.not_to leak
  end

  it "passes for a block whose last result alone is kept" do
    last = nil
    expect { last = "only the latest" * 2 }.not_to leak
  end

  it "matches positively for a leaky block" do
    kept = []
    expect { kept << ("x" * 3) }.to leak_memory(iterations: 5)
  end

  describe "the rule" do
    it "by default catches any steady retention: one object every second call" do
      kept = []
      n = 0
      message = leak_failure { expect { kept << ("every other" * 2) if (n += 1).even? }.not_to leak(iterations: 20) }
      # The block counts its own truth: 10 kept in each window of 20 calls.
      expect(message).to include("10 then 10 STRING (")
    end

    it "by default passes a cache that fills in the first window and then stays" do
      cache = {}
      n = 0
      # 15 distinct keys: warmup adds 2 entries, the first window of 20 calls the other
      # 13, the second none: only one window retains, so it passes.
      check = Heapdiff::LeakCheck.new(iterations: 20)
      result = check.run { cache[(n += 1) % 15] ||= "entry #{n}" }
      expect(result).not_to be_leaked
      expect(result.first_counts.values.sum).to eq(13)
      expect(cache.size).to eq(15)
    end

    it "by default passes a site that stops retaining in the second window" do
      kept = []
      n = 0
      # Retains during warmup (calls 1, 2) and the first window (calls 3..22), never after.
      expect { kept << ("early" * 2) if (n += 1) <= 22 }.not_to leak(iterations: 20)
      expect(kept.size).to eq(22)
    end

    it "is per iteration with per_iteration:, over one window" do
      kept = []
      n = 0
      expect { kept << ("every other" * 2) if (n += 1).even? }.not_to leak(iterations: 20, per_iteration: 1)
      expect { kept << ("every other" * 2) if (n += 1).even? }.to leak(iterations: 20, per_iteration: 0.5)
    end

    it "is absolute with max:, and the failure message says so" do
      kept = []
      expect { kept << ("x" * 3) }.not_to leak(iterations: 10, max: 10)
      message = leak_failure { expect { kept << ("x" * 3) }.not_to leak(iterations: 10, max: 9) }
      expect(message).to include("retained more than max: 9 objects over 10 iterations")
      expect(message).not_to include("proportion")
      expect(message).to match(/^  10 STRING \(/)
      expect { Heapdiff::LeakCheck.new(max: 1, per_iteration: 1) }.to raise_error(ArgumentError, /not both/)
    end
  end

  describe "composition" do
    RSpec::Matchers.define_negated_matcher :not_leak, :leak

    it "works with .and and .or" do
      kept = []
      expect { kept << 1 }.to not_leak(iterations: 3).and change(kept, :size)
      expect { nil }.to leak(iterations: 3).or change { kept.size }.by(0)
      expect { kept << ("x" * 3) }.not_to not_leak(iterations: 3)
      expect(Heapdiff::RSpec::LeakMatcher.ancestors).to include(RSpec::Matchers::Composable)
    end
  end

  describe "baseline:" do
    # Leaks under constants, so that the names sidecar names their holders; each kept
    # on one line, so that every run has the same sites.
    holders = Module.new do
      const_set(:KNOWN, [])
      const_set(:FRESH, [])
      def self.keep_known = self::KNOWN << ("known" * 2)
      def self.keep_fresh = self::FRESH << ("fresh" * 2)
    end
    stub = "MatcherBaselineHolders"
    Object.const_set(stub, holders) unless Object.const_defined?(stub)

    it "passes the leaks the baseline knows, and fails a new one, naming its signature" do
      holders = MatcherBaselineHolders
      first = Heapdiff::LeakCheck.new(iterations: 10).run { holders.keep_known }
      expect(first).to be_leaked
      Dir.mktmpdir("heapdiff-baseline") do |dir|
        path = File.join(dir, "heapdiff_baseline.json")
        Heapdiff::Baseline.write(path, first.report.leaks)
        expect { holders.keep_known }.not_to leak(iterations: 10, baseline: path)

        result = Heapdiff::LeakCheck.new(iterations: 10, baseline: path).run do
          holders.keep_known
          holders.keep_fresh
        end
        # Both sites retain 10 in each window (the block's own count); only the new one fails.
        expect(result.leaks.map(&:count)).to eq([10])
        expect(result.new_leaks.map(&:holder_chain).map(&:first)).to eq(["MatcherBaselineHolders::FRESH (Array)"])
        expect(result.new_leaks.first.sites.map(&:site)).to eq(result.leaks)
        expect(result.message).to include("not in the baseline #{path}: leak #{result.new_leaks.first.signature} " \
                                          "MatcherBaselineHolders::FRESH")
        expect { Heapdiff::LeakCheck.new(baseline: File.join(dir, "none.json")) }
          .to raise_error(Heapdiff::BaselineError, /none\.json/)
      end
    end
  end

  describe "the filters" do
    let(:kept) { [] }

    it "leave out types with ignore:" do
      expect { kept << ("x" * 3) }.not_to leak(iterations: 5, ignore: :string)
    end

    it "leave out paths with ignore:" do
      expect { kept << ("x" * 3) }.not_to leak(iterations: 5, ignore: File.basename(__FILE__))
      expect { kept << ("x" * 3) }.not_to leak(iterations: 5, ignore: /matcher_spec/)
    end

    it "look at gems only with only:" do
      expect { kept << ("x" * 3) }.not_to leak(iterations: 5, only: "rake")
      expect { kept << ("x" * 3) }.to leak(iterations: 5, only: [:string])
    end

    it "reject what is not a pattern" do
      expect { Heapdiff::LeakCheck.new(only: 3) }.to raise_error(TypeError, /filter/)
      expect { Heapdiff::LeakCheck.new(iterations: 0) }.to raise_error(ArgumentError, /iterations/)
    end
  end

  describe "allocation tracing" do
    it "is turned on for the run and off again when it was off" do
      Heapdiff.stop_tracing!
      traced = nil
      expect { traced = Heapdiff.tracing? }.not_to leak(iterations: 2)
      expect(traced).to be(true)
      expect(Heapdiff.tracing?).to be(false)
    end

    it "stays on when it was on" do
      Heapdiff.trace_allocations!
      expect { nil }.not_to leak(iterations: 2)
      expect(Heapdiff.tracing?).to be(true)
    ensure
      Heapdiff.stop_tracing!
    end
  end

  describe "the snapshots" do
    def snapshot_dirs
      Dir.glob(File.join(Dir.tmpdir, "heapdiff-*"))
    end

    # A private TMPDIR: other processes (a parallel run) make heapdiff-* dirs too.
    around do |example|
      saved = ENV.fetch("HEAPDIFF_KEEP", nil)
      saved_tmpdir = ENV.fetch("TMPDIR", nil)
      Dir.mktmpdir("matcher-spec") do |private_tmp|
        ENV["TMPDIR"] = private_tmp
        example.run
      end
    ensure
      ENV["HEAPDIFF_KEEP"] = saved
      ENV["TMPDIR"] = saved_tmpdir
    end

    it "are deleted after the run" do
      ENV.delete("HEAPDIFF_KEEP")
      before = snapshot_dirs
      expect { nil }.not_to leak(iterations: 2)
      expect(snapshot_dirs - before).to be_empty
    end

    it "are kept with HEAPDIFF_KEEP=1, and the message says where" do
      ENV["HEAPDIFF_KEEP"] = "1"
      before = snapshot_dirs
      kept = []
      message = leak_failure { expect { kept << ("x" * 3) }.not_to leak(iterations: 3) }
      dir = (snapshot_dirs - before).first
      expect(Heapdiff::Snapshot.list(dir).size).to eq(4)
      expect(message).to include("snapshots kept in #{dir}")
    ensure
      FileUtils.rm_rf(dir) if dir
    end
  end

  it "costs four snapshots and two diffs on top of the block's own time" do
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { nil }.not_to leak
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    expect(elapsed).to be < 10
  end
end
