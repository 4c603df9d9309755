# frozen_string_literal: true

require "heapdiff/summary"
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
