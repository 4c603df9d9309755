# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# Without allocation tracing, a new object in the slot of a dead one of its class looks
# like the old one: a trend cannot tell survivors from new objects there. It counts
# them as survivors and shows ranges that contain the truth. The program counts its own
# truth by object_id (unique for a process's lifetime since Ruby 2.7). All strings
# hold the same value, so that their contents cannot tell a reused slot either.
RSpec.describe "Trend ranges where identity is open" do
  let(:program) do
    <<~RUBY
      require "objspace"
      require "json"
      ObjectSpace.trace_object_allocations_start if ARGV[1] == "tracing"
      class Leaked < String; end
      out = ARGV[0]
      truth = { "counts" => [], "new" => [] }
      seen = []
      kept = []
      # Held at dump 0 and dropped after it: its slots are free for the leak.
      pool = Array.new(2000) { Leaked.new("same") }
      3.times do |k|
        if k.positive?
          # Freed and swept before the leak allocates: the leak can take their slots.
          pool.clear
          GC.start(full_mark: true, immediate_sweep: true)
          1000.times { kept << Leaked.new("same") }
        end
        GC.start(full_mark: true, immediate_sweep: true)
        live = ObjectSpace.each_object(Leaked).select { |o| o.instance_of?(Leaked) }.map(&:__id__)
        truth["counts"] << live.size
        truth["new"] << (live - seen).size
        seen = live
        File.open(File.join(out, "\#{k}.json"), "w") { |f| ObjectSpace.dump_all(output: f) }
      end
      puts JSON.generate(truth)
    RUBY
  end

  def record(dir, tracing:)
    out, status = Processes.ruby(program, dir, tracing ? "tracing" : "off")
    raise out unless status.success?

    [JSON.parse(out.lines.last), (0..2).map { |k| File.join(dir, "#{k}.json") }]
  end

  it "gives ranges of new objects that contain the truth, and says why, without tracing" do
    Dir.mktmpdir do |dir|
      truth, dumps = record(dir, tracing: false)
      expect(truth["new"].drop(1)).to eq([1000, 1000]) # the program's own count
      trend = Heapdiff.trend(dumps)
      site = trend.find { |s| s.class_name == "Leaked" }
      expect(site.counts).to eq(truth["counts"])
      site.new_count_ranges.zip(truth["new"]).drop(1).each do |range, truly_new|
        expect(range).to cover(truly_new)
      end
      # Slots were reused: without the ranges the new counts would be too low.
      expect(site).to be_estimated
      expect(site.new_counts.drop(1).sum).to be < 2000
      expect(site.to_h).to include(estimated: true, uncertain: site.uncertain)
      expect(site.to_s).to match(/\d+%–\d+% \(an estimate: see the warnings\) of each snapshot's objects/)
      expect(trend.warnings).to include(a_string_matching(/reused slot .* Tracing was off/))
    end
  end

  it "is exact with tracing on, and warns of nothing" do
    Dir.mktmpdir do |dir|
      truth, dumps = record(dir, tracing: true)
      site = Heapdiff.trend(dumps).find { |s| s.class_name == "Leaked" && s.line }
      expect(site.new_counts.drop(1)).to eq(truth["new"].drop(1))
      expect(site).not_to be_estimated
      expect(site.uncertain).to all(eq(0))
      expect(Heapdiff.trend(dumps).warnings.grep(/reused slot|tracing/i)).to be_empty
    end
  end
end
