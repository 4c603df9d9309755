# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/fixtures"

# Leaks: a report's groups gathered under the closest named holder, with a signature
# that survives restarts. The right answers come from the programs that leak, which
# count what they keep.
RSpec.describe "Leaks and baselines" do
  # Each example gets its own directory: @dir.
  around { |example| Dir.mktmpdir("heapdiff-leaks") { |dir| (@dir = dir) && example.run } }

  describe "the finalizer case (../shared/cases/06-finalizer-self)" do
    it "is one leak, held by the finalizer table, with the program's 400 Images and everything they drag along" do
      program = File.join(Fixtures.shared, "cases", "06-finalizer-self", "make_dumps.rb")
      out, err, status = Open3.capture3(RbConfig.ruby, program, @dir)
      raise "make_dumps.rb failed: #{err}" unless status.success?

      truth = JSON.parse(out.lines.last)
      report = Heapdiff.diff(*(0..2).map { |i| File.join(@dir, "#{i}.json.gz") })
      held = report.leaks.select { |l| l.holder_chain.last.end_with?("ROOT finalizers") }
      expect(held.size).to eq(1)
      leak = held.first
      expect(leak.holder_chain).to eq(["the finalizer table (ObjectSpace.define_finalizer): ROOT finalizers"])
      expect(leak.title).to start_with("the finalizer table (ObjectSpace.define_finalizer): ROOT finalizers ← 5 sites")
      image = leak.sites.find { |s| s.site.label == "OBJECT Image" }
      expect(image.count).to eq(truth["image_objects_from_interval_alive"])
      expect(image.share).to eq(1.0)
      # The Image, its name string, its finalizer's proc, env and array: five sites of 400.
      expect(leak.sites.map(&:count)).to eq([truth["image_objects_from_interval_alive"]] * 5)
      expect(leak.count).to eq(5 * truth["image_objects_from_interval_alive"])
      # No ImageFixed is retained, so none is in any leak.
      expect(report.leaks.flat_map(&:sites).map { |s| s.site.label }).not_to include("OBJECT ImageFixed")
      expect(leak.signature).to match(/\A\h{12}\z/)
      expect(leak.to_h).to include(signature: leak.signature, count: leak.count, holder_chain: leak.holder_chain)
      expect(JSON.parse(report.to_json)["leaks"].first["signature"]).to eq(report.leaks.first.signature)

      path = File.join(@dir, "heapdiff_baseline.json")
      baseline = Heapdiff::Baseline.write(path, report.leaks)
      expect(Heapdiff::Baseline.load(path).new_leaks(report.leaks)).to be_empty
      expect(baseline.missing(report.leaks - [leak]).map { |e| e["signature"] }).to eq([leak.signature])
      expect(JSON.parse(File.read(path))["leaks"].find { |e| e["signature"] == leak.signature })
        .to include("title" => leak.title, "holder_chain" => leak.holder_chain, "sites" => leak.sites.map(&:key).sort)
    end
  end

  describe "Leak.normalize_path" do
    it "keeps a gem's name and version, Ruby's library as ruby/, app files relative to the app root" do
      root = "/srv/app"
      expect(Heapdiff::Leak.normalize_path("/home/u/.gem/ruby/3.1.0/gems/sidekiq-6.4.1/lib/sidekiq/api.rb", app_root: root))
        .to eq("sidekiq-6.4.1/lib/sidekiq/api.rb")
      expect(Heapdiff::Leak.normalize_path("/usr/share/rubygems-integration/all/gems/redis-4.8.0/lib/redis.rb", app_root: root))
        .to eq("redis-4.8.0/lib/redis.rb")
      # A git checkout's revision may begin with a letter.
      expect(Heapdiff::Leak.normalize_path("/home/u/.bundle/ruby/3.1.0/bundler/gems/rails-ab12cd34ef56/lib/x.rb", app_root: root))
        .to eq("rails-ab12cd34ef56/lib/x.rb")
      expect(Heapdiff::Leak.normalize_path("/usr/lib/ruby/3.1.0/set.rb", app_root: root)).to eq("ruby/set.rb")
      expect(Heapdiff::Leak.normalize_path("/usr/lib/ruby/vendor_ruby/rake/task.rb", app_root: root)).to eq("vendor_ruby/rake/task.rb")
      expect(Heapdiff::Leak.normalize_path("/srv/app/app/models/user.rb", app_root: root)).to eq("app/models/user.rb")
      expect(Heapdiff::Leak.normalize_path("/srv/application/x.rb", app_root: root)).to eq("/srv/application/x.rb")
      expect(Heapdiff::Leak.normalize_path("./lib/x.rb", app_root: root)).to eq("lib/x.rb")
      expect(Heapdiff::Leak.normalize_path("app.rb", app_root: nil)).to eq("app.rb")
      expect(Heapdiff::Leak.normalize_path(nil)).to be_nil
    end
  end

  describe "Baseline" do
    it "raises BaselineError naming the file for a missing file, bad JSON, or JSON that is no baseline" do
      missing = File.join(@dir, "none.json")
      expect { Heapdiff::Baseline.load(missing) }.to raise_error(Heapdiff::BaselineError, /#{Regexp.escape(missing)}/)
      bad = File.join(@dir, "bad.json")
      File.write(bad, "{not json")
      expect { Heapdiff::Baseline.load(bad) }.to raise_error(Heapdiff::BaselineError, /bad\.json is not JSON/)
      File.write(bad, '{"leaks": []}')
      expect { Heapdiff::Baseline.load(bad) }.to raise_error(Heapdiff::BaselineError, /bad\.json is not a heapdiff baseline/)
      File.write(bad, '{"heapdiff_baseline": 1, "leaks": [{"signature": "xyz"}]}')
      expect { Heapdiff::Baseline.load(bad) }.to raise_error(Heapdiff::BaselineError, /bad\.json: leak 1 has no signature/)
    end

    it "knows a leak by its signature, or by its holder chain and a site of the same type in the same file" do
      chain = ["Store::ENTRIES (Array)", "MODULE Store", "ROOT vm"]
      entries = [{ "signature" => "0123456789ab", "holder_chain" => chain, "sites" => ["STRING lib/store.rb:16"] }]
      baseline = Heapdiff::Baseline.new(entries)
      identity = Heapdiff::Leak::Identity
      known = identity.new("0123456789ab", entries[0]["holder_chain"], entries[0]["sites"])
      moved = identity.new("ffffffffffff", chain, ["STRING lib/store.rb:19", "STRING lib/store.rb:40"])
      expect(known.same?(moved)).to be(true)
      expect(known.same?(identity.new("ffffffffffff", chain, ["HASH lib/store.rb:16"]))).to be(false)
      expect(known.same?(identity.new("ffffffffffff", chain, ["STRING lib/other.rb:16"]))).to be(false)
      expect(known.same?(identity.new("ffffffffffff", ["Store::AUDIT (Array)"] + chain.drop(1), ["STRING lib/store.rb:16"])))
        .to be(false)
      expect(known.same?(identity.new("0123456789ab", nil, []))).to be(true)
      site = Heapdiff::Leak::Site.new(nil, "STRING lib/store.rb:19", 1, 40, 1.0, nil)
      leak = Heapdiff::Leak.new(chain, [site])
      expect(leak.signature).not_to eq("0123456789ab")
      expect(baseline.known?(leak)).to be(true)
      expect(baseline.missing([leak])).to be_empty
    end

    it "finds in an IdentityIndex the first identity with the signature, else the first same leak the block accepts" do
      chain = ["Store::ENTRIES (Array)", "MODULE Store", "ROOT vm"]
      identity = Heapdiff::Leak::Identity
      index = Heapdiff::Leak::IdentityIndex.new
      index.add(identity.new("aaaaaaaaaaaa", chain, ["STRING lib/store.rb:16"]), :moved)
      index.add(identity.new("0123456789ab", nil, []), :by_hand)
      index.add(identity.new("0123456789ab", chain, ["HASH lib/store.rb:3"]), :second)
      expect(index.find(identity.new("0123456789ab", chain, []))).to eq(:by_hand)
      expect(index.find(identity.new("0123456789ab", chain, [])) { |v| v != :by_hand }).to eq(:second)
      expect(index.find(identity.new("ffffffffffff", chain, ["STRING lib/store.rb:99"]))).to eq(:moved)
      expect(index.find(identity.new("ffffffffffff", chain, ["STRING lib/store.rb:99"])) { |v| v != :moved }).to be_nil
      expect(index.find(identity.new("ffffffffffff", chain, ["ARRAY lib/store.rb:16"]))).to be_nil
      expect(index.find(identity.new("ffffffffffff", nil, ["STRING lib/store.rb:16"]))).to be_nil
      expect(index.inspect).to eq("#<Heapdiff::Leak::IdentityIndex 3 identities, 1 holder chain>")
    end

    it "reads back what it wrote: signatures decide what is known" do
      path = File.join(@dir, "heapdiff_baseline.json")
      entries = [{ "signature" => "0123456789ab", "title" => "A" }, { "signature" => "ba9876543210", "title" => "B" }]
      Heapdiff::Baseline.new(entries).write(path)
      baseline = Heapdiff::Baseline.load(path)
      expect(baseline.size).to eq(2)
      expect(baseline.known?("0123456789ab")).to be(true)
      expect(baseline.known?("000000000000")).to be(false)
      # Capitals (typed by hand) are the same signature.
      capitals = Heapdiff::Baseline.new([{ "signature" => "0123456789AB" }])
      expect([capitals.known?("0123456789ab"), capitals.known?("0123456789AB")]).to eq([true, true])
      expect(File.stat(path).mode & 0o777).to eq(0o644)
      expect(JSON.parse(File.read(path))["leaks"].map { |e| e["title"] }).to eq(%w[A B])
    end
  end
end
