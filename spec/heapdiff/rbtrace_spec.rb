# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# rbtrace, from outside a running process that loaded rbtrace and heapdiff (Debian's
# ruby-rbtrace): the README's command writes a complete snapshot, and the process goes
# on. Each process counted the strings it keeps; the snapshot holds exactly those.
module RbtraceRun
  LIB = File.expand_path("../../lib", __dir__)
  APPS = File.expand_path("../support/apps", __dir__)
  COMMAND = "Heapdiff.snapshot(fork: true)"
  # What rbtrace 0.5 says when the process's main thread does not run Ruby code while
  # it signals: https://github.com/tmm1/rbtrace/issues/97 (Puma on Ruby 3.3).
  NOT_LISTENING = "pid is not listening for messages"

  module_function

  def rbtrace
    ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "rbtrace") }.find { |p| File.executable?(p) }
  end

  # Starts +argv+ (with +env+) in +tmp+, waits until +ready+ (called with the pid)
  # returns true, runs rbtrace against it and waits for the snapshot. Returns what it
  # saw: rbtrace's output and status, the Snapshot, the process's own counts, and
  # whether it still ran afterwards.
  def run(tmp, argv, ready:, alive:, env: {})
    counts = File.join(tmp, "counts")
    FileUtils.mkdir_p(counts)
    log = File.join(tmp, "server.log")
    env = { "COUNTS_DIR" => counts, "RUBYOPT" => nil, "BUNDLE_GEMFILE" => nil }.merge(env)
    pid = Process.spawn(env, RbConfig.ruby, "-I", LIB, *argv, chdir: tmp, in: File::NULL, out: log,
                                                              err: %i[child out], pgroup: true)
    begin
      Processes.wait_for("the process", timeout: 60) { ready.call(pid) }
      out, status = Open3.capture2e(rbtrace, "-p", pid.to_s, "-e", COMMAND)
      result = { pid: pid, out: out, status: status }
      return result if out.include?(NOT_LISTENING)

      dir = File.join(tmp, "tmp", "heapdiff")
      Processes.wait_for("the snapshot", timeout: 60) { Heapdiff::Snapshot.list(dir).first&.complete? }
      result.merge(snapshot: Heapdiff::Snapshot.list(dir).first, alive: alive.call(pid),
                   counts: JSON.parse(File.read(File.join(counts, "#{pid}.json"))))
    rescue StandardError
      warn File.read(log)
      raise
    ensure
      # A Puma that rbtrace could not reach was seen to ignore TERM (Puma 8, rbtrace 0.5.5).
      Processes.stop_group(pid)
    end
  end
end

RSpec.describe "A snapshot taken with rbtrace from outside" do
  before(:all) { skip "rbtrace is not installed (Debian's ruby-rbtrace; bin/setup installs it)" unless RbtraceRun.rbtrace }

  shared_examples "a snapshot through rbtrace" do
    it "is complete, of that process, which goes on" do
      expect(run[:status]).to be_success, run[:out]
      expect(run[:out]).to include(">> #{RbtraceRun::COMMAND}")
      expect(run[:snapshot].meta).to include("pid" => run[:pid], "forked" => true)
      expect(File.stat(run[:snapshot].path).mode & 0o777).to eq(0o600)
      expect(run[:alive]).to be_truthy
    end

    it "holds exactly the strings the process counted" do
      leaked = run[:counts]["leak_counts"]["1"]
      expect(leaked).to eq(300)
      heap = Heapdiff.load(run[:snapshot].path)
      expect(heap.each.count { |o| o.type == "STRING" && o.value.to_s.match?(/\Aphase=1 item \d+\z/) }).to eq(leaked)
    end
  end

  # Runs once for the examples of the context; the examples are pending where rbtrace
  # cannot reach the process at all, and fail if it then can.
  def self.run_once(&)
    before(:all) do
      @tmp = Dir.mktmpdir("heapdiff-rbtrace")
      @run = instance_exec(@tmp, &)
    end
    before do
      if @run[:out].include?(RbtraceRun::NOT_LISTENING)
        pending("this rbtrace cannot reach a process whose main thread waits (tmm1/rbtrace#97)")
      end
    end
    after(:all) { FileUtils.rm_rf(@tmp) if @tmp }
    let(:run) { @run }
  end

  context "of a worker whose main thread runs a job loop" do
    run_once do |tmp|
      ready = ->(pid) { File.exist?(File.join(tmp, "counts", "#{pid}.json")) }
      alive = ->(pid) { Process.waitpid(pid, Process::WNOHANG).nil? }
      RbtraceRun.run(tmp, [File.join(RbtraceRun::APPS, "job_loop.rb")], env: { "LEAK" => "300" }, ready: ready, alive: alive)
    end

    include_examples "a snapshot through rbtrace"
  end

  context "of a Puma server (single mode) that loaded rbtrace in config/puma.rb" do
    run_once do |tmp|
      port = Processes.free_port
      File.write(File.join(tmp, "puma.rb"), <<~RUBY)
        require "rbtrace"
        require "heapdiff"
        threads 1, 1
        bind "tcp://127.0.0.1:#{port}"
        rackup #{File.join(RbtraceRun::APPS, "puma_leak", "config.ru").dump}
        environment "production"
      RUBY
      puma = %w[/usr/bin/puma /usr/local/bin/puma].find { |p| File.file?(p) } || Gem.bin_path("puma", "puma")
      ready = lambda do |_pid|
        Processes.http_get(port, "/") && 3.times.all? { Processes.http_get(port, "/leak?phase=1&n=100") }
      end
      RbtraceRun.run(tmp, [puma, "-C", "puma.rb"], ready: ready, alive: ->(_pid) { Processes.http_get(port, "/") })
    end

    include_examples "a snapshot through rbtrace"
  end
end
