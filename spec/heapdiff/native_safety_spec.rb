# frozen_string_literal: true

require "json"
require "tmpdir"

# Every native call of the Report side on tiny dumps, so that it runs under GC_STRESS
# in CI (a missing mark or a Ruby value kept across an allocation crashes there), and
# from several threads at once (the GVL is released inside).
RSpec.describe "Native calls under GC stress and threads", :gc_stress do
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-native")
    klass = %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n)
    leak = %({"address":"0x40", "type":"CLASS", "name":"Leak", "memsize":500}\n)
    root = %({"type":"ROOT", "root":"vm", "references":["0x10"]}\n)
    array = lambda do |refs|
      %({"address":"0x10", "type":"ARRAY", "class":"0x30", "length":#{refs.size}, "references":#{refs.to_json}, "file":"app.rb", "line":1, "generation":1, "memsize":40}\n)
    end
    strings = (1..4).map { |i| %({"address":"0x#{(0x100 + (i * 8)).to_s(16)}", "type":"STRING", "class":"0x30", "bytesize":2, "value":"s#{i}", "file":"app.rb", "line":7, "generation":5, "memsize":40}\n) }
    object = %({"address":"0x200", "type":"OBJECT", "class":"0x40", "ivars":1, "file":"app.rb", "line":9, "generation":5, "memsize":40}\n)
    # The array holds the strings and the object; "s4" (0x120) is garbage nothing
    # references, still in the last dump (as without a full GC before it).
    @paths = [
      [root, array.call([]), klass, leak],
      [root, array.call(%w[0x108 0x110 0x118 0x200]), *strings, object, klass, leak],
      [root, array.call(%w[0x108 0x110 0x200]), *strings.first(2), strings.last, object, klass, leak]
    ].each_with_index.map do |lines, n|
      File.join(@dir, "#{n}.json").tap { |path| File.write(path, lines.join) }
    end
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "builds reports, groups and objects" do
    report = Heapdiff.diff(*@paths)
    expect(report.map { |g| [g.label, g.location, g.count] }).to eq([["STRING", "app.rb:7", 2], ["OBJECT Leak", "app.rb:9", 1]])
    expect(report.first.addresses).to eq(%w[0x108 0x110])
    expect(report.first.sample(2).map(&:value)).to eq(%w[s1 s2])
    expect(report.freed_count).to eq(1)
    expect(report.unreachable_count).to eq(1)
    expect(JSON.parse(report.to_json)["total_count"]).to eq(3)
    expect(report.to_s).to start_with("Retained STRING 2 objects of size 80 B/120 B at: app.rb:7")
  end

  it "answers retention queries" do
    report = Heapdiff.diff(*@paths)
    heap = report.last_heap
    string = report.first.sample(1).first
    expect(heap.path_to_root(string).to_s).to eq("ROOT vm → ARRAY 0x10 (3 refs) → [0] STRING 0x108")
    expect(heap.retainers(string).map(&:address)).to eq(["0x10"])
    # Without class edges: in this hand-made dump no root holds the classes, so with
    # them the array would also dominate String and Leak.
    expect(heap.retained_size(heap.at("0x10"), class_edges: false)).to eq(4 * 40)
    expect(heap.path_to_root("0x120")).to be_nil # the garbage string
    suspect = report.suspect(report.first)
    expect(suspect.unreachable_count).to eq(0)
    expect(suspect.top.object.address).to eq("0x10")
  end

  it "runs from several threads at once with the same answer" do
    counts = Array.new(3) { Thread.new { Heapdiff.diff(*@paths).total_count } }.map(&:value)
    expect(counts).to eq([3, 3, 3])
  end
end
