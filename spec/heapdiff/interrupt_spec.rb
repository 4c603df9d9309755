# frozen_string_literal: true

require "timeout"
require "tmpdir"
require_relative "../support/fixtures"

# Loading runs without the GVL and stops when Ruby asks for the thread back.
RSpec.describe "Interrupting a load" do
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-interrupt")
    @big = File.join(@dir, "big.json")
    one = File.binread(Fixtures.dump("3.3"))
    File.open(@big, "wb") { |f| 30.times { f.write(one) } } # ~150 MB
    @full_load = Process.clock_gettime(Process::CLOCK_MONOTONIC).then do |t0|
      Heapdiff.load(@big)
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    end
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  def elapsed
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  end

  it "raises Timeout::Error within a second, well before the load would finish" do
    expect(@full_load).to be > 0.3
    seconds = elapsed do
      expect { Timeout.timeout(0.05) { Heapdiff.load(@big) } }.to raise_error(Timeout::Error)
    end
    expect(seconds).to be < [1.0, @full_load].min
  end

  it "lets Thread#kill stop a loading thread" do
    thread = Thread.new { Heapdiff.load(@big) }
    sleep 0.05
    seconds = elapsed do
      thread.kill
      thread.join
    end
    expect(thread).not_to be_alive
    expect(seconds).to be < 1.0
  end

  it "lets other Ruby threads run while it loads" do
    ticks = 0
    ticker = Thread.new { loop { ticks += 1; sleep 0.01 } }
    Heapdiff.load(@big)
    ticker.kill
    expect(ticks).to be >= (@full_load / 0.01 / 4).floor
  end
end
