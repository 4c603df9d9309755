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
    expect(message).to include("25 STRING (")
    expect(message).to include("at #{__FILE__}:#{line}")
    expect(message).to match(/25 STRING from #{Regexp.escape(__FILE__)}:#{line} — 100% held by .*ARRAY .* ← ROOT/)
  end

  it "counts several objects per iteration exactly" do
    kept = []
    line = __LINE__ + 1
    message = leak_failure { expect { kept << Array.new(3) { Object.new } }.not_to leak(iterations: 10) }
    expect(message).to include("30 OBJECT Object (").and include("at #{__FILE__}:#{line}")
    expect(message).to include("10 ARRAY (")
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

  describe "the threshold" do
    it "is per iteration: a site under it passes" do
      kept = []
      n = 0
      expect { kept << ("every other" * 2) if (n += 1).even? }.not_to leak(iterations: 20)
      expect { kept << ("every other" * 2) if (n += 1).even? }.to leak(iterations: 20, per_iteration: 0.5)
    end

    it "is absolute with max:" do
      kept = []
      expect { kept << ("x" * 3) }.not_to leak(iterations: 10, max: 10)
      expect { kept << ("x" * 3) }.to leak(iterations: 10, max: 9)
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
      expect(Heapdiff::Snapshot.list(dir).size).to eq(3)
      expect(message).to include("snapshots kept in #{dir}")
    ensure
      FileUtils.rm_rf(dir) if dir
    end
  end

  it "costs three snapshots and a diff on top of the block's own time" do
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { nil }.not_to leak
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    expect(elapsed).to be < 10
  end
end
