# frozen_string_literal: true

require "tmpdir"
require_relative "../support/processes"
require_relative "../support/scenario"

# The generator is the test: a fixed batch of seeded programs, each combining kinds of
# leak with the conditions that break heap tools, each counting its own truth (see
# spec/support/scenario.rb). For every scenario and every kind, heapdiff's count is
# the truth, or an estimate whose bounds contain it; a reachable object is never
# called unreachable; a warning never names a cause that did not happen.
#
# SCENARIOS=N runs the first N seeds instead of the batch (for a longer hunt).
RSpec.describe "Generated leak scenarios" do
  seeds = (1..Integer(ENV.fetch("SCENARIOS", "40"))).to_a

  before(:all) { @dir = Dir.mktmpdir("heapdiff-scenarios") }
  after(:all) { FileUtils.rm_rf(@dir) }

  # Every condition and every kind occurs in the batch (the batch is fixed, so this
  # checks the generator, not heapdiff).
  it "covers every kind and every condition" do
    batch = seeds.map { |seed| Scenario.new(seed) }
    expect(batch.flat_map { |s| s.kinds.map(&:name) }.uniq).to match_array(Scenario::KINDS.keys)
    expect(batch.map(&:tracing).uniq).to contain_exactly(true, false)
    expect(batch.count { |s| s.full_gc.include?(false) }).to be >= 5
    expect(batch.count(&:compact_before)).to be >= 5
    expect(batch.count(&:reuse_slots)).to be >= 5
    expect(batch.count(&:same_values)).to be >= 3
    expect(batch.count(&:forked_worker)).to be >= 2
  end

  seeds.each do |seed|
    scenario = Scenario.new(seed)

    it scenario.to_s do
      dir = File.join(@dir, seed.to_s)
      Dir.mkdir(dir)
      truth = scenario.run(dir, lib: Processes::LIB)
      report = Heapdiff.diff(*truth["dumps"])

      truth["kinds"].each do |class_name, held|
        groups = report.select { |g| g.class_name == class_name }
        low = groups.sum { |g| g.count_range.min }
        high = groups.sum { |g| g.count_range.max }
        context = "#{class_name}: the program holds #{held} (generator expected #{truth["expected"][class_name]}); " \
                  "heapdiff says #{low == high ? low : "#{low}–#{high}"}; warnings: #{report.warnings.inspect}"
        if groups.any?(&:estimated?)
          expect(held).to be_between(low, high), context
        else
          expect(low).to eq(held), context
        end
        groups.each do |group|
          expect(report.suspect(group).to_s).not_to match(/not reachable/i), "#{context}; #{report.suspect(group)}"
        end
      end

      if scenario.forked_worker
        # The worker's snapshots share the directory: the master's are told apart by
        # their sidecars, and a mix is refused.
        all = Heapdiff::Snapshot.list(dir)
        expect(Heapdiff::Snapshot.processes(all).size).to eq(2)
        expect(Heapdiff::Snapshot.list(dir, process: truth["pid"]).map(&:path)).to eq(truth["dumps"])
        worker, master = all.partition { |s| s.process.pid != truth["pid"] }
        expect { Heapdiff.diff(*worker.first(2), master.last) }.to raise_error(Heapdiff::MixedProcessesError)
      end

      warnings = report.warnings.join("\n")
      # Stated as a fact only when it happened; "compacted, or …" names no cause.
      stated_compaction = /the heap was compacted between the two dumps \(GC\.compact or GC\.auto_compact\)\./
      expect(warnings).not_to match(stated_compaction) unless [1, 2].include?(scenario.compact_before)
      expect(warnings).not_to match(/without a full GC/i) unless scenario.full_gc.include?(false)
      expect(warnings).not_to match(/tracing (was|is) off|turn .*tracing on/i) if scenario.tracing
      FileUtils.rm_rf(dir)
    end
  end
end
