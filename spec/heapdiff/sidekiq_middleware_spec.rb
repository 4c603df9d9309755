# frozen_string_literal: true

require "heapdiff/sidekiq"
require "logger"
require "stringio"
require_relative "../support/processes"

# The middleware's bookkeeping; sidekiq_server_spec.rb runs it in a real server.
RSpec.describe Heapdiff::Sidekiq do
  # Stands in for a Recorder: remembers why it was asked for snapshots.
  let(:recorder) do
    Class.new do
      attr_reader :reasons, :log

      def initialize
        @reasons = []
        @log = StringIO.new
      end

      def logger
        Logger.new(@log)
      end

      def dir
        "/tmp/snapshots"
      end

      def keep
        3
      end

      def snapshot_soon(reason:)
        @reasons << reason
        Thread::Queue.new
      end

      attr_accessor :fork, :taken_here

      alias_method :fork?, :fork

      def snapshot_now(reason:)
        (@taken_here ||= []) << [reason, Thread.current]
      end
    end.new
  end

  # The server chain, as a server's configuration block sees it.
  def server_chain
    chain = nil
    Sidekiq.configure_server { |config| chain = config.server_middleware }
    chain
  end

  describe Heapdiff::Sidekiq::Schedule do
    it "asks for a snapshot after every N jobs" do
      schedule = described_class.new(recorder, every_jobs: 3)
      7.times { schedule.job_done }
      expect(recorder.reasons).to eq(["after job 3", "after job 6"])
      expect(schedule.jobs).to eq(7)
    end

    it "asks for a snapshot after the first job that ends T seconds after the last one" do
      schedule = described_class.new(recorder, every_seconds: 0.05)
      schedule.job_done
      sleep 0.06
      schedule.job_done
      schedule.job_done
      expect(recorder.reasons).to eq(["after 0.05 s of jobs"])
    end

    it "needs at least one of every_jobs: and every_seconds:, and checks them" do
      expect { described_class.new(recorder) }.to raise_error(ArgumentError, /every_jobs:, every_seconds:/)
      expect { described_class.new(recorder, every_jobs: 0) }.to raise_error(ArgumentError, /every_jobs:/)
      expect { described_class.new(recorder, every_seconds: -1) }.to raise_error(ArgumentError, /every_seconds:/)
    end
  end

  describe Heapdiff::Sidekiq::Middleware do
    let(:schedule) { Heapdiff::Sidekiq::Schedule.new(recorder, every_jobs: 1) }
    let(:middleware) { described_class.new(schedule) }

    it "counts a job once it has run, and one that raised too" do
      schedule.before_job # no snapshot asked for yet: does not wait
      middleware.call(nil, {}, "default") { :done }
      schedule.stopping!
      expect { middleware.call(nil, {}, "default") { raise "boom" } }.to raise_error(RuntimeError, "boom")
      expect(recorder.reasons).to eq(["after job 1"])
      expect(schedule.jobs).to eq(2)
      expect(recorder.log.string).to include("heapdiff: snapshot (after job 2) skipped: Sidekiq is stopping")
    end

    it "with fork: true forks from the thread that ran the job, and nothing waits" do
      recorder.fork = true
      middleware.call(nil, {}, "default") { :done }
      expect(recorder.taken_here).to eq([["after job 1", Thread.current]])
      expect(recorder.reasons).to be_empty
      expect(schedule.instance_variable_get(:@capture)).to be_nil
    end

    it "starts the next job only once the snapshot the last one asked for has captured the heap" do
      middleware.call(nil, {}, "default") { :done }
      ran = Queue.new
      job = Thread.new { middleware.call(nil, {}, "default") { ran << :ran } }
      Processes.wait_for("the job to wait") { job.status == "sleep" }
      expect(ran).to be_empty
      schedule.instance_variable_get(:@capture).close # what the recorder's thread does
      job.join
      expect(ran.size).to eq(1)
    end

    it "lets jobs go on without waiting once Sidekiq is quieting" do
      middleware.call(nil, {}, "default") { :done }
      job = Thread.new { middleware.call(nil, {}, "default") { :done } }
      Processes.wait_for("the job to wait") { job.status == "sleep" }
      schedule.stopping!
      expect(job.join(5)).to be(job)
    end

    it "does not count a job that Sidekiq interrupts to shut down" do
      expect { middleware.call(nil, {}, "default") { raise Sidekiq::Shutdown } }.to raise_error(Sidekiq::Shutdown)
      expect(schedule.jobs).to eq(0)
    end

    it "counts each finished job under its class in Heapdiff::Work (ActiveJob's under the class it wraps)" do
      Heapdiff::Work.reset
      schedule.stopping! # no snapshots: no job waits for one
      middleware.call(nil, { "class" => "WidgetJob" }, "default") { :done }
      expect { middleware.call(nil, { "class" => "WidgetJob" }, "default") { raise "boom" } }.to raise_error("boom")
      wrapper = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
      middleware.call(nil, { "class" => wrapper, "wrapped" => "MailerJob" }, "default") { :done }
      middleware.call(nil, { "class" => Class.new.tap { |c| stub_const("StoredAsClass", c) } }, "default") { :done }
      expect { middleware.call(nil, { "class" => "WidgetJob" }, "default") { raise Sidekiq::Shutdown } }
        .to raise_error(Sidekiq::Shutdown)
      expect(Heapdiff::Work.take["jobs"]).to eq("WidgetJob" => 2, "MailerJob" => 1, "StoredAsClass" => 1)
    ensure
      Heapdiff::Work.reset
    end
  end

  describe ".install" do
    # A Sidekiq server is a process that has loaded Sidekiq::CLI.
    before { allow(Sidekiq).to receive(:server?).and_return(true) }
    after { described_class.uninstall }

    it "puts the middleware first in Sidekiq's server chain, once" do
      described_class.install(every_jobs: 10, recorder: recorder)
      schedule = described_class.install(every_jobs: 5, recorder: recorder)
      entries = server_chain.entries.select { |e| e.klass == Heapdiff::Sidekiq::Middleware }
      expect(entries.size).to eq(1)
      expect(server_chain.entries.first.klass).to eq(Heapdiff::Sidekiq::Middleware)
      expect(schedule.every_jobs).to eq(5)
      expect(schedule.recorder).to equal(recorder)
      expect(recorder.log.string).to include("heapdiff: Sidekiq jobs will take snapshots in /tmp/snapshots, " \
                                             "every 5 jobs, keeping 3")
    end

    it "makes a Recorder from the options when given none" do
      schedule = described_class.install(every_seconds: 60, dir: "/tmp/x", keep: 4, logger: Logger.new(nil))
      expect(schedule.recorder).to be_a(Heapdiff::Recorder)
      expect([schedule.recorder.dir, schedule.recorder.keep]).to eq(["/tmp/x", 4])
      expect(schedule.recorder).not_to be_running
      expect(schedule.recorder.every).to be_nil
      expect(schedule.recorder).not_to be_redact
      expect(described_class.install(every_jobs: 5, dir: "/tmp/x", redact: true, logger: Logger.new(nil)).recorder)
        .to be_redact
    end

    it "puts it in the chain of every capsule, also one that copied the chain before (Sidekiq 7 and later)" do
      skip "Sidekiq #{Sidekiq::VERSION} has no capsules" unless Sidekiq.respond_to?(:default_configuration)

      require "sidekiq/capsule" # loaded by the CLI in a server
      config = Sidekiq.default_configuration
      capsule = config.capsule("heapdiff-spec") { |c| c.queues = %w[heapdiff-spec] }
      capsule.server_middleware # copies the configuration's chain now, without heapdiff's
      described_class.install(every_jobs: 5, recorder: recorder)
      expect(capsule.server_middleware.entries.first.klass).to eq(Heapdiff::Sidekiq::Middleware)
      expect(config.capsule("heapdiff-later").server_middleware.entries.first.klass).to eq(Heapdiff::Sidekiq::Middleware)
    ensure
      config&.capsules&.delete("heapdiff-spec")
      config&.capsules&.delete("heapdiff-later")
    end

    it "installs nothing outside a Sidekiq server" do
      allow(Sidekiq).to receive(:server?).and_return(false)
      described_class.install(every_jobs: 5, recorder: recorder)
      allow(Sidekiq).to receive(:server?).and_return(true)
      expect(server_chain.entries.map(&:klass)).not_to include(Heapdiff::Sidekiq::Middleware)
    end
  end
end
