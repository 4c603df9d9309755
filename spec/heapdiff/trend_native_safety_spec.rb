# frozen_string_literal: true

require "json"
require "tmpdir"

# Every native call of Heapdiff::Trend on tiny dumps, so that it runs under GC_STRESS in
# CI, and from several threads at once (the walk releases the GVL).
RSpec.describe "Trend native calls under GC stress and threads", :gc_stress do
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-trend-native")
    klass = %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n)
    root = %({"type":"ROOT", "root":"vm", "references":["0x10"]}\n)
    holder = ->(refs) { %({"address":"0x10", "type":"ARRAY", "class":"0x30", "length":#{refs.size}, "references":#{refs.to_json}, "file":"app.rb", "line":1, "generation":1, "memsize":40}\n) }
    string = ->(address, generation) { %({"address":"#{address}", "type":"STRING", "class":"0x30", "bytesize":2, "value":"s", "file":"app.rb", "line":7, "generation":#{generation}, "memsize":40}\n) }
    first = %w[0x108 0x110 0x118]
    second = %w[0x120 0x128]
    @paths = [
      [root, holder.call([]), klass],
      [root, holder.call(first), *first.map { |a| string.call(a, 5) }, klass],
      [root, holder.call(first + second), *first.map { |a| string.call(a, 5) }, *second.map { |a| string.call(a, 9) }, klass]
    ].each_with_index.map do |lines, n|
      File.join(@dir, "#{n}.json").tap { |path| File.write(path, lines.join) }
    end
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "builds the trend, its sites, suspects and paths" do
    trend = Heapdiff.trend(@paths)
    site = trend.first
    expect([site.location, site.verdict, site.counts, site.survived]).to eq(["app.rb:7", :growing, [0, 3, 5], [0, 0, 3]])
    expect(site.sample(5).map(&:address)).to eq(%w[0x108 0x110 0x118 0x120 0x128])
    expect(site.path.to_s).to eq("ROOT vm → ARRAY 0x10 (5 refs) → [0] STRING 0x108")
    expect(site.suspect.top.object.address).to eq("0x10")
    expect(trend.memory.map(&:objects)).to eq([2, 5, 7])
    expect(trend.last_heap.size).to eq(7)
  end

  it "runs from several threads at once with the same answer" do
    counts = Array.new(3) { Thread.new { Heapdiff.trend(@paths).first.counts } }.map(&:value)
    expect(counts).to eq([[0, 3, 5]] * 3)
  end
end
