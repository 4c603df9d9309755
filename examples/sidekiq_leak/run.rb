# frozen_string_literal: true

# Runs the leaking Sidekiq + ActiveRecord app (app.rb) as a real server process
# and takes three heap dumps from it while it runs.
#
#   ruby examples/sidekiq_leak/run.rb OUTDIR [JOBS_PER_PHASE] [--verify]
#
# Steps: start a private redis-server (127.0.0.1, free port, temp dir, no
# persistence), start `sidekiq -r app.rb -c 1`, then for phase 0, 1, 2: push
# JOBS_PER_PHASE PlaceOrderJob jobs and one DumpJob, which calls Heapdiff.snapshot
# (single FIFO queue, one processor thread, so the dump runs after the phase's
# jobs). Sidekiq and redis are always stopped (ensure). Writes OUTDIR/0.json,
# 1.json, 2.json (with heapdiff's sidecars 0.meta.json…) and OUTDIR/expected.json:
#
#   leak_file, leak_line, leak_location ("file:line"), type ("STRING"),
#   value_prefix ("phase=N "), per_phase {"0"=>n0, "1"=>n1, "2"=>n2} (strings
#   leaked during each phase), in_buffer_at_dump [c0, c1, c2] (cumulative),
#   jobs_per_phase, ruby_version.
#
# A 3-dump diff (new in 1.json vs 0.json and still in 2.json) of this leak must
# find exactly per_phase["1"] STRINGs at leak_location.
#
# --verify additionally parses every dump line with JSON (plain Ruby, ~1 s per
# dump): reports lines that are not valid JSON and checks per_phase["1"]
# against the strings in 2.json (exit 1 on mismatch).
#
# From Ruby: require_relative "run"; SidekiqLeak::Runner.new(outdir, 250).run
# (returns true; with verify: true, whether the check passed). SidekiqLeak::Server
# runs the two processes for drivers of their own (see its comment).
#
# The driver needs no gems: it talks to redis over a socket (RESP) and pushes
# jobs in Sidekiq's JSON job format. The server runs Sidekiq from the system
# gems, with any Bundler environment removed, and heapdiff from this checkout.

require "fileutils"
require "json"
require "rbconfig"
require "securerandom"
require "socket"
require "timeout"
require "tmpdir"

module SidekiqLeak
  # Progress lines and a monotonic clock, shared by the server and the runner.
  module Logging
    private

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def say(msg)
      @log.puts("[sidekiq_leak] #{msg}")
    end
  end

  # A private redis-server (127.0.0.1, free port, files in +tmp+, no persistence)
  # and a Sidekiq server process running app.rb with one processor thread on the
  # "default" queue. Both are spawned in their own process groups and stopped by
  # #stop.
  #
  #   server = SidekiqLeak::Server.new(tmp, log: $stderr, env: {"HEAPDIFF" => "1"}, binstub: path)
  #   server.start
  #   server.push("PlaceOrderJob", [[0, 1], [0, 2]])
  #   server.wait_until(60, "the counts") { File.exist?(counts) }
  #   server.stop
  #
  # +env+ is added to the server's environment; +binstub+ replaces the sidekiq
  # executable (it is run with this Ruby and heapdiff's lib on the load path); +app+
  # replaces app.rb (trend_app.rb builds on it); +timeout+ is Sidekiq's shutdown
  # timeout (-t), in seconds. #stop_sidekiq and #start_sidekiq restart the Sidekiq
  # server alone, against the same redis-server (after +env=+, with another env).
  class Server
    include Logging
    APP = File.expand_path("app.rb", __dir__)
    LIB = File.expand_path("../../lib", __dir__)

    attr_reader :tmp, :port, :sidekiq_log, :sidekiq_pid
    attr_writer :env

    def initialize(tmp, log: $stderr, env: {}, binstub: nil, app: APP, timeout: 5)
      @tmp = tmp
      @timeout = timeout
      @app = app
      @log = log
      @env = env
      @binstub = binstub
      @redis_pid = nil
      @sidekiq_pid = nil
    end

    def start
      start_redis
      start_sidekiq
      self
    end

    def stop
      stop_sidekiq
      stop_redis
    end

    # Starts both processes, yields the server and stops them, printing the end of
    # their logs first when the block fails.
    def run
      start
      yield self
    rescue StandardError, Interrupt
      dump_logs
      raise
    ensure
      stop
    end

    def alive?
      process_alive?(@sidekiq_pid)
    end

    # Pushes one job of class +klass+ per element of +args_list+, in order. Returns
    # their jids.
    def push(klass, args_list)
      t = Time.now.to_f
      jids = args_list.map { SecureRandom.hex(12) }
      payloads = args_list.zip(jids).map do |args, jid|
        JSON.generate(
          "class" => klass, "args" => args, "queue" => "default", "retry" => false,
          "jid" => jid, "created_at" => t, "enqueued_at" => t
        )
      end
      redis("SADD", "queues", "default")
      # LPUSH + BRPOP (Sidekiq's fetch) = FIFO; push in order, in one command.
      redis("LPUSH", "queue:default", *payloads)
      jids
    end

    # Polls the block until it is true; raises if Sidekiq exits or +timeout+ passes.
    def wait_until(timeout, what)
      deadline = now + timeout
      until yield
        raise "sidekiq exited early" unless alive?
        raise "#{what}: timed out after #{timeout}s" if now > deadline

        sleep 0.05
      end
    end

    # Starts the Sidekiq server (again), logging to +sidekiq_log+ (appended to).
    def start_sidekiq
      env = {
        "REDIS_URL" => "redis://127.0.0.1:#{@port}/0",
        "HEAPDIFF_LEAK_DB" => File.join(@tmp, "leak.sqlite3"),
        # Use the system gems, not whatever bundle the caller runs in.
        "RUBYOPT" => nil, "BUNDLE_GEMFILE" => nil, "BUNDLE_BIN_PATH" => nil,
        "BUNDLER_SETUP" => nil, "BUNDLER_VERSION" => nil, "GEM_HOME" => nil,
        "GEM_PATH" => nil, "RUBYLIB" => nil
      }.merge(@env)
      @sidekiq_log = File.join(@tmp, "sidekiq.log")
      @sidekiq_pid = Process.spawn(
        env, RbConfig.ruby, "-I", LIB, @binstub || sidekiq_bin, "-r", @app, "-c", "1", "-q", "default",
        "-t", @timeout.to_s, "-e", "production",
        in: File::NULL, out: [@sidekiq_log, "a"], err: %i[child out], pgroup: true,
        chdir: @tmp
      )
    end

    # Sends TERM to the Sidekiq server and waits for it to exit (KILL after 15 s more
    # than its shutdown timeout). Returns its Process::Status, nil if not running.
    def stop_sidekiq
      pid = @sidekiq_pid or return
      @sidekiq_pid = nil
      stop_process(pid, "sidekiq", grace: @timeout + 15)
    end

    def dump_logs
      [@sidekiq_log, File.join(@tmp.to_s, "redis.log")].each do |path|
        next unless path && File.exist?(path)

        @log.puts("---- last lines of #{path}")
        @log.puts(File.readlines(path).last(40).join)
      end
    end

    private

    # -- redis ---------------------------------------------------------------

    def start_redis
      3.times do
        @port = free_port
        @redis_pid = Process.spawn(
          "redis-server", "--bind", "127.0.0.1", "--port", @port.to_s,
          "--dir", @tmp, "--save", "", "--appendonly", "no",
          "--daemonize", "no", "--logfile", File.join(@tmp, "redis.log"),
          in: File::NULL, out: File::NULL, err: File::NULL, pgroup: true
        )
        return if wait_for_redis

        stop_redis
      end
      raise "redis-server did not start (see #{File.join(@tmp, "redis.log")})"
    end

    def free_port
      server = TCPServer.new("127.0.0.1", 0)
      server.addr[1]
    ensure
      server&.close
    end

    def wait_for_redis
      deadline = now + 10
      while now < deadline
        return false unless process_alive?(@redis_pid)

        begin
          return true if redis("PING") == "PONG"
        rescue SystemCallError, IOError
          sleep 0.05
        end
      end
      false
    end

    # Minimal RESP client: one command per connection is plenty here.
    def redis(*args)
      TCPSocket.open("127.0.0.1", @port) do |sock|
        cmd = +"*#{args.size}\r\n"
        args.each do |a|
          s = a.to_s.b
          cmd << "$#{s.bytesize}\r\n" << s << "\r\n"
        end
        sock.write(cmd)
        read_reply(sock)
      end
    end

    def read_reply(sock)
      line = sock.gets("\r\n") or raise IOError, "redis closed the connection"
      body = line.chomp("\r\n")
      case line[0]
      when "+" then body[1..]
      when ":" then Integer(body[1..])
      when "-" then raise "redis error: #{body[1..]}"
      when "$"
        len = Integer(body[1..])
        return nil if len.negative?

        data = sock.read(len + 2)
        data[0, len]
      when "*"
        n = Integer(body[1..])
        n.negative? ? nil : Array.new(n) { read_reply(sock) }
      else raise IOError, "bad redis reply: #{line.inspect}"
      end
    end

    def stop_redis
      pid = @redis_pid or return
      @redis_pid = nil
      stop_process(pid, "redis-server")
    end

    # -- sidekiq -------------------------------------------------------------

    def sidekiq_bin
      %w[/usr/bin/sidekiq /usr/local/bin/sidekiq].find { |p| File.file?(p) } ||
        Gem.bin_path("sidekiq", "sidekiq")
    end

    # -- processes -----------------------------------------------------------

    def process_alive?(pid)
      pid && Process.waitpid(pid, Process::WNOHANG).nil?
    rescue Errno::ECHILD
      false
    end

    # TERM, wait up to `grace` seconds, then KILL. Signals go to the child's own
    # process group (it was spawned with pgroup: true, so pgid == pid).
    def stop_process(pid, name, grace: 5)
      signal(-pid, "TERM") || signal(pid, "TERM")
      deadline = now + grace
      loop do
        return Process.last_status if Process.waitpid(pid, Process::WNOHANG)
        break if now > deadline

        sleep 0.05
      end
      say "#{name} (pid #{pid}) ignored TERM for #{grace}s, killing it"
      signal(-pid, "KILL") || signal(pid, "KILL")
      Process.waitpid(pid)
    rescue Errno::ECHILD
      nil
    end

    def signal(target, sig)
      Process.kill(sig, target)
      true
    rescue Errno::ESRCH, Errno::EPERM
      false
    end
  end

  class Runner
    include Logging
    DEFAULT_JOBS_PER_PHASE = 250
    PHASES = 3
    PHASE_TIMEOUT = 180 # seconds, per phase (jobs + dump)

    def initialize(outdir, jobs_per_phase, verify: false, log: $stderr)
      @outdir = File.expand_path(outdir)
      @jobs = jobs_per_phase
      @verify = verify
      @log = log
    end

    def run
      started = now
      FileUtils.mkdir_p(@outdir)
      Dir.mktmpdir("heapdiff-sidekiq-leak") do |tmp|
        Server.new(tmp, log: @log).run do |server|
          metas = Array.new(PHASES) { |phase| run_phase(server, tmp, phase) }
          write_expected(metas)
        end
      end
      say format("done in %.1f s: %s", now - started, @outdir)
      @verify ? verify : true
    end

    private

    # -- phases --------------------------------------------------------------

    def run_phase(server, tmp, phase)
      t0 = now
      dump = File.join(@outdir, "#{phase}.json")
      meta = File.join(tmp, "meta-#{phase}.json")
      FileUtils.rm_f(dump)
      server.push("PlaceOrderJob", Array.new(@jobs) { |i| [phase, i] })
      server.push("DumpJob", [[dump, meta]])
      server.wait_until(PHASE_TIMEOUT, "phase #{phase}") { File.exist?(meta) }
      m = JSON.parse(File.read(meta))
      done = m["jobs_done"].fetch(phase.to_s, 0)
      failed = m["jobs_failed"].values.sum
      raise "phase #{phase}: #{done}/#{@jobs} jobs done, #{failed} failed" unless done == @jobs && failed.zero?

      say format("phase %d: %d jobs, dump %.1f MB, %.1f s", phase, @jobs,
                 File.size(dump) / 1e6, now - t0)
      m
    end

    def write_expected(metas)
      last = metas.last
      counts = last["leak_counts"]
      stray = counts.keys - Array.new(PHASES, &:to_s)
      raise "leaked strings outside any phase: #{counts.slice(*stray)}" unless stray.empty?

      expected = {
        "leak_file" => last["leak_file"],
        "leak_line" => last["leak_line"],
        "leak_location" => "#{last["leak_file"]}:#{last["leak_line"]}",
        "type" => "STRING",
        "value_prefix" => "phase=N ",
        "per_phase" => Array.new(PHASES) { |p| [p.to_s, counts.fetch(p.to_s, 0)] }.to_h,
        "in_buffer_at_dump" => metas.map { |m| m["leak_counts"].values.sum },
        "jobs_per_phase" => @jobs,
        "dumps" => Array.new(PHASES) { |p| "#{p}.json" },
        "ruby_version" => last["ruby_version"],
        "pid" => last["pid"]
      }
      File.write(File.join(@outdir, "expected.json"), JSON.pretty_generate(expected) + "\n")
      say "expected: #{expected["leak_location"]} per phase #{expected["per_phase"]}"
    end

    # -- --verify ------------------------------------------------------------

    def verify
      expected = JSON.parse(File.read(File.join(@outdir, "expected.json")))
      file = expected["leak_file"]
      line = expected["leak_line"]
      ok = true
      Array.new(PHASES) { |p| p }.each do |p|
        path = File.join(@outdir, "#{p}.json")
        bad = []
        lines = 0
        by_phase = Hash.new(0)
        File.foreach(path, mode: "rb") do |l|
          lines += 1
          rec = begin
            JSON.parse(l)
          rescue JSON::ParserError, EncodingError
            bad << l
            next
          end
          next unless rec["type"] == "STRING" && rec["file"] == file && rec["line"] == line

          by_phase[rec["value"].to_s[/\Aphase=(\d+) /, 1]] += 1
        end
        say format("%s: %.1f MB, %d lines, %d not JSON; leak-line strings by phase %s",
                   path, File.size(path) / 1e6, lines, bad.size, by_phase)
        say "  first bad line: #{bad.first.byteslice(0, 300).inspect}" unless bad.empty?
        next unless p == PHASES - 1

        got = by_phase["1"]
        want = expected["per_phase"]["1"]
        ok &&= got == want
        say "#{got == want ? "OK" : "MISMATCH"}: phase=1 strings at #{file}:#{line} in #{path}: #{got}, expected #{want}"
      end
      ok
    end
  end
end

if $PROGRAM_NAME == __FILE__
  verify = !ARGV.delete("--verify").nil?
  if ARGV.empty? || ARGV.size > 2 || ARGV.any? { |a| a.start_with?("-") }
    warn "usage: ruby #{$PROGRAM_NAME} OUTDIR [JOBS_PER_PHASE] [--verify]"
    exit 2
  end
  jobs = Integer(ARGV[1] || SidekiqLeak::Runner::DEFAULT_JOBS_PER_PHASE)
  exit(SidekiqLeak::Runner.new(ARGV[0], jobs, verify: verify).run ? 0 : 1)
end
