# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# Objects that must die: finished jobs. Heapdiff.watch holds them weakly, and those a
# full GC leaves alive are listed by label, with the path that holds one of them.
RSpec.describe "Heapdiff.watch" do
  it "lists the watched objects a full GC leaves alive, by label, without keeping any alive" do
    out, status = Processes.ruby(<<~RUBY)
      require "heapdiff"
      require "json"
      class Job; end
      kept = []
      10.times { |i| job = Job.new; kept << job if i < 3; Heapdiff.watch(job) }
      5.times { Heapdiff.watch(+"request", "env") }
      [nil, 1, 2.5, :sym, true].each { |v| Heapdiff.watch(v) }
      errors = [Heapdiff.watch(Object.new, 1)] rescue errors = [$!.class.name]
      survivors = Heapdiff.survivors
      puts JSON.generate(kept: kept.size, errors: errors,
                         survivors: survivors.transform_values { |s| [s.count, s.watched, s.addresses.size] },
                         addresses_match: survivors["Job"].addresses.sort == kept.map { |o| ObjectSpace.dump(o)[/0x\\h+/] }.sort)
    RUBY
    expect(status).to be_success, out
    result = JSON.parse(out.lines.last)
    expect(result).to eq("kept" => 3, "errors" => ["TypeError"], "survivors" => { "Job" => [3, 10, 3] },
                         "addresses_match" => true)
  end

  it "caps the labels, so that watching cannot grow memory by itself" do
    out, status = Processes.ruby(<<~RUBY)
      require "heapdiff"
      kept = Array.new(#{Heapdiff::Watch::LABELS + 50}) { |i| Heapdiff.watch(Object.new, "label \#{i}") }
      s = Heapdiff.survivors(sample: 0)
      puts [s.size, s["(other)"].count].join(" ")
    RUBY
    expect(status).to be_success, out
    expect(out.lines.last).to eq("#{Heapdiff::Watch::LABELS + 1} 50\n")
  end

  it "heapdiff report DIR says why a survivor has no path (no referrer in the dump, or not in it at all), " \
     "and when only a machine stack holds it" do
    Dir.mktmpdir do |dir|
      # 0x2000 is held by an array from a root, 0x4000 by nothing in the dump, 0x9000 is
      # not in it, 0x5100 by an array of an anonymous class that only its instance
      # 0x6000's class edge reaches, 0x7000 by a thread's machine stack only (scanned
      # conservatively), 0x2000 by both.
      dump = <<~JSONL
        {"type":"ROOT", "root":"vm", "references":["0x1000", "0x3000", "0x6000"]}
        {"type":"ROOT", "root":"machine_context", "references":["0x7000", "0x2000"]}
        {"address":"0x7000", "type":"OBJECT", "class":"0x3000", "ivars":0, "memsize":40}
        {"address":"0x3000", "type":"CLASS", "name":"Job", "references":[], "memsize":100}
        {"address":"0x1000", "type":"ARRAY", "length":1, "references":["0x2000"], "memsize":40}
        {"address":"0x2000", "type":"OBJECT", "class":"0x3000", "ivars":0, "memsize":40}
        {"address":"0x4000", "type":"OBJECT", "class":"0x3000", "ivars":0, "memsize":40}
        {"address":"0x6000", "type":"OBJECT", "class":"0x5000", "ivars":0, "memsize":40}
        {"address":"0x5000", "type":"CLASS", "references":["0x1100"], "memsize":100}
        {"address":"0x1100", "type":"ARRAY", "length":1, "references":["0x5100"], "memsize":40}
        {"address":"0x5100", "type":"OBJECT", "class":"0x3000", "ivars":0, "memsize":40}
      JSONL
      survivors = { "Held" => %w[0x7000 0x2000], "Unheld" => ["0x4000"], "Gone" => ["0x9000"], "Classed" => ["0x5100"],
                    "Stacked" => ["0x7000"] }
                  .transform_values { |addresses| { "count" => 1, "watched" => 2, "addresses" => addresses } }
      [1, 2].each do |n|
        File.write(File.join(dir, "heap-000#{n}.json"), dump)
        File.write(File.join(dir, "heap-000#{n}.meta.json"),
                   JSON.generate("pid" => 1, "sequence" => n, "time" => "2026-12-01T05:00:0#{n}Z", "survivors" => survivors))
      end
      report = lambda do |*options|
        out, err, status = Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}",
                                          File.expand_path("../../exe/heapdiff", __dir__), "report", dir, *options)
        expect(status.exitstatus).to eq(0), err
        out[/^Watched objects still alive at heap-0002\.json.*\z/m].lines.drop(1)
      end
      unheld = "  Unheld: 1 of 2 watched — no path from a root in the dump: let go after the full GC before the dump, " \
               "or held by something the dump does not show\n"
      expect(report.call).to eq(
        ["  Held: 1 of 2 watched — ROOT vm → ARRAY 0x1000 → [0] OBJECT Job 0x2000\n", unheld,
         "  Gone: 1 of 2 watched — none of its addresses is in the dump\n",
         "  Classed: 1 of 2 watched — ROOT vm → OBJECT #<Class:0x5000> 0x6000 → CLASS #<Class:0x5000> 0x5000 → " \
         "ARRAY 0x1100 → [0] OBJECT Job 0x5100\n",
         "  Stacked: 1 of 2 watched — ROOT machine_context → OBJECT Job 0x7000 (held only from a thread's machine stack, " \
         "which the GC scans conservatively: maybe a stale slot that later calls overwrite, not a reference the code keeps)\n"]
      )
      # Without class edges, 0x5100 has no path, but it is in the heap's graph all the same.
      expect(report.call("--no-class-edges").values_at(1, 3)).to eq(
        [unheld, "  Classed: 1 of 2 watched — no path from a root without the object → class edges that --no-class-edges " \
                 "leaves out\n"]
      )
    end
  end

  it "reports the job instances a leaky Sidekiq job keeps alive, with their path, and not a clean job's" do
    Dir.mktmpdir do |dir|
      out, status = Processes.ruby(<<~RUBY, dir)
        require "sidekiq"
        require "heapdiff/sidekiq"
        LEAKED = []
        class LeakyJob
          include Sidekiq::Worker
          def perform(i) = LEAKED << self
        end
        class CleanJob
          include Sidekiq::Worker
          def perform(i) = "done \#{i}"
        end
        recorder = Heapdiff::Recorder.new(dir: ARGV[0], every: 3600, keep: 10)
        schedule = Heapdiff::Sidekiq::Schedule.new(recorder, every_jobs: 10_000).watch!(every: 1, threshold: 30, check_every: 40)
        middleware = Heapdiff::Sidekiq::Middleware.new(schedule)
        recorder.snapshot_now
        40.times do |i|
          [LeakyJob.new, CleanJob.new].each do |job|
            middleware.call(job, { "args" => [i] }, "default") { job.perform(i) }
          end
        end
        schedule.before_job # waits for the snapshot the survivors asked for
        recorder.snapshot_now
        recorder.stop
        puts LEAKED.size
      RUBY
      expect(status).to be_success, out
      leaked = Integer(out.lines.last)
      expect(leaked).to eq(40)
      snapshots = Heapdiff::Snapshot.list(dir)
      expect(snapshots.size).to eq(3) # before, the one the survivors asked for, after
      expect(snapshots[1].meta["survivors"]).to include("LeakyJob" => include("count" => leaked))

      out, err, status = Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__),
                                        "report", dir)
      expect(status.exitstatus).to eq(0), err
      section = out[/^Watched objects still alive at heap-0003\.json.*\z/m]
      # (LEAKED: the constant, from the snapshot's names sidecar)
      expect(section).to match(/^  LeakyJob: #{leaked} of #{leaked} watched — ROOT .* → LEAKED ARRAY 0x\h+ \(40 refs\) → \[\d+\] OBJECT LeakyJob 0x\h+$/)
      expect(section).not_to include("CleanJob")
    end
  end
end
