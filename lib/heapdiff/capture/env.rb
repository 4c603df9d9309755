# frozen_string_literal: true

require_relative "recorder"

module Heapdiff
  # heapdiff switched on and configured by environment variables: what
  # `require "heapdiff/auto"` runs in a binstub (or call Heapdiff::Env.start yourself).
  #
  #   HEAPDIFF=1            the switch; unset, empty, 0, false, no or off: heapdiff stays off
  #   HEAPDIFF_DIR          where snapshots go (default tmp/heapdiff, from the working directory)
  #   HEAPDIFF_EVERY        seconds between snapshots (default 300; 0: none on a timer)
  #   HEAPDIFF_KEEP         how many snapshots to keep (default 10)
  #   HEAPDIFF_SIGNAL       a signal that asks for a snapshot, e.g. USR2 (default: none)
  #   HEAPDIFF_FORK=1       a forked child writes each dump; the process pauses only to fork
  #   HEAPDIFF_GZIP=1       gzip the dumps
  #   HEAPDIFF_REDACT=1     write the dumps without string, symbol and float values
  #   HEAPDIFF_TRACE=0      leave allocation tracing off (it is turned on by default)
  #   HEAPDIFF_EVERY_JOBS   Sidekiq servers: a snapshot between jobs, every N jobs. Then
  #                         HEAPDIFF_EVERY, if set, is also counted between jobs, and no
  #                         timer thread runs.
  #   HEAPDIFF_RSS_LIMIT    a forked snapshot when RSS reaches this (1.5G, 800M), then each
  #                         time it grows by HEAPDIFF_RSS_STEP more (default 0.2: 20%)
  #   HEAPDIFF_AFTER_FORK   restart (default): a forked child (a Puma worker) records on
  #                         its own, in HEAPDIFF_DIR/pid-PID; stop: it records nothing
  module Env
    # Keep in step with the test in heapdiff/auto.rb, which must not load this file.
    OFF = /\A\s*(?:0|false|no|off)?\s*\z/i

    class << self
      # The Recorder started by #start, if any.
      attr_reader :recorder

      # Does +env+ turn heapdiff on (HEAPDIFF=1)?
      #
      # @param env [Hash{String => String}]
      # @return [Boolean]
      def on?(env = ENV)
        !OFF.match?(env.fetch("HEAPDIFF", ""))
      end

      # The settings +env+ asks for. Raises ArgumentError naming a variable that does
      # not parse.
      #
      # @param env [Hash{String => String}]
      # @return [Hash{Symbol => Object}] Recorder options, +every+ in seconds
      # @raise [ArgumentError] a variable that does not parse
      def settings(env = ENV)
        every_jobs = integer(env, "HEAPDIFF_EVERY_JOBS")
        {
          dir: env.fetch("HEAPDIFF_DIR", "").then { |d| d.empty? ? Snapshot::DEFAULT_DIR : d },
          every: seconds(env, "HEAPDIFF_EVERY", default: every_jobs ? nil : 300),
          keep: integer(env, "HEAPDIFF_KEEP") || 10,
          signal: env.fetch("HEAPDIFF_SIGNAL", "").then { |s| s.strip.empty? ? nil : s.strip },
          fork: flag(env, "HEAPDIFF_FORK", false),
          gzip: flag(env, "HEAPDIFF_GZIP", false),
          redact: flag(env, "HEAPDIFF_REDACT", false),
          trace: flag(env, "HEAPDIFF_TRACE", true),
          every_jobs: every_jobs,
          after_fork: after_fork(env),
          rss_limit: rss_limit(env),
          rss_step: rss_step(env)
        }
      end

      # Starts what +env+ asks for: allocation tracing, a Recorder, and for
      # HEAPDIFF_EVERY_JOBS the Sidekiq middleware. Returns the Recorder (the same one
      # when called again in the same process, or in a forked child that restarted
      # it); nil when HEAPDIFF is off, or when a setting is refused (said on $stderr,
      # and whatever was started is undone: a typo in a debugging switch must neither
      # stop the process from booting nor leave half of heapdiff on).
      #
      # @param env [Hash{String => String}]
      # @return [Recorder, nil]
      def start(env = ENV)
        return @recorder if @recorder && (@pid == Process.pid || @recorder.running?)
        return nil unless on?(env)

        s = settings(env)
        options = { dir: s[:dir], keep: s[:keep], signal: s[:signal], fork: s[:fork], gzip: s[:gzip],
                    redact: s[:redact], after_fork: s[:after_fork], rss_limit: s[:rss_limit], rss_step: s[:rss_step] }
        recorder = Recorder.new(every: s[:every_jobs] ? nil : s[:every], **options)
        begin
          if s[:every_jobs]
            # The middleware asks the recorder's thread for the snapshots.
            require_relative "../sidekiq"
            # A binstub runs this before Sidekiq's executable loads its CLI, and
            # Sidekiq.configure_server runs its block only where the CLI is loaded.
            require "sidekiq/cli" if File.basename($PROGRAM_NAME) == "sidekiq"
            unless ::Sidekiq.server?
              warn("heapdiff: HEAPDIFF_EVERY_JOBS: #{$PROGRAM_NAME} has not loaded Sidekiq::CLI (not a Sidekiq " \
                   "server, or a binstub not named sidekiq): no snapshots between jobs")
            end
            Heapdiff::Sidekiq.install(every_jobs: s[:every_jobs], every_seconds: s[:every], recorder: recorder)
          end
          Heapdiff.trace_allocations! if s[:trace]
          recorder.start if s[:signal] || s[:rss_limit] || !s[:every_jobs]
        rescue StandardError, LoadError
          undo(recorder)
          raise
        end
        @pid = Process.pid
        @recorder = recorder
      rescue StandardError, LoadError => e
        warn("heapdiff: #{e.message.delete_prefix("heapdiff: ")}; heapdiff stays off")
        nil
      end

      private

      # Takes back what a failed #start began.
      def undo(recorder)
        recorder.stop
        Heapdiff::Sidekiq.uninstall if defined?(Heapdiff::Sidekiq)
        Heapdiff.stop_tracing!
      end

      # Bytes ("1.5G", "800M", a number), or nil when unset.
      def rss_limit(env)
        text = env.fetch("HEAPDIFF_RSS_LIMIT", "").strip
        text.empty? ? nil : Arguments.bytes(text, "HEAPDIFF_RSS_LIMIT")
      end

      def rss_step(env)
        text = env.fetch("HEAPDIFF_RSS_STEP", "").strip
        return 0.2 if text.empty?

        step = Float(text, exception: false)
        raise ArgumentError, "HEAPDIFF_RSS_STEP=#{text} is not a positive fraction (0.2 for 20%)" unless step&.positive?

        step
      end

      def after_fork(env)
        text = env.fetch("HEAPDIFF_AFTER_FORK", "").strip
        return :restart if text.empty?
        return text.to_sym if %w[restart stop].include?(text)

        raise ArgumentError, "HEAPDIFF_AFTER_FORK=#{text} is not restart or stop"
      end

      # Seconds as a number, nil for 0 (no timer), +default+ when the variable is unset.
      def seconds(env, name, default:)
        text = env.fetch(name, "").strip
        return default if text.empty?

        value = Float(text, exception: false)
        raise ArgumentError, "#{name}=#{text} is not a number of seconds" if value.nil? || value.negative?

        value.zero? ? nil : value
      end

      def integer(env, name)
        text = env.fetch(name, "").strip
        return nil if text.empty?

        value = Integer(text, 10, exception: false)
        raise ArgumentError, "#{name}=#{text} is not a positive whole number" if value.nil? || value < 1

        value
      end

      def flag(env, name, default)
        text = env.fetch(name, "").strip
        return default if text.empty?
        return true if /\A(?:1|true|yes|on)\z/i.match?(text)
        return false if /\A(?:0|false|no|off)\z/i.match?(text)

        raise ArgumentError, "#{name}=#{text} is not 1 or 0"
      end
    end
  end
end
