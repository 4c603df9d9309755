# frozen_string_literal: true

require "io/wait"
require_relative "memory"
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
  #
  # Fork: the process that started a recorder owns it. A thread does not survive
  # fork(2), so a forked child (Puma's workers, a daemon) gets, by +after_fork:+,
  # either a fresh recorder of its own (:restart, the default) or none (:stop). A
  # recorder started in a forked child writes to DIR/pid-PID, so that siblings never
  # share a numbering or prune each other's snapshots. Fork and Process.daemon are
  # seen through Ruby's Process._fork hook and a wrapper of Process.daemon.
  class Recorder
    TEMP_NAME = /\A\.heap-\d+\..*\.tmp-(\d+)-\h+\z/
    META_NAME = /\Aheap-(\d+)\.(?:meta|names)\.json\z/
    AFTER_FORK = %i[restart stop].freeze
    # Signals that Signal.trap refuses, and why: asked for one of these, the recorder
    # refuses at #new, before anything has started.
    UNTRAPPABLE = {
      "KILL" => "the kernel does not let it be caught", "STOP" => "the kernel does not let it be caught",
      "SEGV" => "reserved by Ruby", "BUS" => "reserved by Ruby", "ILL" => "reserved by Ruby",
      "FPE" => "reserved by Ruby", "VTALRM" => "reserved by Ruby", "EXIT" => "not a signal: Ruby's exit hook"
    }.freeze

    attr_reader :dir, :every, :keep, :signal, :logger, :after_fork, :rss_limit

    # The recorders started in this process, for the fork hook.
    @started = []
    @started_lock = Mutex.new
    # The pid of the first process of this program that loaded heapdiff: the
    # recorders of any other (forked) process write to DIR/pid-PID.
    @first_pid = Process.pid

    class << self
      # A new Recorder, started.
      #
      # @param options [Hash] as for #initialize
      # @return [Recorder]
      # @raise [ArgumentError] an option that is refused
      def start(**options)
        new(**options).start
      end

      # Whether this process was forked (or daemonized) from the one that loaded
      # heapdiff.
      #
      # @return [Boolean]
      def forked_child?
        Process.pid != @first_pid
      end

      # Called in the child after fork and Process.daemon: each inherited recorder
      # restarts or stops, as its +after_fork+ says.
      def forked
        inherited = @started_lock.synchronize { @started.slice!(0..) }
        inherited.each { |recorder| recorder.send(:forked_child) }
      end

      # For #start and #stop.
      def started(recorder)
        @started_lock.synchronize { @started |= [recorder] }
      end

      def stopped(recorder)
        @started_lock.synchronize { @started.delete(recorder) }
      end
    end

    # +every+: seconds between snapshots (nil: none on a timer). +keep+: how many to
    # keep. +signal+: a signal name ("USR2") that asks for a snapshot. +on_snapshot+: called
    # with each complete Snapshot (see below). +gzip+, +fork+, +redact+: as for Heapdiff.snapshot
    # (+redact: true+ writes dumps without string, symbol and float values). +logger+:
    # where to log (default: $stderr); every line starts with "heapdiff:". +after_fork+:
    # what a forked child does with this recorder once started: :restart (a fresh one
    # of its own, in DIR/pid-PID) or :stop (none).
    #
    # +rss_limit+ (bytes, or "1.5G"): a snapshot, always with fork: true (the process
    # pauses only to fork), when RSS first reaches it, then each time it grows by
    # another +rss_step+ (a fraction: 0.2 is 20% above the last threshold), at most
    # +rss_snapshots+ times. The recorder's thread reads RSS every +rss_check+ seconds
    # (/proc/self/statm: microseconds). A threshold crossed while another snapshot is
    # being written is taken at the next check. +keep+ applies to these too.
    #
    # The +on_snapshot+ contract: it gets a Snapshot, a file on disk with its sidecar,
    # which holds no loaded heap, so there is nothing to close. It runs on a heapdiff
    # thread (the recorder's, or with +fork: true+ the one that waits for the dump).
    # Whatever it raises is logged, never raised in the process. It may prune later:
    # the file can vanish once +keep+ newer snapshots exist. To analyse the snapshot,
    # use the block forms, which free the heap when the block ends instead of at the
    # GC's leisure: <tt>Heapdiff.load(snapshot) { |heap| … }</tt>,
    # <tt>Heapdiff.trend(recorder.dir) { |trend| … }</tt>.
    #
    # @param dir [String, Pathname]
    # @param every [Numeric, nil] seconds
    # @param keep [Integer]
    # @param signal [String, nil]
    # @param on_snapshot [#call, nil] called with a Snapshot
    # @param gzip [Boolean]
    # @param fork [Boolean]
    # @param redact [Boolean]
    # @param logger [Logger, nil]
    # @param after_fork [Symbol] :restart or :stop
    # @param rss_limit [Integer, String, nil] bytes ("1.5G")
    # @param rss_step [Numeric] a fraction above the last threshold
    # @param rss_snapshots [Integer]
    # @param rss_check [Numeric] seconds
    # @raise [ArgumentError] a value that is refused (KILL, STOP, SEGV… as +signal+)
    def initialize(dir:, every: 300, keep: 10, signal: nil, on_snapshot: nil, gzip: false, fork: false, redact: false,
                   logger: nil, after_fork: :restart, rss_limit: nil, rss_step: 0.2, rss_snapshots: 5, rss_check: 1.0)
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
      unless AFTER_FORK.include?(after_fork)
        raise ArgumentError, "heapdiff: after_fork: must be :restart or :stop, got #{after_fork.inspect}"
      end

      init_rss_limit(rss_limit, rss_step, rss_snapshots, rss_check)
      @base_dir = File.expand_path(dir)
      @dir = @base_dir
      @after_fork = after_fork
      @every = every
      @keep = keep
      @signal = signal && signal_name(signal)
      @on_snapshot = on_snapshot
      @gzip = gzip
      @fork = fork
      @redact = redact ? true : false
      @logger = logger || default_logger
      @lock = Mutex.new
      @thread = nil
      @pending = nil
      @finisher = nil
      @owner = nil
      @handler = nil
      @requests = []
      @requests_lock = Mutex.new
    end

    # Starts the thread (and the signal handler) in this process, which then owns the
    # recorder. Returns self. In a forked child it starts afresh, in DIR/pid-PID.
    #
    # @return [self]
    def start
      return self if running?

      forget_inherited unless @owner.nil? || @owner == Process.pid
      @dir = Recorder.forked_child? ? File.join(@base_dir, "pid-#{Process.pid}") : @base_dir
      @wake_reader, @wake_writer = IO.pipe
      @owner = Process.pid
      trap_signal if @signal && @handler.nil?
      @thread = Thread.new { run }
      @thread.name = "heapdiff-recorder"
      @thread.report_on_exception = false
      Recorder.started(self)
      logger.info("heapdiff: recording snapshots in #{dir}#{" every #{every} s" if every}" \
                  "#{" and on SIG#{@signal}" if @signal}, keeping #{keep}")
      self
    end

    # Whether the dumps are written without values (redact: true).
    def redact?
      @redact
    end

    # Whether a forked child writes each dump (fork: true).
    #
    # @return [Boolean]
    def fork?
      @fork
    end

    # Whether its thread runs in this process.
    #
    # @return [Boolean]
    def running?
      @owner == Process.pid && !@thread.nil? && @thread.alive?
    end

    # Stops the thread after any snapshot in progress, and puts back the signal's
    # previous handler. Returns self. In a process that does not own the recorder (a
    # forked child that kept an inherited one) it only forgets it there: the owner's
    # thread, pipe and handler stay untouched.
    #
    # @return [self]
    def stop
      return self if @owner.nil?
      return forget_inherited unless @owner == Process.pid

      thread = @thread
      @thread = nil
      @owner = nil
      Recorder.stopped(self)
      untrap_signal if @handler
      wake("q")
      thread&.join
      @finisher&.join
      close_pipe
      # Whoever waits for a snapshot asked for but not taken waits no longer.
      @requests_lock.synchronize { @requests.slice!(0..) }.each { |_, captured| captured.close }
      self
    end

    # Takes a snapshot now, in the calling thread, and prunes. Returns the Snapshot (for
    # fork: true, possibly still pending), or nil if it failed (the error is logged).
    # +reason+ goes in the log line.
    #
    # @param reason [String]
    # @return [Snapshot, nil]
    def snapshot_now(reason: "requested")
      take(reason)
    end

    # Asks the recorder thread (started if it is not) for a snapshot and returns at
    # once, without waiting for it: a Thread::Queue that the thread closes once the
    # process's heap is captured (the dump written, or with fork: true, the child
    # forked), so that +captured.pop+ waits for that. +reason+ goes in the log line.
    #
    # @param reason [String]
    # @return [Thread::Queue]
    def snapshot_soon(reason: "requested")
      captured = Thread::Queue.new
      # Not @lock, which a snapshot holds while it is written.
      @requests_lock.synchronize do
        start unless running?
        @requests << [reason, captured]
      end
      wake("r")
      captured
    end

    private

    def run
      due = every && (now + every)
      loop do
        wait = [due, @rss_limit && @rss_due].compact.min
        readable = @wake_reader.wait_readable(wait && [wait - now, 0].max)
        wakes = readable ? @wake_reader.read_nonblock(64, exception: false) : ""
        wakes = "" unless wakes.is_a?(String)
        break if wakes.include?("q")

        take_requested if wakes.include?("r")
        check_rss if @rss_limit && now >= @rss_due
        next unless wakes.include?("s") || (due && now >= due)

        take(wakes.include?("s") ? "SIG#{@signal}" : "every #{every} s")
        due = every && (now + every)
      end
    rescue StandardError => e
      logger.error("heapdiff: the recorder thread stopped: #{e.class}: #{e.message}")
    end

    def init_rss_limit(limit, step, count, check)
      @rss_limit = limit && Arguments.bytes(limit, "rss_limit:")
      unless Numeric === step && step.positive?
        raise ArgumentError, "heapdiff: rss_step: must be a positive fraction (0.2 for 20%)"
      end
      raise ArgumentError, "heapdiff: rss_snapshots: must be a positive Integer" unless Integer === count && count.positive?
      raise ArgumentError, "heapdiff: rss_check: must be a positive number of seconds" unless Numeric === check && check.positive?

      @rss_step = step
      @rss_snapshots = count
      @rss_check = check
      @rss_threshold = @rss_limit
      @rss_taken = 0
      @rss_due = 0
    end

    # A forked snapshot when RSS has reached the threshold; the next threshold is
    # rss_step above it (above RSS, if RSS jumped past several), until rss_snapshots.
    def check_rss
      @rss_due = now + @rss_check
      return if @rss_taken >= @rss_snapshots

      rss = Memory.rss
      return unless rss && rss >= @rss_threshold

      reason = format("RSS %.1f MB reached %.1f MB", rss / 1e6, @rss_threshold / 1e6)
      return unless take(reason, fork: true)

      @rss_taken += 1
      @rss_threshold = (@rss_threshold * (1 + @rss_step)).ceil while @rss_threshold <= rss
    end

    # The snapshots asked for with #snapshot_soon: one for all that arrived together.
    def take_requested
      requests = @requests_lock.synchronize { @requests.slice!(0..) }
      return if requests.empty?

      take(requests.map(&:first).join(", "))
    ensure
      requests&.each { |_, captured| captured.close }
    end

    def take(reason, fork: @fork)
      started = now
      snapshot = @lock.synchronize do
        if @pending&.pending?
          logger.warn("heapdiff: snapshot (#{reason}) skipped: the previous one is still being written")
          return nil
        end
        @pending = Heapdiff.snapshot(dir: dir, gzip: @gzip, fork: fork, redact: @redact)
      end
      paused = now - started
      if fork
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
      pause = snapshot.child_pid ? format(", paused %.3f s", paused) : ""
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

    # Deletes all but the newest +keep+ snapshots (dump first, then its sidecars), the
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
        remove(Names.path_for(path))
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

    # In the child, after fork: the inherited thread is gone and the pipe and signal
    # handler are copies of the parent's. Restarts or stops, as +after_fork+ says.
    def forked_child
      return if @owner == Process.pid

      forget_inherited
      if after_fork == :restart
        start
      elsif @handler
        untrap_signal
      end
    end

    # Drops this process's copies of the owner's thread and pipe, without writing to
    # the pipe (the owner reads it). Returns self.
    def forget_inherited
      @thread = nil
      @finisher = nil
      @pending = nil
      @owner = nil
      @lock = Mutex.new
      @requests = []
      @requests_lock = Mutex.new
      close_pipe
      self
    end

    def close_pipe
      [@wake_writer, @wake_reader].each { |io| io&.close unless io&.closed? }
      @wake_writer = @wake_reader = nil
    end

    # Chains to the handler it replaces, held in a local of its own: a handler never
    # reaches itself through the chain. It wakes the thread only while it is this
    # recorder's current handler and the recorder runs in this process.
    def trap_signal
      handler = nil
      previous = nil
      handler = proc do |signo|
        wake("s") if @handler.equal?(handler) && running?
        if previous.respond_to?(:call)
          previous.arity.zero? ? previous.call : previous.call(signo)
        end
      end
      previous = Signal.trap(@signal, handler)
      @handler = handler
      @previous_handler = previous
    end

    # Puts the previous handler back, unless someone trapped the signal after us (and
    # so calls our handler from theirs, where it now only chains).
    def untrap_signal
      current = Signal.trap(@signal, @previous_handler || "DEFAULT")
      Signal.trap(@signal, current) unless current.equal?(@handler)
      @handler = nil
    end

    # Called from the signal handler too: no locks, no allocation beyond the call.
    def wake(byte)
      @wake_writer&.write_nonblock(byte, exception: false)
    rescue IOError
      nil
    end

    def signal_name(signal)
      name = case signal
             when Integer then Signal.list.key(signal)
             when String, Symbol then signal.to_s.upcase.delete_prefix("SIG")
             end
      unless name && Signal.list.key?(name)
        raise ArgumentError, "heapdiff: signal: #{Arguments.kind(signal)} is not a signal name"
      end

      reason = UNTRAPPABLE[name]
      raise ArgumentError, "heapdiff: signal: SIG#{name} cannot be trapped (#{reason})" if reason

      name
    end

    def default_logger
      require "logger"
      Logger.new($stderr)
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end

  # Tells the recorders of a forked or daemonized child (see Recorder). Process._fork
  # is Ruby's hook for fork, Kernel#fork and IO.popen("-"); Process.daemon does not
  # call it.
  module ForkHook
    def _fork
      pid = super
      Recorder.forked if pid.zero?
      pid
    end

    def daemon(...)
      result = super
      Recorder.forked
      result
    end
  end
  ::Process.singleton_class.prepend(ForkHook)
end
