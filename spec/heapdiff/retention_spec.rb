# frozen_string_literal: true

require_relative "../support/fixtures"

# Why is it retained: paths from the roots, retainers, dominators and leak suspects,
# on the three-dump leak whose holder is known (the LEAKS constant, an Array).
RSpec.describe "Retention" do
  Fixtures::RUBIES.each do |ruby|
    context "on the leak3 dumps of Ruby #{ruby}" do
      before(:all) { @report = Heapdiff.diff(*(0..2).map { |n| Fixtures.leak3(ruby, n) }) }

      let(:report) { @report }
      # The last dump, where the retention holds (LEAKS has 3000 elements there).
      let(:heap) { report.last_heap }
      let(:leaks_group) { report.find { |g| g.location == "leak3.rb:28" } }

      it "leads every leaked Leak object's path from a root through the LEAKS array" do
        leaks_group.each_object do |leak|
          path = heap.path_to_root(leak)
          holder = path.to_a[-2]
          expect([holder.type, holder.length]).to eq(["ARRAY", 3000])
          expect(path.target).to eq(leak)
          expect(path.root).to be_a(String)
        end
      end

      it "names the LEAKS array as the top suspect of each known group" do
        %w[leak3.rb:17 leak3.rb:27 leak3.rb:28].each do |location|
          suspect = report.suspect(report.find { |g| g.location == location })
          expect(suspect.top.object.type).to eq("ARRAY")
          expect(suspect.top.object.length).to eq(3000)
          expect(suspect.top.count).to be >= 999
          expect(suspect.top.share).to be >= 0.999
          expect(suspect.top.path.to_a.last).to eq(suspect.top.object)
          expect(suspect.retained_size).to be >= suspect.group.memsize
        end
      end
    end
  end

  describe "the Heap API" do
    before(:all) do
      @report = Heapdiff.diff(*(0..2).map { |n| Fixtures.leak3("3.4", n) })
      @heap = @report.last_heap
      @leak = @report.find { |g| g.location == "leak3.rb:28" }.sample(1).first
    end

    let(:heap) { @heap }
    let(:leak) { @leak }

    it "gives retainers, referents, the dominator and the retained size" do
      array = heap.dominator(leak)
      expect(array.type).to eq("ARRAY")
      expect(heap.retainers(leak)).to eq([array])
      expect(heap.referents(leak).map(&:line)).to contain_exactly(17, 27)
      expect(heap.retained_size(leak)).to eq(leak.memsize + heap.referents(leak).sum(&:memsize))
      expect(heap.retained_size(array)).to be > 2000 * leak.memsize
    end

    it "labels edges where the dump says what they are: ivars from shapes, array indexes" do
      path = heap.path_to_root(leak)
      expect(path.steps.last.label).to match(/\A\[\d+\]\z/)
      payload = heap.referents(leak).find { |o| o.line == 17 }
      expect(heap.path_to_root(payload).steps.last.label).to eq("@payload")
      expect(path.to_s).to start_with("ROOT #{path.root} → ").and include("→ #{path.steps.last.label} OBJECT Leak #{leak.address}")
      expect(path.inspect).to start_with("#<Heapdiff::Path ROOT")
    end

    it "finds distinct paths through different retainers" do
      payload = heap.referents(leak).find { |o| o.line == 17 }
      paths = heap.paths_to_root(payload, limit: 3)
      expect(paths.map { |p| p.to_a[-2] }.uniq.size).to eq(paths.size)
      expect(paths.first.size).to eq(heap.path_to_root(payload).size)
    end

    it "adds the object → class edges the dump leaves out, unless asked not to" do
      klass = heap.find { |o| o.type == "CLASS" && o.name == "Leak" }
      expect(heap.retainers(klass, class_edges: false)).not_to include(leak)
      expect(heap.retainers(klass)).to include(leak)
    end

    it "shows the suspect under its group in the report" do
      text = @report.to_s(top: 3)
      expect(text).to match(/^  1000 OBJECT Leak from leak3.rb:28 — 100% held by ARRAY 0x\h+ \(3000 refs\) ← .* ← ROOT \w+; retains [\d.]+ k?B$/)
    end

    it "raises for an address the heap does not have" do
      expect { heap.path_to_root("0x1") }.to raise_error(ArgumentError, /no object at/)
    end
  end
end
