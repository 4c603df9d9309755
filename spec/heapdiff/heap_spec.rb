# frozen_string_literal: true

require "tmpdir"
require_relative "../support/fixtures"

RSpec.describe Heapdiff::Heap do
  Fixtures::RUBIES.each do |ruby|
    context "with Ruby #{ruby}'s dump" do
      subject(:heap) { Heapdiff.load(Fixtures.dump(ruby)) }

      it "has one object per line that is neither ROOT nor SHAPE" do
        counts = Fixtures.count_records(Fixtures.dump(ruby))
        expect(heap.size).to eq(counts["objects"])
        expect(heap.stats[:root_records]).to eq(counts["ROOT"])
        expect(heap.stats[:shapes]).to eq(counts["SHAPE"])
        expect(heap.stats[:lines]).to eq(counts.values.sum)
        expect(heap.recovered_lines).to eq(0)
      end

      it "finds objects by address with the fields of their record" do
        line = File.foreach(Fixtures.dump(ruby)).find { |l| l.include?('"type":"STRING"') && l.include?('"file":') }
        record = JSON.parse(line)
        object = heap.at(record["address"])
        expect(object.address).to eq(record["address"])
        expect(object.type).to eq("STRING")
        expect(object.class_name).to eq("String")
        expect(object.file).to eq(record["file"])
        expect(object.line).to eq(record["line"])
        expect(object.location).to eq("#{record["file"]}:#{record["line"]}")
        expect(object.generation).to eq(record["generation"])
        expect(object.memsize).to eq(record["memsize"])
        expect(object.bytesize).to eq(record["bytesize"])
        expect(object.value).to eq(record["value"]) if record["value"]
        expect(object.references).to eq(record["references"] || [])
      end

      it "lists the root categories with the addresses they mark" do
        roots = JSON.parse(File.foreach(Fixtures.dump(ruby)).first)
        expect(heap.roots.keys).to include(roots["root"])
        expect(heap.roots[roots["root"]]).to eq(roots["references"])
      end
    end
  end

  # Every native method of Heap and Object, under GC_STRESS too. The records to look
  # for are found in before(:all), outside GC.stress, to keep the stressed part short.
  describe "objects", :gc_stress do
    before(:all) do
      lines = File.readlines(Fixtures.dump("3.4"))
      @escaped = JSON.parse(lines.find { |l| l.include?('"value":"\\u001b[m"') })
      object = lines.find { |l| l.include?('"type":"OBJECT"') && l.include?('"class":') }
      @object = JSON.parse(object)
      @class = JSON.parse(lines.find { |l| l.start_with?("{\"address\":\"#{@object["class"]}\"") })
      @heap = Heapdiff.load(Fixtures.dump("3.4"))
    end

    let(:heap) { @heap }

    it "is Enumerable over lazily built objects" do
      expect(heap.each).to be_a(Enumerator)
      expect(heap.each.size).to eq(heap.size)
      first = heap.first(2)
      expect(first.map(&:row)).to eq([0, 1])
      expect(first).to all(be_a(Heapdiff::Object))
    end

    it "reads string values back from the file, escapes decoded" do
      object = heap.at(@escaped["address"])
      expect(object.value).to eq("\e[m")
      expect(object.details[:encoding]).to eq("UTF-8")
      expect(object.bytesize).to eq(3)
      expect(object.inspect).to include("STRING", object.address)
    end

    it "names classes from their CLASS records" do
      object = heap.at(@object["address"])
      expect(object.class_name).to eq(@class["name"] || "#<Class:#{@class["address"]}>")
      expect(object.references).to eq(@object["references"] || [])
      expect(object.referents.map(&:address)).to eq(object.references.select { |a| heap.at(a) })
    end

    it "answers nil for an address it does not have, and rejects what is not an address" do
      expect(heap.at("0x1")).to be_nil
      expect { heap.at("hello") }.to raise_error(ArgumentError, /address/)
    end

    it "has an inspect that fits on a line" do
      expect(heap.inspect).to match(/\A#<Heapdiff::Heap ruby-3.4.jsonl objects=\d+ roots=\d+/)
      expect(heap.roots).to be_a(Hash)
      expect(heap.stats[:objects]).to eq(heap.size)
    end
  end

  describe "gzip dumps" do
    it "are detected by content and read values back" do
      heap = Heapdiff.load(Fixtures.leak3("3.3", 2))
      expect(heap.stats[:gzip]).to be(true)
      payload = heap.find { |o| o.type == "STRING" && o.line == 17 }
      expect(payload.value).to match(/\Apayload-\d-\d+\z/)
    end
  end
end
