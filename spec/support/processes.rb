# frozen_string_literal: true

require "json"
require "net/http"
require "open3"
require "rbconfig"
require "socket"
require "tempfile"

# Runs Ruby snippets in fresh processes with heapdiff's lib on the load path: what a
# process starts, loads and leaves behind can only be seen from outside it.
module Processes
  LIB = File.expand_path("../../lib", __dir__)

  module_function

  # Runs +code+ to the end. Returns [stdout and stderr, Process::Status].
  def ruby(code, *args, env: {})
    Open3.capture2e(env, RbConfig.ruby, "-I", LIB, "-e", code, *args)
  end

  # Runs +code+ like #ruby, but kills it (SIGKILL) if it has not ended after +timeout+
  # seconds: for what might hang or abort, which must fail a spec, not stop rspec.
  # Returns [stdout and stderr, Process::Status or nil when it was killed].
  def ruby_with_deadline(code, *args, timeout:, env: {})
    Tempfile.create("heapdiff-child") do |log|
      pid = spawn_ruby(code, *args, log: log.path, env: env)
      status = wait_with_deadline(pid, timeout)
      [File.read(log.path), status]
    end
  end

  # Waits for the child +pid+ at most +timeout+ seconds, then kills it (SIGKILL).
  # Returns its Process::Status, or nil when it had to be killed.
  def wait_with_deadline(pid, timeout)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until (status = Process.wait2(pid, Process::WNOHANG)&.last)
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        Process.kill(:KILL, pid)
        Process.wait(pid)
        return nil
      end
      sleep 0.01
    end
    status
  end

  # Starts +code+ in the background, output to +log+. Returns the pid.
  def spawn_ruby(code, *args, log:, env: {})
    Process.spawn(env, RbConfig.ruby, "-I", LIB, "-e", code, *args, in: File::NULL, out: log, err: %i[child out])
  end

  # A TCP port on 127.0.0.1 that nothing listens on (for a server a spec starts).
  def free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  # GET +path+ from a server on 127.0.0.1:+port+: the response, or nil while nothing
  # answers there.
  def http_get(port, path)
    Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 30) { |http| http.get(path) }
  rescue SystemCallError, IOError, Net::OpenTimeout
    nil
  end

  # Starts a Puma cluster (Debian's puma) with 2 workers of 1 thread each, serving the
  # rackup file +app+ on a free port of 127.0.0.1, in +tmp+, with +heapdiff+ (lines of
  # Ruby) at the top of its config and +env+ added (Bundler's left out). Output goes to
  # tmp/puma.log. Yields the master's pid, the port and the log's path, and returns
  # what the block returns; prints the log when the block fails, and stops the cluster
  # (#stop_group: the master leads its own process group).
  def with_puma(tmp, app, heapdiff, env:)
    port = free_port
    config = File.join(tmp, "puma.rb")
    File.write(config, <<~RUBY)
      #{heapdiff}
      workers 2
      threads 1, 1
      bind "tcp://127.0.0.1:#{port}"
      rackup #{app.dump}
      environment "production"
    RUBY
    log = File.join(tmp, "puma.log")
    puma = %w[/usr/bin/puma /usr/local/bin/puma].find { |p| File.file?(p) } || Gem.bin_path("puma", "puma")
    master = Process.spawn(env.merge("RUBYOPT" => nil, "BUNDLE_GEMFILE" => nil), RbConfig.ruby, "-I", LIB, puma,
                           "-C", config, chdir: tmp, in: File::NULL, out: log, err: %i[child out], pgroup: true)
    begin
      yield master, port, log
    rescue StandardError
      warn File.read(log)
      raise
    ensure
      stop_group(master)
    end
  end

  # Runs #with_puma with the rackup file +app+, each worker recording its own
  # snapshots (Heapdiff::Env.start in on_worker_boot, on SIGWINCH, in
  # TMP/snapshots/pid-PID) and its app writing counts to COUNTS_DIR (TMP/counts). Yields
  # the workers' pids (sorted, both booted), pid => its recorder's directory, the port
  # and a reader of the counts (pid => that worker's COUNTS_DIR/PID.json); returns what
  # the block returns.
  def with_recording_workers(tmp, app)
    env, dir, counts = recording_env(tmp)
    heapdiff = "require \"heapdiff\"\non_worker_boot { Heapdiff::Env.start }"
    with_puma(tmp, app, heapdiff, env: env) do |_master, port, log|
      pids = puma_workers(log, port)
      read = -> { pids.to_h { |pid| [pid, JSON.parse(File.read(File.join(counts, "#{pid}.json")))] } }
      yield pids, pids.to_h { |pid| [pid, File.join(dir, "pid-#{pid}")] }, port, read
    end
  end

  # The environment of a Puma cluster whose processes record snapshots on SIGWINCH
  # into TMP/snapshots (Heapdiff::Env) and whose app writes its counts into
  # TMP/counts (made here): [env, the snapshots' directory, the counts' directory].
  def recording_env(tmp)
    dir = File.join(tmp, "snapshots")
    counts = File.join(tmp, "counts")
    Dir.mkdir(counts)
    env = { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_EVERY" => "0", "HEAPDIFF_SIGNAL" => "WINCH",
            "COUNTS_DIR" => counts }
    [env, dir, counts]
  end

  # The pids of the 2 workers of the cluster #with_puma started, once both booted (as
  # Puma logs it: after on_worker_boot, where a recorder traps its signal) and the app
  # answers on +port+; sorted.
  def puma_workers(log, port)
    wait_for("2 workers", timeout: 60) do
      booted = File.read(log).scan(/Worker \d+ \(PID: (\d+)\) booted/).flatten.map(&:to_i)
      booted.sort if booted.size == 2 && http_get(port, "/")
    end
  end

  # Sends +signal+ to each pid of +dirs+ (pid => its recorder's directory) and waits
  # until each directory holds +count+ snapshots.
  def snapshot_each(dirs, count, signal: "WINCH")
    dirs.each_key { |pid| Process.kill(signal, pid) }
    wait_for("snapshot #{count} of pids #{dirs.keys.join(", ")}", timeout: 60) do
      dirs.values.all? { |dir| Dir.exist?(dir) && Dir.children(dir).grep(/\Aheap-\d+\.json\z/).size == count }
    end
  end

  # Stops the process group that +pid+ leads (spawned with pgroup: true): TERM, then
  # KILL if it has not exited after +grace+ seconds. Reaps +pid+.
  def stop_group(pid, grace: 10)
    Process.kill("TERM", -pid)
    wait_for("pid #{pid} to exit", timeout: grace) { Process.waitpid(pid, Process::WNOHANG) }
  rescue RuntimeError
    Process.kill("KILL", -pid)
    Process.wait(pid)
  end

  # Polls the block until it returns a truthy value, which it returns; fails after
  # +timeout+ seconds.
  def wait_for(what, timeout: 20)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      result = yield
      return result if result
      raise "timed out after #{timeout}s waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.005
    end
  end
end
