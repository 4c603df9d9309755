# frozen_string_literal: true

require "timeout"
require "tmpdir"
require_relative "../support/clock"
require_relative "../support/fixtures"
require_relative "../support/memory"

# Loading runs without the GVL and stops when Ruby asks for the thread back.
RSpec.describe "Interrupting a load" do
  # The dump is sized from this machine's measured load rate, so that a full load takes
  # about two seconds however fast the machine is: every assertion below compares an
  # interrupted load with that full load, never with a fixed duration.
  full_load_seconds = 2.0

  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-interrupt")
    @big = File.join(@dir, "big.json")
    one = File.binread(Fixtures.dump("3.3"))
    write_copies = ->(n) { File.open(@big, "wb") { |f| n.times { f.write(one) } } }
    timed_load = lambda do
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Heapdiff.load(@big)
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    end
    copies = 30 # ~150 MB
    write_copies.call(copies)
    rate = copies / timed_load.call
    copies = (rate * full_load_seconds).ceil.clamp(copies, 600) # at most ~3 GB
    write_copies.call(copies)
    @full_load = timed_load.call
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "raises Timeout::Error well before the load would finish" do
    seconds = Clock.elapsed do
      expect { Timeout.timeout(0.05) { Heapdiff.load(@big) } }.to raise_error(Timeout::Error)
    end
    expect(seconds).to be < @full_load / 4
  end

  it "lets Thread#kill stop a loading thread" do
    thread = Thread.new { Heapdiff.load(@big) }
    sleep 0.05
    seconds = Clock.elapsed do
      thread.kill
      thread.join
    end
    expect(thread).not_to be_alive
    expect(seconds).to be < @full_load / 4
  end

  # In a child process, so that its RSS is the loads' alone (one malloc arena: see
  # spec/support/memory.rb). Each interrupted load had built part of an index, tens of
  # MB: all of it must be given back.
  it "frees what an interrupted load had built, every time" do
    result = Memory.child(<<~RUBY, @big, env: Memory::ONE_ARENA)
      require "timeout"
      big = ARGV[0]
      def seconds
        t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        yield
        Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
      end
      def load_held(path) = Heapdiff.load(path).then { |heap| [heap.size, rss_mb] }
      GC.start
      base = rss_mb
      _, holding = load_held(big)
      GC.start
      timeouts = Array.new(10) do
        seconds { Timeout.timeout(0.1) { Heapdiff.load(big) } rescue Timeout::Error }
      end
      kills = Array.new(10) do
        thread = Thread.new { Heapdiff.load(big) }
        sleep 0.1
        seconds { thread.kill.join }
      end
      GC.start
      puts JSON.generate(base: base, holding: holding, after: rss_mb, timeouts: timeouts, kills: kills)
    RUBY
    # Each Timeout raised within a second of the load's start; each kill took effect
    # within a second.
    expect(result["timeouts"]).to all(be < 1.0)
    expect(result["kills"]).to all(be < 1.0)
    expect(result["after"]).to be <= result["base"] * 1.1
    expect(result["holding"] - result["base"]).to be > 50
  end

  it "lets other Ruby threads run while it loads" do
    ticks = 0
    ticker = Thread.new do
      loop do
        ticks += 1
        sleep 0.01
      end
    end
    Heapdiff.load(@big)
    ticker.kill
    expect(ticks).to be >= (@full_load / 0.01 / 4).floor
  end
end
