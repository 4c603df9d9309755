# frozen_string_literal: true

require "timeout"
require "tmpdir"
require_relative "../support/clock"

# The dominator tree (and the reverse graph under it) of a big heap takes a second or
# more to build, without the GVL: Timeout and Thread#kill must stop it promptly, and
# what was stopped must not be kept half-built. Every assertion compares with the time
# the full build took here, never with a fixed duration.
RSpec.describe "Interrupting a graph pass" do
  objects = 2_000_000

  # A chain of ARRAYs, each also referencing the one at half its index: a graph that
  # makes Lengauer-Tarjan do real work, written the way dump_all writes records.
  def self.write_graph(path, count)
    address = ->(i) { format("0x%x", 0x1000 + (i * 64)) }
    File.open(path, "wb") do |f|
      f.write(%({"type":"ROOT", "root":"vm", "references":["#{address[0]}"]}\n))
      buffer = +""
      count.times do |i|
        refs = i + 1 < count ? %("#{address[i + 1]}", "#{address[i / 2]}") : ""
        buffer << %({"address":"#{address[i]}", "type":"ARRAY", "references":[#{refs}], "memsize":40}\n)
        next if buffer.bytesize < (1 << 20)

        f.write(buffer)
        buffer.clear
      end
      f.write(buffer)
    end
    address[count - 1]
  end

  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-graph-interrupt")
    @path = File.join(@dir, "graph.json")
    @last = self.class.write_graph(@path, objects)
    heap = Heapdiff.load(@path)
    @full = Clock.elapsed { @answer = [heap.dominator(@last).address, heap.retained_size(@last)] }
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "raises Timeout::Error in dominator well before the tree would be built, and keeps nothing half-built" do
    heap = Heapdiff.load(@path)
    seconds = Clock.elapsed do
      expect { Timeout.timeout(@full / 10) { heap.dominator(@last) } }.to raise_error(Timeout::Error)
    end
    expect(seconds).to be < @full / 2
    expect([heap.dominator(@last).address, heap.retained_size(@last)]).to eq(@answer)
  end

  it "lets Thread#kill stop retained_size, and keeps nothing half-built" do
    heap = Heapdiff.load(@path)
    thread = Thread.new { heap.retained_size(@last) }
    sleep @full / 10
    seconds = Clock.elapsed { thread.kill.join }
    expect(thread).not_to be_alive
    expect(seconds).to be < @full / 2
    expect([heap.dominator(@last).address, heap.retained_size(@last)]).to eq(@answer)
  end
end
