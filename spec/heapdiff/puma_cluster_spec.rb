# frozen_string_literal: true

require "json"
require "net/http"
require "open3"
require "socket"
require "tmpdir"
require_relative "../support/processes"

# A real Puma cluster (Debian's puma) with 2 workers and `require "heapdiff/auto"` at
# the top of config/puma.rb. Each worker records its own snapshots, in
# HEAPDIFF_DIR/pid-PID; the master takes one only when asked (HEAPDIFF_SIGNAL, sent
# to the workers here). One endpoint leaks; each worker counts what it leaked.
RSpec.describe "Snapshots of a real Puma cluster" do
  app = File.expand_path("../support/apps/puma_leak/config.ru", __dir__)
  lib = File.expand_path("../../lib", __dir__)
  exe = File.expand_path("../../exe/heapdiff", __dir__)
  requests = 20
  per_request = 50

  def free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  def get(port, path)
    Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 30) { |http| http.get(path) }
  end

  def up?(port)
    get(port, "/")
  rescue SystemCallError, IOError, Net::OpenTimeout
    false
  end

  def workers(master)
    Dir.glob("/proc/[0-9]*/stat").filter_map do |stat|
      fields = File.read(stat).split(") ").last.split
      Integer(File.basename(File.dirname(stat))) if Integer(fields[1]) == master
    rescue Errno::ENOENT, Errno::ESRCH
      nil
    end
  end

  def snapshots(dir)
    Dir.exist?(dir) ? Dir.children(dir).grep(/\Aheap-\d+\.json\z/).sort : []
  end

  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-puma")
    @dir = File.join(@tmp, "snapshots")
    counts = File.join(@tmp, "counts")
    Dir.mkdir(counts)
    port = free_port
    config = File.join(@tmp, "puma.rb")
    File.write(config, <<~RUBY)
      require "heapdiff/auto"
      workers 2
      threads 1, 1
      bind "tcp://127.0.0.1:#{port}"
      rackup #{app.dump}
      environment "production"
    RUBY
    log = File.join(@tmp, "puma.log")
    env = { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => @dir, "HEAPDIFF_EVERY" => "0", "HEAPDIFF_SIGNAL" => "WINCH",
            "COUNTS_DIR" => counts, "RUBYOPT" => nil, "BUNDLE_GEMFILE" => nil }
    puma = %w[/usr/bin/puma /usr/local/bin/puma].find { |p| File.file?(p) } || Gem.bin_path("puma", "puma")
    @master = Process.spawn(env, RbConfig.ruby, "-I", lib, puma, "-C", config, chdir: @tmp, in: File::NULL,
                                                                               out: log, err: %i[child out], pgroup: true)
    begin
      Processes.wait_for("2 workers", timeout: 60) { workers(@master).size == 2 && up?(port) }
      @workers = workers(@master).sort
      @dirs = @workers.to_h { |pid| [pid, File.join(@dir, "pid-#{pid}")] }
      # Three snapshots of each worker, and leaking requests between them, spread by
      # Puma over both workers.
      3.times do |n|
        @workers.each { |pid| Process.kill("WINCH", pid) }
        Processes.wait_for("snapshot #{n + 1} of both workers", timeout: 60) do
          @dirs.values.all? { |d| snapshots(d).size == n + 1 }
        end
        requests.times { get(port, "/leak?phase=#{n + 1}&n=#{per_request}") } if n < 2
      end
      @counts = @workers.to_h { |pid| [pid, JSON.parse(File.read(File.join(counts, "#{pid}.json")))] }
      # The worker that served most of the first phase's requests.
      @worker = @workers.max_by { |pid| @counts[pid]["leak_counts"].fetch("1", 0) }
      @report, @report_err, @report_status = Open3.capture3(RbConfig.ruby, "-I", lib, exe, "report", @dirs[@worker])
    rescue StandardError
      warn File.read(log)
      raise
    ensure
      Process.kill("TERM", -@master)
      Process.wait(@master)
    end
    @log = File.read(log)
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  it "has each worker record in its own directory, one recorder thread each, and the master record nothing unasked" do
    expect(@workers.size).to eq(2)
    @dirs.each do |pid, dir|
      expect(snapshots(dir)).to eq(%w[heap-0001.json heap-0002.json heap-0003.json])
      metas = snapshots(dir).map { |n| JSON.parse(File.read(File.join(dir, n.sub(".json", ".meta.json")))) }
      expect(metas.map { |m| m["pid"] }).to all(eq(pid))
      expect(File.stat(dir).mode & 0o777).to eq(0o700)
      expect(@counts[pid]["recorder_threads"]).to eq(1)
    end
    expect(snapshots(@dir)).to eq([])
  end

  it "lets `heapdiff report` on one worker's snapshots name the leaking line with the count that worker kept" do
    expect(@report_status).to be_success, @report_err
    counts = @counts[@worker]
    leaked = counts["leak_counts"]["1"]
    expect(leaked).to be_positive
    expect(@report.lines.first).to start_with("Retained STRING #{leaked} objects ")
    expect(@report.lines.first.chomp).to end_with(" at: #{counts["leak_file"]}:#{counts["leak_line"]}")
  end
end
