# frozen_string_literal: true

require "tmpdir"
require "heapdiff/analysis/summary"
require_relative "../support/fixtures"

RSpec.describe Heapdiff::Summary do
  # Built once: a summary walks every object of the dump in Ruby.
  before(:context) do
    @heap = Heapdiff.load(Fixtures.leak3("3.4", 2))
    @summary = described_class.new(@heap)
  end

  subject(:summary) { @summary }

  let(:heap) { @heap }

  it "counts every object once in each table" do
    expect(summary.object_count).to eq(heap.size)
    described_class::KEYS.each do |key|
      expect(summary.top(key, limit: nil).sum(&:count)).to eq(heap.size)
      expect(summary.top(key, limit: nil).sum(&:memsize)).to eq(summary.memsize)
    end
  end

  it "agrees with a count made independently" do
    strings = heap.count { |o| o.type == "STRING" }
    expect(summary.top(:type, limit: nil).find { |r| r.key == "STRING" }.count).to eq(strings)
    at17 = heap.count { |o| o.file == "leak3.rb" && o.line == 17 }
    expect(summary.top(:location).find { |r| r.key == "leak3.rb:17" }.count).to eq(at17)
  end

  it "sorts by count or by memsize" do
    expect(summary.top(:type).map(&:count)).to eq(summary.top(:type).map(&:count).sort.reverse)
    expect(summary.top(:class, by: :memsize).map(&:memsize)).to eq(summary.top(:class, by: :memsize).map(&:memsize).sort.reverse)
  end

  it "finds strings held more than once" do
    dups = summary.duplicate_strings(limit: nil)
    expect(dups).to all(have_attributes(count: be > 1))
    top = dups.first
    expect(heap.count { |o| o.type == "STRING" && o.value == top.value }).to eq(top.count)
  end

  it "converts to JSON and text" do
    data = JSON.parse(summary.to_json)
    expect(data["objects"]).to eq(heap.size)
    expect(data["tables"].keys).to eq(%w[type class location file gem])
    expect(summary.to_s).to include("Top gem by memsize:", "Duplicated strings")
  end

  it "rejects an unknown key" do
    expect { summary.top(:colour) }.to raise_error(ArgumentError, /colour/)
  end
end

RSpec.describe "Heapdiff::Heap#_summary on a tiny dump", :gc_stress do
  around do |example|
    Dir.mktmpdir("heapdiff-summary") do |dir|
      @path = File.join(dir, "dump.json")
      klass = %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n)
      strings = [["0x108", "dup", 7], ["0x110", "dup", 7], ["0x118", "once", 8]].map do |address, value, line|
        %({"address":"#{address}", "type":"STRING", "class":"0x30", "bytesize":3, "value":"#{value}", ) +
          %("encoding":"UTF-8", "file":"app.rb", "line":#{line}, "memsize":40}\n)
      end
      File.write(@path, [klass, *strings].join)
      example.run
    end
  end

  it "counts by every key and finds the duplicated value" do
    summary = Heapdiff::Summary.new(Heapdiff.load(@path))
    expect(summary.object_count).to eq(4)
    expect(summary.top(:type).map { |r| [r.key, r.count, r.memsize] }).to eq([["STRING", 3, 120], ["CLASS", 1, 500]])
    expect(summary.top(:location).map { |r| [r.key, r.count] })
      .to eq([["app.rb:7", 2], ["(no allocation site)", 1], ["app.rb:8", 1]])
    expect(summary.top(:class).map { |r| [r.key, r.count] }).to eq([["String", 3], ["CLASS", 1]])
    dup = summary.duplicate_strings.map { |d| [d.value, d.value.encoding, d.count, d.memsize] }
    expect(dup).to eq([["dup", Encoding::UTF_8, 2, 80]])
  end
end
