# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "support/fixtures"
require_relative "support/processes"

# Only Heapdiff::Error (and its subclasses), ArgumentError and TypeError may cross the
# public API, whatever a caller passes. Every public method gets the same hostile
# arguments; each call runs in a process of its own (forked from a child that loaded
# the heaps once), so that a crash, an abort or a hang is seen as such.
RSpec.describe "Hostile arguments to the public API" do
  sweep = <<~'RUBY'
    require "heapdiff"
    require "heapdiff/cli"
    require "heapdiff/leak_check"
    require "heapdiff/rack"
    require "json"
    require "logger"
    require "pathname"
    require "stringio"
    require ARGV.shift # spec/support/processes.rb
    dir, *dumps = ARGV
    Dir.chdir(dir) # what a hostile path makes relative lands here
    heap = Heapdiff.load(dumps[1])
    report = Heapdiff.diff(*dumps)
    group = report.first
    object = heap.first
    quiet = Logger.new(nil)
    out = File.join(dir, "out.json")

    hostile = {
      "nil" => nil, "true" => true, "-1" => -1, "0" => 0, "2**64" => 2**64, "-2**70" => -2**70,
      "Infinity" => Float::INFINITY, "NaN" => Float::NAN, "1e308" => 1e308, "0.5" => 0.5,
      "empty" => "", "binary" => "\xff\xfe".b, "NUL" => "a\0b", "100 KB" => "x" * 100_000,
      "symbol" => :location, "array" => [], "hash" => {}, "object" => Object.new,
      "BasicObject" => BasicObject.new, "directory" => dir, "no such file" => Pathname("/nonexistent/x.json"),
      "long address" => "0x#{"f" * 40}", "negative address" => "-0x10"
    }
    calls = {
      "Heapdiff.load" => ->(a) { Heapdiff.load(a) },
      "Heapdiff.diff(a, b)" => ->(a) { Heapdiff.diff(a, dumps[1]) },
      "Heapdiff.diff(include_noise:)" => ->(a) { Heapdiff.diff(dumps[0], dumps[1], include_noise: a) },
      "Heapdiff.trend" => ->(a) { Heapdiff.trend(a) },
      "Heapdiff.verify(before)" => ->(a) { Heapdiff.verify(a, dumps) },
      "Heapdiff.verify(after)" => ->(a) { Heapdiff.verify(dumps, a) },
      "Heapdiff.compare" => ->(a) { Heapdiff.compare(a) },
      "Heapdiff.compare(last:)" => ->(a) { Heapdiff.compare(dir, last: a) },
      "Heapdiff.redact(input)" => ->(a) { Heapdiff.redact(a, out) },
      "Heapdiff.redact(output)" => ->(a) { Heapdiff.redact(dumps[0], a) },
      "Heapdiff.redact(gzip:)" => ->(a) { Heapdiff.redact(dumps[0], out, gzip: a) },
      "Heapdiff.snapshot(path)" => ->(a) { Heapdiff.snapshot(a) },
      "Heapdiff.snapshot(dir:)" => ->(a) { Heapdiff.snapshot(dir: a) },
      "Snapshot.list" => ->(a) { Heapdiff::Snapshot.list(a) },
      "Snapshot.read" => ->(a) { Heapdiff::Snapshot.read(a) },
      "Heap#at" => ->(a) { heap.at(a) },
      "Heap#object" => ->(a) { heap.object(a) },
      "Heap#path_to_root" => ->(a) { heap.path_to_root(a) },
      "Heap#path_to_root(class_edges:)" => ->(a) { heap.path_to_root(object, class_edges: a) },
      "Heap#paths_to_root(limit:)" => ->(a) { heap.paths_to_root(object, limit: a) },
      "Heap#retainers" => ->(a) { heap.retainers(a) },
      "Heap#referents" => ->(a) { heap.referents(a) },
      "Heap#dominator" => ->(a) { heap.dominator(a) },
      "Heap#retained_size" => ->(a) { heap.retained_size(a) },
      "Report#to_s(top:)" => ->(a) { report.to_s(top: a) },
      "Report#suspects(top:)" => ->(a) { report.suspects(top: a) },
      "Report#suspect" => ->(a) { report.suspect(a) },
      "Leak.normalize_path" => ->(a) { Heapdiff::Leak.normalize_path(a) },
      "Baseline.load" => ->(a) { Heapdiff::Baseline.load(a) },
      "Baseline.write(path)" => ->(a) { Heapdiff::Baseline.write(a, report.leaks) },
      "Baseline#known?" => ->(a) { Heapdiff::Baseline.new.known?(a) },
      "Baseline.new" => ->(a) { Heapdiff::Baseline.new(a) },
      "LeakCheck.new(baseline:)" => ->(a) { Heapdiff::LeakCheck.new(baseline: a) },
      "Baseline.new([a])" => ->(a) { Heapdiff::Baseline.new([a]) },
      "Baseline.new(path:)" => ->(a) { Heapdiff::Baseline.new([], path: a).inspect },
      "Baseline.write(leaks)" => ->(a) { Heapdiff::Baseline.write(out, a) },
      "Baseline.write([a])" => ->(a) { Heapdiff::Baseline.write(out, [a]) },
      "Baseline#new_leaks" => ->(a) { Heapdiff::Baseline.new.new_leaks(a) },
      "Baseline#missing" => ->(a) { Heapdiff::Baseline.new.missing(a) },
      "Baseline#entry_for" => ->(a) { Heapdiff::Baseline.new.entry_for(a) },
      "Report#leaks(class_edges:)" => ->(a) { report.leaks(class_edges: a) },
      "Leak.percent" => ->(a) { Heapdiff::Leak.percent(a) },
      "Leak::Identity#same?" => ->(a) { report.leaks.first.identity.same?(a) },
      "Leak::Identity.without_lines" => ->(a) { Heapdiff::Leak::Identity.without_lines(a) },
      "LeakGrowth.of" => ->(a) { Heapdiff::LeakGrowth.of(a) },
      "LeakGrowth.site_counts" => ->(a) { Heapdiff::LeakGrowth.site_counts(a) },
      "Group#sample" => ->(a) { group.sample(a) },
      "Summary#top(key)" => ->(a) { Heapdiff::Summary.new(heap).top(a) },
      "Summary#top(limit:)" => ->(a) { Heapdiff::Summary.new(heap).top(:type, limit: a) },
      "Recorder.new(dir:)" => ->(a) { Heapdiff::Recorder.new(dir: a, logger: quiet) },
      "Recorder.new(every:)" => ->(a) { Heapdiff::Recorder.new(dir: dir, every: a, logger: quiet) },
      "Recorder.new(keep:)" => ->(a) { Heapdiff::Recorder.new(dir: dir, keep: a, logger: quiet) },
      "Recorder.new(signal:)" => ->(a) { Heapdiff::Recorder.new(dir: dir, signal: a, logger: quiet) },
      "Work.count(kind)" => ->(a) { Heapdiff::Work.count(a, "label") },
      "Work.count(label)" => ->(a) { Heapdiff::Work.count(:jobs, a) },
      "Work.add" => ->(a) { Heapdiff::Work.add(a) },
      "Work.redact" => ->(a) { Heapdiff::Work.redact(a) },
      "Work.redact(requests)" => ->(a) { Heapdiff::Work.redact("requests" => a) },
      "Rack.route" => ->(a) { Heapdiff::Rack.route(a) },
      "Rack.collapse" => ->(a) { Heapdiff::Rack.collapse(a) },
      "Rack#call" => ->(a) { Heapdiff::Rack.new(->(_env) { [200, {}, []] }).call(a) },
      "Rack.new(dir:)" => ->(a) { Heapdiff::Rack.new(->(_env) {}, dir: a, logger: quiet) },
      "WorkFit.fit(growth)" => ->(a) { Heapdiff::Trend::WorkFit.fit(a, [nil]) },
      "WorkFit.fit(work)" => ->(a) { Heapdiff::Trend::WorkFit.fit([1], a) },
      "WorkFit.fit(site_label:)" => ->(a) { Heapdiff::Trend::WorkFit.fit([1], [nil], site_label: a) },
      "WorkFit.normalize" => ->(a) { Heapdiff::Trend::WorkFit.normalize(a) },
      "CLI#run" => ->(a) { Heapdiff::CLI.new(out: StringIO.new, err: StringIO.new).run(["diff", a, dumps[1]]) },
      "CLI#run verify" => ->(a) { Heapdiff::CLI.new(out: StringIO.new, err: StringIO.new).run(["verify", *dumps, "--", a]) },
      "CLI#run compare" => ->(a) { Heapdiff::CLI.new(out: StringIO.new, err: StringIO.new).run(["compare", a]) }
    }
    allowed = [Heapdiff::Error, ArgumentError, TypeError]
    calls.each do |name, call|
      hostile.each do |label, argument|
        reader, writer = IO.pipe
        pid = fork do
          reader.close
          outcome = begin
            call.call(argument)
            "ok"
          rescue Exception => e # rubocop:disable Lint/RescueException -- what crossed the API is the question
            allowed.any? { |c| e.is_a?(c) } ? "ok" : "#{e.class}: #{e.message[0, 160]}"
          end
          writer.write(outcome)
          exit!(0)
        end
        writer.close
        status = Processes.wait_with_deadline(pid, 60)
        outcome = reader.read
        reader.close
        outcome = "hung (killed after 60 s)" unless status
        outcome = "died: #{status.inspect}" if status && outcome.empty?
        puts JSON.generate([name, label, outcome])
      end
    end
  RUBY

  it "lets only Heapdiff::Error, ArgumentError and TypeError out, each call in a child process" do
    Dir.mktmpdir("heapdiff-hostile") do |dir|
      dumps = (0..2).map { |n| Fixtures.leak3("3.3", n) }
      out, status = Processes.ruby(sweep, File.expand_path("support/processes.rb", __dir__), dir, *dumps)
      expect(status.success?).to be(true), out
      results = out.lines.filter_map { |line| JSON.parse(line) if line.start_with?("[") }
      expect(results.size).to be > 600
      expect(results.reject { |_, _, outcome| outcome == "ok" }).to eq([])
    end
  end
end
