# frozen_string_literal: true

require "fileutils"
require "tmpdir"
require_relative "../support/fixtures"

# The verdict rules of Verification and the grouping of Siblings, on leaks given as
# LeakGrowth records (verify_spec.rb and compare_spec.rb run them on real processes).
RSpec.describe Heapdiff::Verification do
  # A leak that grew by +growth+ objects over +work+ jobs in +hours+.
  def leak(signature, growth, work: 100, hours: 1.0)
    Heapdiff::LeakGrowth.new(signature: signature, title: "leak #{signature}", sites: ["STRING app.rb:1"],
                             counts: [0, growth / 2, growth], memsize: growth * 40, hours: hours, work: work,
                             intervals: 2)
  end

  def recording(*leaks, work: 100, hours: 1.0)
    { leaks: leaks, units: Heapdiff::LeakGrowth.units(hours: hours, work: work), warnings: [], hours: hours, work: work,
      intervals: 2 }
  end

  # BEFORE leaks 1.0 object per job (100 over 100); AFTER runs 200 jobs.
  def status_after(growth)
    verification = described_class.new(recording(leak("a" * 12, 100)), recording(leak("a" * 12, growth, work: 200), work: 200))
    verification.first.status
  end

  it "calls a rate of at most a tenth fixed, at most 80% reduced, above 125% worse, unchanged between" do
    expect([0, 20, 22, 160, 162, 250, 252].map { |g| status_after(g) })
      .to eq(%i[fixed fixed reduced reduced unchanged unchanged worse])
  end

  it "says by how much a leak was reduced" do
    verification = described_class.new(recording(leak("a" * 12, 100)), recording(leak("a" * 12, 100, work: 200), work: 200))
    row = verification.first
    expect(row).to have_attributes(status: :reduced, ratio: 0.5, reduction: 0.5, before_rate: 1.0, after_rate: 0.5)
    expect(row.to_s).to eq("reduced by 50%  aaaaaaaaaaaa  +1.0 → +0.500 per job or request  leak aaaaaaaaaaaa")
  end

  it "calls a leak gone from AFTER fixed, one only in AFTER new, and fails only for new or worse ones" do
    verification = described_class.new(recording(leak("a" * 12, 100)), recording(leak("b" * 12, 5)))
    expect(verification.map { |row| [row.signature[0], row.status] }).to eq([["a", :fixed], ["b", :new]])
    expect(verification).not_to be_passed
    expect(verification["b" * 12].ratio).to be_nil
    expect(described_class.new(recording(leak("a" * 12, 100)), recording)).to be_passed
  end

  it "counts a leak of one recording at its sites in the other, where they need not be a leak" do
    # 60 objects over 100 jobs at the leak's site, without a leak there.
    sites_only = recording.merge(sites: { "STRING app.rb:1" => [5, 35, 65] })
    row = described_class.new(recording(leak("a" * 12, 100)), sites_only).first
    expect(row).to have_attributes(status: :reduced, before_rate: 1.0, after_rate: 0.6)
    expect(row.after).to have_attributes(at_sites: true, counts: [5, 35, 65])
    row = described_class.new(sites_only, recording(leak("a" * 12, 120))).first
    expect(row).to have_attributes(status: :worse, before_rate: 0.6, after_rate: 1.2)
    row = described_class.new(recording(leak("a" * 12, 100)), recording.merge(sites: {})).first
    expect(row).to have_attributes(status: :fixed, after: nil)
  end

  it "rates per unit of work when both recordings count it, else per hour, else per snapshot with a warning" do
    with_work = recording(leak("a" * 12, 100))
    timed_only = recording(leak("a" * 12, 100), work: nil)
    neither = recording(leak("a" * 12, 100), work: nil, hours: nil)
    expect(described_class.new(with_work, with_work).unit).to eq(:unit)
    expect(described_class.new(with_work, timed_only).unit).to eq(:hour)
    snapshot = described_class.new(with_work, neither)
    expect(snapshot.unit).to eq(:snapshot)
    expect(snapshot.first.before_rate).to eq(50.0)
    expect(snapshot.warnings.last).to start_with("the recordings do not both count work or span time")
  end

  it "warns of rates made of estimated counts, naming the leak" do
    estimated = leak("e" * 12, 100).tap { |l| l.estimated = true }
    verification = described_class.new(recording(estimated, leak("a" * 12, 10)), recording)
    expected = "the rates of #{"e" * 12} are estimates: a site they hold part of is counted in each snapshot by " \
               "their share of it at the last one"
    expect(verification.warnings).to eq([expected])
  end

  it "calls a leak's counts estimates, without naming another leak, when no root reaches part of its site" do
    Dir.mktmpdir do |dir|
      # One holder, one site: 3 strings, then 5 held and a sixth that nothing references.
      klass = %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n)
      root = %({"type":"ROOT", "root":"vm", "references":["0x10"]}\n)
      holder = lambda do |refs|
        %({"address":"0x10", "type":"ARRAY", "class":"0x30", "length":#{refs.size}, "references":#{refs.to_json}, ) +
          %("file":"app.rb", "line":1, "generation":1, "memsize":40}\n)
      end
      string = lambda do |address, generation|
        %({"address":"#{address}", "type":"STRING", "class":"0x30", "bytesize":2, "value":"s", "file":"app.rb", ) +
          %("line":7, "generation":#{generation}, "memsize":40}\n)
      end
      first = %w[0x108 0x110 0x118]
      held = first + %w[0x120 0x128]
      paths = [[root, holder.call([]), klass],
               [root, holder.call(first), *first.map { |a| string.call(a, 5) }, klass],
               [root, holder.call(held), *held.map { |a| string.call(a, 5) }, string.call("0x130", 9), klass]]
              .each_with_index.map { |lines, n| File.join(dir, "#{n}.json").tap { |path| File.write(path, lines.join) } }
      leaks = Heapdiff.trend(paths).leaks
      expect(leaks.map { |l| [l.count, l.estimated?] }).to eq([[5, true]])
      warnings = Heapdiff.verify(paths, paths).warnings
      expect(warnings.grep(/estimates/).size).to eq(1)
      expect(warnings.join("\n")).not_to include("another leak")
    end
  end

  # A leak held by +chain+ at +sites+ (its signature made up: another line is another
  # signature, as Leak#signature hashes the sites' file:line).
  def held(signature, chain, sites, growth)
    Heapdiff::LeakGrowth.new(signature: signature, title: "leak #{signature}", holder_chain: chain, sites: sites,
                             counts: [0, growth / 2, growth], memsize: 0, hours: 1.0, work: 100, intervals: 2)
  end

  it "matches a leak whose lines moved by its holder chain and a site in the same file, not another holder's" do
    chain = ["Store::ENTRIES (Array)", "MODULE Store", "ROOT vm"]
    before = recording(held("a" * 12, chain, ["STRING app/store.rb:16"], 100),
                       held("c" * 12, ["Store::AUDIT (Array)", "MODULE Store", "ROOT vm"], ["STRING app/store.rb:30"], 50))
    after = recording(held("b" * 12, chain, ["STRING app/store.rb:19"], 100),
                      held("d" * 12, ["Store::OTHER (Array)", "MODULE Store", "ROOT vm"], ["STRING app/store.rb:33"], 50))
    verification = described_class.new(before, after)
    expect(verification.map { |row| [row.signature, row.status] }).to eq([["a" * 12, :unchanged], ["c" * 12, :fixed], ["d" * 12, :new]])
    # Found by AFTER's signature too (`heapdiff verify --fixed` takes either).
    expect(verification["b" * 12]).to equal(verification["a" * 12])
    expect(verification["a" * 12].signatures).to eq(["a" * 12, "b" * 12])
    # The same holder with a site in another file only is another leak.
    elsewhere = recording(held("e" * 12, chain, ["STRING app/other.rb:16"], 100))
    expect(described_class.new(recording(held("a" * 12, chain, ["STRING app/store.rb:16"], 100)), elsewhere)
      .map(&:status)).to eq(%i[fixed new])
  end

  it "gives a table, JSON and inspect" do
    verification = described_class.new(recording(leak("a" * 12, 100)), recording(leak("a" * 12, 8)))
    expect(verification.to_s.lines.first).to eq("Leaks before → after, objects per job or request: 1 fixed\n")
    expect(JSON.parse(verification.to_json)).to include("unit" => "unit", "passed" => true,
                                                        "counts" => include("fixed" => 1, "new" => 0))
    expect(verification.inspect).to eq("#<Heapdiff::Verification unit=unit fixed=1 reduced=0 unchanged=0 worse=0 new=0>")
  end
end

RSpec.describe Heapdiff::Siblings do
  def sibling(pid, leaks, sites: nil)
    identity = Heapdiff::ProcessIdentity.new(hostname: "web-1", pid: pid, started_at: nil)
    leaks = leaks.map do |signature, growth|
      Heapdiff::LeakGrowth.new(signature: signature, title: "leak #{signature}", sites: ["STRING #{signature}.rb:1"],
                               counts: [1, 1 + growth], memsize: 0, hours: nil, work: nil, intervals: 1)
    end
    Heapdiff::Siblings::Sibling.new(identity: identity, snapshots: %w[a b], leaks: leaks, sites: sites, intervals: 1)
  end

  it "says why it found too few processes: snapshots without a sidecar are left out" do
    Dir.mktmpdir do |dir|
      3.times { |n| FileUtils.cp(Fixtures.leak3("3.3", n), File.join(dir, format("heap-%04d.json.gz", n + 1))) }
      expect { described_class.build(dir) }.to raise_error(
        Heapdiff::TrendError,
        "heapdiff: comparing needs at least two processes with two snapshots or more each, found 0 in #{dir} " \
        "(3 snapshots without a sidecar naming their process left out)"
      )
    end
  end

  it "tells the leaks every process has from those only some have, with each process's count" do
    siblings = described_class.new([sibling(1, { "s" * 12 => 10, "o" * 12 => 30 }), sibling(2, { "s" * 12 => 20 })])
    expect(siblings.shared.map(&:signature)).to eq(["s" * 12])
    expect(siblings.some.map { |row| [row.signature, row.counts] }).to eq([["o" * 12, [31, nil]]])
    expect(siblings["s" * 12].counts).to eq([11, 21])
    expect(siblings.to_s).to include("  #{"o" * 12}  leak #{"o" * 12} (only in pid 1)\n    pid 1: 31 (+30)  pid 2: -")
  end

  it "takes one leak under the same holder with a site in the same file, at another line, as the same leak" do
    chain = ["Store::ENTRIES (Array)", "ROOT vm"]
    growth = lambda do |signature, line|
      Heapdiff::LeakGrowth.new(signature: signature, title: "leak #{signature}", holder_chain: chain,
                               sites: ["STRING app.rb:#{line}"], counts: [1, 11], memsize: 0, hours: nil, work: nil,
                               intervals: 1)
    end
    identity = ->(pid) { Heapdiff::ProcessIdentity.new(hostname: "web-#{pid}", pid: pid, started_at: nil) }
    processes = [[1, "a" * 12, 10], [2, "b" * 12, 12]].map do |pid, signature, line|
      Heapdiff::Siblings::Sibling.new(identity: identity.call(pid), snapshots: %w[a b], leaks: [growth.call(signature, line)],
                                      sites: nil, intervals: 1)
    end
    siblings = described_class.new(processes)
    expect(siblings.shared.map(&:counts)).to eq([[11, 11]])
    expect(siblings["b" * 12]).to equal(siblings.shared.first)
    expect(siblings.some).to be_empty
  end

  it "counts a leak in a process where it is no leak by the trend's rule when its sites grew there" do
    grew = { "STRING #{"o" * 12}.rb:1" => [4, 9] }
    siblings = described_class.new([sibling(1, { "o" * 12 => 30 }), sibling(2, {}, sites: grew)])
    expect(siblings["o" * 12]).to be_shared
    expect(siblings["o" * 12].counts).to eq([31, 9])
    expect(siblings.to_s).to include("    pid 1: 31 (+30)  pid 2: 9 (+5, sites)")
    expect(siblings.warnings.last).to start_with("counts marked \"sites\" are of a process where")
    flat = described_class.new([sibling(1, { "o" * 12 => 30 }), sibling(2, {}, sites: { "STRING #{"o" * 12}.rb:1" => [4, 4] })])
    expect(flat["o" * 12].counts).to eq([31, nil])
  end
end
