# frozen_string_literal: true

require "io/wait"
require_relative "snapshot"

module Heapdiff
  # Takes snapshots of the process it runs in, from a background thread: every +every+
  # seconds, whenever +signal+ arrives, and on #snapshot_now. Keeps the newest +keep+
  # snapshots in +dir+ and deletes older ones (also the temporaries of processes that
  # died mid-write). A snapshot that fails (disk full, permission denied) is logged and
  # leaves no partial file; it never raises into the process.
  #
  #   recorder = Heapdiff::Recorder.start(dir: "tmp/heapdiff", every: 300, keep: 10, signal: "USR2")
  #   recorder.snapshot_now
  #   recorder.stop
  #
  # The signal handler only writes a byte to a pipe; the recorder thread, which waits
  # on that pipe, takes the snapshot. Nothing the handler does needs a lock.
  class Recorder
    TEMP_NAME = /\A\.heap-\d+\..*\.tmp-(\d+)-\h+\z/
    META_NAME = /\Aheap-(\d+)\.meta\.json\z/

    attr_reader :dir, :every, :keep, :signal, :logger

    # A new Recorder, started.
    def self.start(**options)
      new(**options).start
    end

    # +every+: seconds between snapshots (nil: none on a timer). +keep+: how many to
    # keep. +signal+: a signal name ("USR2") that asks for a snapshot. +on_snapshot+: called
    # with each complete Snapshot. +gzip+, +fork+: as for Heapdiff.snapshot. +logger+:
    # where to log (default: $stderr); every line starts with "heapdiff:".
    def initialize(dir:, every: 300, keep: 10, signal: nil, on_snapshot: nil, gzip: false, fork: false, logger: nil)
      dir = Arguments.path(dir, "dir:")
      unless NilClass === every || (Numeric === every && every.positive?)
        raise ArgumentError, "heapdiff: every: must be a positive number of seconds or nil, got #{Arguments.kind(every)}"
      end
      unless Integer === keep && keep.positive?
        raise ArgumentError, "heapdiff: keep: must be a positive Integer, got #{Arguments.kind(keep)}"
      end
      unless on_snapshot.nil? || on_snapshot.respond_to?(:call)
        raise ArgumentError, "heapdiff: on_snapshot: must respond to #call"
      end

      @dir = File.expand_path(dir)
      @every = every
      @keep = keep
      @signal = signal && signal_name(signal)
      @on_snapshot = on_snapshot
      @gzip = gzip
      @fork = fork
      @logger = logger || default_logger
      @lock = Mutex.new
      @thread = nil
      @pending = nil
      @finisher = nil
    end

    # Starts the thread (and the signal handler). Returns self.
    def start
      return self if running?

      @wake_reader, @wake_writer = IO.pipe
      @pid = Process.pid
      trap_signal if @signal
      @thread = Thread.new { run }
      @thread.name = "heapdiff-recorder"
      @thread.report_on_exception = false
      logger.info("heapdiff: recording snapshots in #{dir}#{" every #{every} s" if every}" \
                  "#{" and on SIG#{@signal}" if @signal}, keeping #{keep}")
      self
    end

    def running?
      !@thread.nil? && @thread.alive? && @pid == Process.pid
    end

    # Stops the thread after any snapshot in progress, and puts back the signal's
    # previous handler. Returns self.
    def stop
      thread = @thread
      return self unless thread

      @thread = nil
      untrap_signal if @signal
      wake("q")
      thread.join
      @finisher&.join
      @wake_writer.close
      @wake_reader.close
      self
    end

    # Takes a snapshot now, in the calling thread, and prunes. Returns the Snapshot (for
    # fork: true, possibly still pending), or nil if it failed (the error is logged).
    # +reason+ goes in the log line.
    def snapshot_now(reason: "requested")
      take(reason)
    end

    private

    def run
      due = every && (now + every)
      loop do
        readable = @wake_reader.wait_readable(due && [due - now, 0].max)
        wakes = readable ? @wake_reader.read_nonblock(64, exception: false) : ""
        wakes = "" unless wakes.is_a?(String)
        break if wakes.include?("q")
        next unless wakes.include?("s") || (due && now >= due)

        take(wakes.include?("s") ? "SIG#{@signal}" : "every #{every} s")
        due = every && (now + every)
      end
    rescue StandardError => e
      logger.error("heapdiff: the recorder thread stopped: #{e.class}: #{e.message}")
    end

    def take(reason)
      started = now
      snapshot = @lock.synchronize do
        if @pending&.pending?
          logger.warn("heapdiff: snapshot (#{reason}) skipped: the previous one is still being written")
          return nil
        end
        @pending = Heapdiff.snapshot(dir: dir, gzip: @gzip, fork: @fork)
      end
      paused = now - started
      if @fork
        @finisher = Thread.new { finish(snapshot, reason, started, paused) }
        @finisher.name = "heapdiff-snapshot"
      else
        finish(snapshot, reason, started, paused)
      end
      snapshot
    rescue StandardError => e
      failed(reason, e)
      nil
    end

    def finish(snapshot, reason, started, paused)
      snapshot.wait
      size = File.size(snapshot.path) / 1e6
      prune
      pause = @fork ? format(", paused %.3f s", paused) : ""
      logger.info(format("heapdiff: snapshot %s (%s, %.1f MB) in %.2f s%s",
                         snapshot.path, reason, size, now - started, pause))
      notify(snapshot)
    rescue StandardError => e
      failed(reason, e)
    end

    def notify(snapshot)
      @on_snapshot&.call(snapshot)
    rescue StandardError => e
      logger.error("heapdiff: on_snapshot raised #{e.class}: #{e.message}")
    end

    def failed(reason, error)
      message = error.message.start_with?("heapdiff:") ? error.message : "#{error.class}: #{error.message}"
      logger.error("heapdiff: snapshot (#{reason}) failed: #{message.delete_prefix("heapdiff: ")}")
    end

    # Deletes all but the newest +keep+ snapshots (dump first, then its sidecar), the
    # sidecars older than the newest dump that lost their dump to a crash, and the
    # temporaries of processes that no longer run.
    def prune
      names = Dir.children(dir)
      # Names are matched as bytes: one that is not UTF-8 is no snapshot's, and must not
      # stop the pruning.
      dumps = names.filter_map { |n| (number = n.b[Snapshot::DUMP_NAME, 1]) && [number.to_i, n] }.sort
      dumps[0...-keep]&.each do |_, name|
        path = File.join(dir, name)
        remove(path)
        remove(Snapshot.meta_path_for(path))
      end
      newest = dumps.last&.first || 0
      kept = dumps.map(&:first)
      names.each do |name|
        if (number = name.b[META_NAME, 1]&.to_i)
          remove(File.join(dir, name)) if number < newest && !kept.include?(number)
        elsif (pid = name.b[TEMP_NAME, 1]&.to_i)
          remove(File.join(dir, name)) unless alive?(pid)
        end
      end
    rescue SystemCallError => e
      logger.error("heapdiff: could not prune #{dir}: #{e.message}")
    end

    def remove(path)
      File.unlink(path)
    rescue Errno::ENOENT
      nil
    end

    def alive?(pid)
      Process.kill(0, pid)
      true
    rescue Errno::ESRCH
      false
    rescue Errno::EPERM
      true
    end

    # Chains to the handler it replaces. In a forked child (whose recorder thread did
    # not survive the fork) it only chains.
    def trap_signal
      @handler = proc do |signo|
        wake("s") if Process.pid == @pid
        previous = @previous_handler
        if previous.respond_to?(:call)
          previous.arity.zero? ? previous.call : previous.call(signo)
        end
      end
      @previous_handler = Signal.trap(@signal, @handler)
    end

    # Puts the previous handler back, unless someone trapped the signal after us (and
    # so calls our handler from theirs, where it now only chains).
    def untrap_signal
      current = Signal.trap(@signal, @previous_handler || "DEFAULT")
      Signal.trap(@signal, current) unless current.equal?(@handler)
    end

    # Called from the signal handler too: no locks, no allocation beyond the call.
    def wake(byte)
      @wake_writer.write_nonblock(byte, exception: false)
    rescue IOError
      nil
    end

    def signal_name(signal)
      name = case signal
             when Integer then Signal.list.key(signal)
             when String, Symbol then signal.to_s.upcase.delete_prefix("SIG")
             end
      return name if name && Signal.list.key?(name)

      raise ArgumentError, "heapdiff: signal: #{Arguments.kind(signal)} is not a signal name"
    end

    def default_logger
      require "logger"
      Logger.new($stderr)
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end
