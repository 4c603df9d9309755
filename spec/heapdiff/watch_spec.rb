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
      expect(section).to match(/^  LeakyJob: #{leaked} of #{leaked} watched — ROOT .* → ARRAY 0x\h+ \(40 refs\) → \[\d+\] OBJECT LeakyJob 0x\h+$/)
      expect(section).not_to include("CleanJob")
    end
  end
end
