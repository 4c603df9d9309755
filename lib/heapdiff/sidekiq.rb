# frozen_string_literal: true

require "sidekiq"
require_relative "capture/recorder"

module Heapdiff
  # Heap snapshots of a Sidekiq server between jobs: every N jobs and/or every T seconds.
  #
  #   # config/initializers/sidekiq.rb
  #   require "heapdiff/sidekiq"
  #   Sidekiq.configure_server do |config|
  #     Heapdiff::Sidekiq.install(dir: "tmp/heapdiff", every_jobs: 1000, keep: 10)
  #   end
  #
  # The snapshot is taken on the processor thread that just finished the Nth job,
  # outside every other middleware, before the job is acknowledged. With concurrency 1
  # that is exactly between two jobs; with more, the other processors stop for the GC
  # and share the GVL with the dump, unless the snapshot forks (fork: true).
  module Sidekiq
    class << self
      # Adds the middleware to Sidekiq's server chain (outermost). +every_jobs+,
      # +every_seconds+: when to take a snapshot (at least one). The other options are
      # a Recorder's (+dir:+, +keep:+, +gzip:+, +fork:+, +logger:+, +on_snapshot:+), or
      # +recorder:+ to share one (the binstub does: one numbering, one +keep+ for
      # timed, signalled and per-job snapshots). Returns the Schedule.
      def install(every_jobs: nil, every_seconds: nil, recorder: nil, **recorder_options)
        recorder ||= Recorder.new(**recorder_options)
        schedule = Schedule.new(recorder, every_jobs: every_jobs, every_seconds: every_seconds)
        ::Sidekiq.server_middleware do |chain|
          chain.remove(Middleware)
          chain.prepend(Middleware, schedule)
        end
        recorder.logger.info("heapdiff: Sidekiq jobs will take snapshots in #{recorder.dir}, #{schedule}, " \
                             "keeping #{recorder.keep}")
        schedule
      end
    end

    # Counts finished jobs and decides when a snapshot is due. One per server, shared by
    # the middleware instances (Sidekiq 6 makes a new one for every job).
    class Schedule
      attr_reader :recorder, :every_jobs, :every_seconds, :jobs

      def initialize(recorder, every_jobs: nil, every_seconds: nil)
        raise ArgumentError, "heapdiff: give every_jobs:, every_seconds: or both" if every_jobs.nil? && every_seconds.nil?
        unless every_jobs.nil? || (every_jobs.is_a?(Integer) && every_jobs.positive?)
          raise ArgumentError, "heapdiff: every_jobs: must be a positive Integer, got #{every_jobs.inspect}"
        end
        unless every_seconds.nil? || (every_seconds.is_a?(Numeric) && every_seconds.positive?)
          raise ArgumentError, "heapdiff: every_seconds: must be a positive number, got #{every_seconds.inspect}"
        end

        @recorder = recorder
        @every_jobs = every_jobs
        @every_seconds = every_seconds
        @jobs = 0
        @last = now
        @lock = Mutex.new
      end

      # "every 500 jobs", "every 500 jobs or 60 s"
      def to_s
        when_due = [every_jobs && "#{every_jobs} jobs", every_seconds && "#{every_seconds} s"].compact
        "every #{when_due.join(" or ")}"
      end

      # Called after every job, whether it succeeded or raised. Takes the snapshot on
      # the calling thread when one is due.
      def job_done
        reason = @lock.synchronize do
          @jobs += 1
          due = if every_jobs && (@jobs % every_jobs).zero? then "after job #{@jobs}"
                elsif every_seconds && now - @last >= every_seconds then "after #{every_seconds} s of jobs"
                end
          @last = now if due
          due
        end
        recorder.snapshot_now(reason: reason) if reason
      end

      private

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end

    # The server middleware. Jobs that Sidekiq interrupts at shutdown (Sidekiq::Shutdown)
    # are not counted and take no snapshot.
    class Middleware
      def initialize(schedule)
        @schedule = schedule
      end

      def call(_worker, _job, _queue)
        begin
          yield
        rescue StandardError
          @schedule.job_done
          raise
        end
        @schedule.job_done
      end
    end
  end
end
