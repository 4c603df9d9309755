# frozen_string_literal: true

require "sidekiq"
require_relative "capture/recorder"
require_relative "capture/watch"

module Heapdiff
  # Heap snapshots of a Sidekiq server (6.4 through 8.x) between jobs: every N jobs
  # and/or every T seconds.
  #
  #   # config/initializers/sidekiq.rb
  #   require "heapdiff/sidekiq"
  #   Sidekiq.configure_server do |config|
  #     Heapdiff::Sidekiq.install(dir: "tmp/heapdiff", every_jobs: 1000, keep: 10)
  #   end
  #
  # The job that makes a snapshot due only hands it to the recorder's thread, and is
  # acknowledged as usual: a snapshot never holds a job that has run (a TERM during a
  # long snapshot must not make Sidekiq push a finished job back, to run it twice).
  # The next job to start waits until the dump is written, so that with concurrency 1
  # a snapshot is exactly between two jobs; a job that Sidekiq interrupts while it
  # waits has not run, and Sidekiq pushes it back. Once Sidekiq is quieting or
  # stopping no snapshot is asked for, and no job waits.
  #
  # With fork: true the processor thread that finished the job forks the child that
  # writes the dump, itself: a pause of milliseconds, far below any shutdown timeout.
  # A child forked from the recorder's thread would not see what only the processor
  # thread's stack holds: a forked child has only the forking thread.
  module Sidekiq
    class << self
      # Adds the middleware to the server chain (outermost) of every capsule, through
      # Sidekiq.configure_server: in any other process it does nothing. +every_jobs+,
      # +every_seconds+: when to take a snapshot (at least one). The other options are
      # a Recorder's (+dir:+, +keep:+, +gzip:+, +fork:+, +logger:+, +on_snapshot:+,
      # +after_fork:+), or +recorder:+ to share one (the binstub does: one numbering,
      # one +keep+ for timed, signalled and per-job snapshots). Returns the Schedule.
      # Raises ArgumentError for a wrong option.
      def install(every_jobs: nil, every_seconds: nil, recorder: nil, watch: false, watch_every: 100,
                  watch_threshold: 10, watch_check_every: 10_000, **recorder_options)
        recorder ||= Recorder.new(every: nil, **recorder_options)
        schedule = Schedule.new(recorder, every_jobs: every_jobs, every_seconds: every_seconds)
        schedule.watch!(every: watch_every, threshold: watch_threshold, check_every: watch_check_every) if watch
        ::Sidekiq.configure_server do |config|
          each_chain_owner(config) do |owner|
            owner.server_middleware do |chain|
              chain.remove(Middleware)
              chain.prepend(Middleware, schedule)
            end
          end
          # The recorder's thread watches RSS; without rss_limit it starts on demand.
          recorder.start if recorder_options[:rss_limit]
          config.on(:quiet) { schedule.stopping! }
          config.on(:shutdown) { schedule.stopping! }
          recorder.logger.info("heapdiff: Sidekiq jobs will take snapshots in #{recorder.dir}, #{schedule}, " \
                               "keeping #{recorder.keep}")
        end
        schedule
      end

      # Takes the middleware out of the server chain again.
      def uninstall
        ::Sidekiq.configure_server do |config|
          each_chain_owner(config) { |owner| owner.server_middleware { |chain| chain.remove(Middleware) } }
        end
      end

      private

      # The server's configuration, then (Sidekiq 7 and later) each capsule made so
      # far: a capsule copies the configuration's chain when first asked for it, so
      # one that already has its copy gets the middleware in its own chain too.
      def each_chain_owner(config, &)
        yield config
        config.capsules.each_value(&) if config.respond_to?(:capsules)
      end
    end

    # Counts finished jobs and decides when a snapshot is due. One per server, shared by
    # the middleware instances (Sidekiq makes a new one for every job) of all capsules.
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
        @capture = nil
        @stopping = false
      end

      # "every 500 jobs", "every 500 jobs or 60 s"
      def to_s
        when_due = [every_jobs && "#{every_jobs} jobs", every_seconds && "#{every_seconds} s"].compact
        "every #{when_due.join(" or ")}"
      end

      # Called after every job, whether it succeeded or raised. When a snapshot is due,
      # asks the recorder's thread for it and returns without waiting (fork: true:
      # forks the child that writes it, here).
      # +worker+ and +job+ (the job instance and its payload) are watched when +watch+:
      # both should be garbage once the job is done (Heapdiff.survivors).
      def job_done(worker = nil, job = nil)
        watch_job(worker, job) if watch && worker
        reason = @lock.synchronize do
          @jobs += 1
          due = if every_jobs && (@jobs % every_jobs).zero? then "after job #{@jobs}"
                elsif every_seconds && now - @last >= every_seconds then "after #{every_seconds} s of jobs"
                end
          @last = now if due
          due
        end
        return unless reason
        return recorder.logger.info("heapdiff: snapshot (#{reason}) skipped: Sidekiq is stopping") if @stopping
        return recorder.snapshot_now(reason: reason) if recorder.fork?

        capture = recorder.snapshot_soon(reason: reason)
        @lock.synchronize { @capture = capture }
      end

      # Called before every job: waits while a snapshot that a finished job asked for
      # has not captured the heap yet.
      def before_job
        @capture&.pop
      end

      # Whether finished jobs are watched (Heapdiff.watch): one in +watch_every+ (a
      # watched object costs a weak reference, which Ruby 3.1's WeakMap makes with a
      # finalizer: tens of µs), and how many of one label must survive a full GC for a
      # snapshot (checked every +watch_check_every+ jobs, each check a full GC; then
      # again at twice the count).
      attr_reader :watch, :watch_every, :watch_threshold, :watch_check_every

      # See Heapdiff::Sidekiq.install.
      def watch!(every: 100, threshold: 10, check_every: 10_000)
        @watch = true
        @watch_every = every
        @watch_threshold = threshold
        @watch_check_every = check_every
        @finished_jobs = 0
        self
      end

      # Sidekiq is quieting or stopping: no more snapshots, and no job waits for one.
      def stopping!
        @lock.synchronize do
          @stopping = true
          @capture&.close
        end
      end

      def stopping?
        @stopping
      end

      private

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end

      def watch_job(worker, job)
        finished = @lock.synchronize { @finished_jobs += 1 }
        if (finished % watch_every).zero?
          label = worker.class.name || worker.class.inspect
          Heapdiff.watch(worker, label)
          Heapdiff.watch(job["args"], "#{label} args") if job.is_a?(Hash) && job["args"].is_a?(Array)
        end
        check_survivors if (finished % watch_check_every).zero?
      end

      # A snapshot when watched objects of one label survive past the threshold, so
      # that the report can show what holds them; the threshold then doubles.
      def check_survivors
        top = Heapdiff.survivors(sample: 0).values.first
        return unless top && top.count >= watch_threshold && !@stopping

        @watch_threshold *= 2
        recorder.snapshot_soon(reason: "#{top.count} #{top.label} survive, watched once done")
      end
    end

    # The server middleware. Jobs that Sidekiq interrupts at shutdown (Sidekiq::Shutdown)
    # are not counted and take no snapshot.
    class Middleware
      # Sidekiq 7 and later: gives the middleware its capsule's config.
      include ::Sidekiq::ServerMiddleware if defined?(::Sidekiq::ServerMiddleware)

      def initialize(schedule)
        @schedule = schedule
      end

      def call(worker, job, _queue)
        @schedule.before_job
        begin
          yield
        rescue StandardError
          @schedule.job_done(worker, job)
          raise
        end
        @schedule.job_done(worker, job)
      end
    end
  end
end
