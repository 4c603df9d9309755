# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# A real Puma cluster (Debian's puma) with 2 workers and heapdiff in config/puma.rb,
# either way the README gives. Each worker records its own snapshots, in
# HEAPDIFF_DIR/pid-PID, on HEAPDIFF_SIGNAL sent to it; the master records only when
# asked. One endpoint leaks; each worker counts what it leaked.
module PumaClusterRun
  APP = File.expand_path("../support/apps/puma_leak/config.ru", __dir__)
  LIB = File.expand_path("../../lib", __dir__)
  EXE = File.expand_path("../../exe/heapdiff", __dir__)
  REQUESTS = 20
  PER_REQUEST = 50

  module_function

  def workers(master)
    Dir.glob("/proc/[0-9]*/stat").filter_map do |stat|
      fields = File.read(stat).split(") ").last.split
      Integer(File.basename(File.dirname(stat))) if Integer(fields[1]) == master
    rescue Errno::ENOENT, Errno::ESRCH
      nil
    end
  end

  # The threads of +pid+ that are a recorder's (Linux keeps 15 bytes of a name).
  def recorder_threads(pid)
    Dir.glob("/proc/#{pid}/task/*/comm").count { |comm| File.read(comm).start_with?("heapdiff-record") }
  end

  def snapshots(dir)
    Dir.exist?(dir) ? Dir.children(dir).grep(/\Aheap-\d+\.json\z/).sort : []
  end

  # Runs the cluster with +heapdiff+ (lines of Ruby) at the top of config/puma.rb,
  # takes three snapshots of each worker with leaking requests between them, then
  # sends the master the signal too. Returns what it saw.
  def run(tmp, heapdiff)
    env, dir, counts = Processes.recording_env(tmp)
    Processes.with_puma(tmp, APP, heapdiff, env: env) do |master, port, log|
      # Booted, as Puma logs it, is after on_worker_boot: a signal sent before a worker's
      # recorder trapped it would be lost (SIGWINCH is ignored by default).
      Processes.wait_for("2 workers", timeout: 60) do
        workers(master).size == 2 && File.read(log).scan(/Worker \d+ \(PID: \d+\) booted/).size == 2 &&
          Processes.http_get(port, "/")
      end
      pids = workers(master).sort
      dirs = pids.to_h { |pid| [pid, File.join(dir, "pid-#{pid}")] }
      # Leaking requests between the snapshots, spread by Puma over both workers.
      3.times do |n|
        pids.each { |pid| Process.kill("WINCH", pid) }
        Processes.wait_for("snapshot #{n + 1} of both workers", timeout: 60) do
          dirs.values.all? { |d| snapshots(d).size == n + 1 }
        end
        REQUESTS.times { Processes.http_get(port, "/leak?phase=#{n + 1}&n=#{PER_REQUEST}") } if n < 2
      end
      result = { dir: dir, master: master, workers: pids, dirs: dirs,
                 master_threads: recorder_threads(master), master_before: snapshots(dir),
                 counts: pids.to_h { |pid| [pid, JSON.parse(File.read(File.join(counts, "#{pid}.json")))] } }
      # The worker that served most of the first phase's requests.
      worker = pids.max_by { |pid| result[:counts][pid]["leak_counts"].fetch("1", 0) }
      report = Open3.capture3(RbConfig.ruby, "-I", LIB, EXE, "report", dirs[worker])
      if result[:master_threads].positive?
        Process.kill("WINCH", master)
        Processes.wait_for("the master's snapshot", timeout: 60) { snapshots(dir).size == 1 }
      end
      result.merge(worker: worker, report: report, master_after: snapshots(dir))
    end
  end
end

RSpec.describe "Snapshots of a real Puma cluster" do
  shared_examples "a cluster whose workers record" do
    it "has each worker record in its own directory, with one recorder thread" do
      expect(run[:workers].size).to eq(2)
      run[:dirs].each do |pid, dir|
        expect(PumaClusterRun.snapshots(dir)).to eq(%w[heap-0001.json heap-0002.json heap-0003.json])
        metas = PumaClusterRun.snapshots(dir).map { |n| JSON.parse(File.read(File.join(dir, n.sub(".json", ".meta.json")))) }
        expect(metas.map { |m| m["pid"] }).to all(eq(pid))
        expect(File.stat(dir).mode & 0o777).to eq(0o700)
        expect(run[:counts][pid]["recorder_threads"]).to eq(1)
      end
      expect(run[:master_before]).to eq([])
    end

    it "lets `heapdiff report` on one worker's snapshots name the leaking line with the count that worker kept" do
      out, err, status = run[:report]
      expect(status).to be_success, err
      counts = run[:counts][run[:worker]]
      leaked = counts["leak_counts"]["1"]
      expect(leaked).to be_positive
      # Not necessarily the first line: on Rack 3 the first requests of a worker also
      # autoload parts of Rack, which the interval keeps too.
      line = out.lines.find { |l| l.chomp.end_with?(" at: #{counts["leak_file"]}:#{counts["leak_line"]}") }
      expect(line).to start_with("Retained STRING #{leaked} objects ")
    end
  end

  # Runs the cluster once for the examples of the context, with +heapdiff+ in config/puma.rb.
  def self.cluster_with(heapdiff)
    before(:all) do
      @tmp = Dir.mktmpdir("heapdiff-puma")
      @run = PumaClusterRun.run(@tmp, heapdiff)
    end
    after(:all) { FileUtils.rm_rf(@tmp) }
    let(:run) { @run }

    include_examples "a cluster whose workers record"
  end

  context 'with `require "heapdiff/auto"` in config/puma.rb' do
    cluster_with 'require "heapdiff/auto"'

    it "has the master record too, but only when asked" do
      expect(run[:master_threads]).to eq(1)
      expect(run[:master_after]).to eq(%w[heap-0001.json])
    end
  end

  context "with Heapdiff::Env.start in on_worker_boot" do
    cluster_with "require \"heapdiff\"\non_worker_boot { Heapdiff::Env.start }"

    it "has no recorder in the master" do
      expect(run[:master_threads]).to eq(0)
    end
  end
end
