# frozen_string_literal: true

require "tmpdir"
require_relative "../../examples/sidekiq_leak/run"

# A deploy's TERM during a long snapshot must not make Sidekiq run a finished job
# again. A real Sidekiq server (against its own redis-server on 127.0.0.1), started
# through the binstub with HEAPDIFF_EVERY_JOBS=1 and a shutdown timeout of 1 s, whose
# snapshots each take SLOW seconds (the app sleeps in Heapdiff.snapshot: longer than
# the timeout on any machine). TERM comes while the first snapshot runs; the server
# is then started again and drains the queue. The app wrote each job's jid once per
# run of it.
RSpec.describe "A real Sidekiq server that gets TERM during a long snapshot" do
  app = File.expand_path("../support/apps/sidekiq_once.rb", __dir__)
  jobs = 10
  slow = 4
  binstub_code = <<~RUBY
    #!/usr/bin/env ruby
    # frozen_string_literal: true

    require "heapdiff/auto"
    load Gem.bin_path("sidekiq", "sidekiq")
  RUBY

  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-sidekiq-once")
    runs = File.join(@tmp, "runs.txt")
    started = File.join(@tmp, "snapshot-started")
    binstub = File.join(@tmp, "sidekiq")
    File.write(binstub, binstub_code)
    env = { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => File.join(@tmp, "snapshots"), "HEAPDIFF_EVERY_JOBS" => "1",
            "RUNS_FILE" => runs, "SNAPSHOT_STARTED" => started }
    slow_env = env.merge("HEAPDIFF_SLOW_SNAPSHOT" => slow.to_s)
    SidekiqLeak::Server.new(@tmp, log: $stderr, binstub: binstub, app: app, timeout: 1, env: slow_env).run do |server|
      @jids = server.push("RunOnceJob", Array.new(jobs) { |i| [i] })
      server.wait_until(60, "the first snapshot to start") { File.exist?(started) }
      @snapshot_thread = File.read(started)
      @stopped = server.stop_sidekiq
      @first_log = File.read(server.sidekiq_log)
      @first_runs = File.readlines(runs).size
      server.env = env
      server.start_sidekiq
      last = server.push("RunOnceJob", [[jobs]]).first
      server.wait_until(60, "the last job") { File.exist?(runs) && File.read(runs).include?(last) }
      @jids << last
      @runs = File.readlines(runs).map { |l| l.split.first }
    end
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  it "ran each job exactly once, counted by jid" do
    expect(@stopped).to be_success
    expect(@runs.tally).to eq(@jids.to_h { |jid| [jid, 1] })
  end

  it "took the snapshot in the recorder's thread, outside the job, and asked for none once Sidekiq stopped" do
    expect(@snapshot_thread).to eq("heapdiff-recorder")
    # Job 2 runs before the stop only if the processor fetched it before TERM came
    # (it waited for the snapshot, until Sidekiq quieted).
    expect(@first_runs).to be_between(1, 2)
    skipped = @first_log.scan(/heapdiff: snapshot \(after job (\d+)\) skipped: Sidekiq is stopping/).flatten
    expect(skipped.map(&:to_i)).to eq((2..@first_runs).to_a)
    expect(@first_log.scan(/heapdiff: snapshot \S+ \(after job/)).to be_empty
  end
end
