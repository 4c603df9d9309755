# frozen_string_literal: true

require "json"
require_relative "../support/fixtures"

RSpec.describe "Heapdiff.diff" do
  Fixtures::RUBIES.each do |ruby|
    context "on the three-dump leak from Ruby #{ruby}" do
      subject(:report) { Heapdiff.diff(*(0..2).map { |n| Fixtures.leak3(ruby, n) }) }

      it "finds exactly 1000 objects at each of the three leaking sites" do
        counts = report.groups.to_h { |g| [[g.label, g.location], g.count] }
        expect(counts[["OBJECT Leak", "leak3.rb:28"]]).to eq(1000)
        expect(counts[["STRING", "leak3.rb:27"]]).to eq(1000)
        expect(counts[["STRING", "leak3.rb:17"]]).to eq(1000)
        expect(report.first(3).map(&:count)).to eq([1000, 1000, 1000])
      end

      it "groups objects allocated in the middle phase only" do
        payloads = report.find { |g| g.location == "leak3.rb:17" }
        expect(payloads.sample(5).map(&:value)).to all(match(/\Apayload-1-\d+\z/))
        expect(payloads.addresses.uniq.size).to eq(1000)
      end
    end
  end

  describe "the report" do
    let(:paths) { (0..2).map { |n| Fixtures.leak3("3.4", n) } }
    let(:report) { Heapdiff.diff(*paths) }

    it "prints heapy's wording, one line per group" do
      line = report.to_s.lines.find { |l| l.include?("leak3.rb:28") }
      expect(line).to match(%r{\ARetained OBJECT Leak 1000 objects of size [\d.]+ k?B/[\d.]+ kB at: leak3.rb:28$})
    end

    it "sorts groups by count, then memsize" do
      keys = report.map { |g| [-g.count, -g.memsize] }
      expect(keys).to eq(keys.sort)
    end

    it "adds up its groups" do
      expect(report.total_count).to eq(report.sum(&:count))
      expect(report.total_memsize).to eq(report.sum(&:memsize))
    end

    it "converts to a Hash and to JSON" do
      data = JSON.parse(report.to_json)
      expect(data["total_count"]).to eq(report.total_count)
      expect(data["groups"].first).to include("type" => "STRING", "count" => 1000, "location" => "leak3.rb:17")
      expect(data["dumps"].size).to eq(3)
    end

    it "accepts loaded heaps as well as paths" do
      heaps = paths.map { |p| Heapdiff.load(p) }
      expect(Heapdiff.diff(*heaps).total_count).to eq(report.total_count)
      expect(Heapdiff.diff(*heaps).after).to equal(heaps[1])
    end

    it "has an inspect that names the top group" do
      expect(report.inspect).to match(/retained groups=\d+ objects=\d+ .*top=STRING 1000 at leak3.rb:17/)
    end

    it "with two dumps reports what was allocated since the first, retained or not" do
      two = Heapdiff.diff(paths[0], paths[1])
      expect(two.verb).to eq("Allocated")
      expect(two.total_count).to be > report.total_count
      leak = two.find { |g| g.location == "leak3.rb:28" }
      expect(leak.count).to eq(1000)
    end

    it "filters the allocation tracer's own object unless asked to keep everything" do
      everything = Heapdiff.diff(*paths, include_noise: true)
      expect(everything.total_count).to be >= report.total_count
      expect(everything.total_count - report.total_count).to eq(report.filtered_count)
    end
  end
end

RSpec.describe "Heapdiff.diff with a bad argument" do
  it "raises the loader's error for a path that is not a dump, and TypeError for a non-path" do
    expect { Heapdiff.diff(__FILE__, __FILE__) }.to raise_error(Heapdiff::ParseError, /diff_spec.rb:1:/)
    expect { Heapdiff.diff(1, 2) }.to raise_error(TypeError, /path/)
  end
end
