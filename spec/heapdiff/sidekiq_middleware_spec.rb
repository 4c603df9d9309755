# frozen_string_literal: true

require "heapdiff/sidekiq"
require "logger"
require "stringio"
require_relative "../support/sidekiq_middleware"

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

      def snapshot_now(reason:)
        @reasons << reason
      end
    end.new
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
      middleware.call(nil, {}, "default") { :done }
      expect { middleware.call(nil, {}, "default") { raise "boom" } }.to raise_error(RuntimeError, "boom")
      expect(recorder.reasons).to eq(["after job 1", "after job 2"])
    end

    it "does not count a job that Sidekiq interrupts to shut down" do
      expect { middleware.call(nil, {}, "default") { raise Sidekiq::Shutdown } }.to raise_error(Sidekiq::Shutdown)
      expect(schedule.jobs).to eq(0)
    end
  end

  describe ".install", pending: SidekiqMiddleware::MISSING_ON_THIS_SIDEKIQ do
    after { Sidekiq.server_middleware.remove(Heapdiff::Sidekiq::Middleware) }

    it "puts the middleware first in Sidekiq's server chain, once" do
      described_class.install(every_jobs: 10, recorder: recorder)
      schedule = described_class.install(every_jobs: 5, recorder: recorder)
      entries = Sidekiq.server_middleware.entries.select { |e| e.klass == Heapdiff::Sidekiq::Middleware }
      expect(entries.size).to eq(1)
      expect(Sidekiq.server_middleware.entries.first.klass).to eq(Heapdiff::Sidekiq::Middleware)
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
    end
  end
end
