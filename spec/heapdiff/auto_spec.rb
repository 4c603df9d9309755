# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# `require "heapdiff/auto"`, the binstub line, and the HEAPDIFF_* variables it reads.
RSpec.describe "heapdiff/auto" do
  around do |example|
    Dir.mktmpdir("heapdiff-auto") do |tmp|
      @tmp = tmp
      example.run
    end
  end

  let(:dir) { File.join(@tmp, "snapshots") }

  # What the process has loaded and started after the require, as JSON.
  let(:state) { <<~RUBY }
    require "json"
    state = lambda do
      {
        "features" => $LOADED_FEATURES.grep(/heapdiff|objspace/).map { |f| File.basename(f) },
        "threads" => Thread.list.map(&:name),
        "heapdiff" => !defined?(Heapdiff).nil?,
        "tracing" => defined?(Heapdiff) ? Heapdiff.tracing? : false
      }
    end
  RUBY

  it "with HEAPDIFF unset or off loads nothing, starts no thread and leaves tracing off" do
    [nil, "", "0", "false", "off", "no"].each do |value|
      out, status = Processes.ruby(state + 'require "heapdiff/auto"; puts JSON.generate(state.call)',
                                   env: { "HEAPDIFF" => value, "HEAPDIFF_DIR" => dir })
      expect(status).to be_success, out
      expect(JSON.parse(out)).to eq(
        "features" => ["auto.rb"], "threads" => [nil], "heapdiff" => false, "tracing" => false
      ), "HEAPDIFF=#{value.inspect}"
    end
    expect(File.exist?(dir)).to be(false)
  end

  it "with HEAPDIFF=1 turns tracing on and records every HEAPDIFF_EVERY seconds, keeping HEAPDIFF_KEEP" do
    code = state + <<~RUBY
      require "heapdiff/auto"
      sleep 0.05 until Dir.exist?(ARGV[0]) && Dir.children(ARGV[0]).grep(/\\Aheap-0004\\.json\\z/).any?
      running = state.call
      Heapdiff::Env.recorder.stop
      puts JSON.generate(running)
    RUBY
    out, status = Processes.ruby(code, dir, env: {
                                   "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_EVERY" => "0.1", "HEAPDIFF_KEEP" => "2"
                                 })
    expect(status).to be_success, out
    running = JSON.parse(out.lines.last)
    expect(running).to include("heapdiff" => true, "tracing" => true, "threads" => [nil, "heapdiff-recorder"])
    expect(running["features"]).not_to include("heapdiff.so") # snapshots need no native code
    expect(running["features"]).to include("recorder.rb", "objspace.so")
    expect(out).to include("heapdiff: recording snapshots in #{dir} every 0.1 s, keeping 2")
    numbers = Heapdiff::Snapshot.list(dir).map { |s| s.meta["dump"][/\d+/].to_i }
    expect(numbers.size).to eq(2)
    expect(numbers.first).to be >= 3
    expect(numbers.last).to eq(numbers.first + 1)
    expect(Dir.children(dir).size).to eq(4)
  end

  it "takes a snapshot on HEAPDIFF_SIGNAL" do
    log = File.join(@tmp, "log")
    code = 'require "heapdiff/auto"; puts "ready"; $stdout.flush; sleep'
    pid = Processes.spawn_ruby(code, log: log, env: {
                                 "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_EVERY" => "0",
                                 "HEAPDIFF_SIGNAL" => "USR2"
                               })
    begin
      Processes.wait_for("the process to start") { File.read(log).include?("ready") }
      expect(Dir.exist?(dir)).to be(false)
      Process.kill("USR2", pid)
      Processes.wait_for("the snapshot") { File.read(log).include?("heap-0001.json (SIGUSR2") }
      expect(Heapdiff::Snapshot.list(dir).size).to eq(1)
    ensure
      Process.kill("KILL", pid)
      Process.wait(pid)
    end
  end

  it "says what is wrong with a setting, and starts nothing" do
    {
      { "HEAPDIFF_EVERY" => "soon" } => "heapdiff: HEAPDIFF_EVERY=soon is not a number of seconds; heapdiff stays off",
      { "HEAPDIFF_SIGNAL" => "NOPE" } => 'heapdiff: signal: "NOPE" is not a signal name; heapdiff stays off',
      { "HEAPDIFF_RSS_LIMIT" => "lots" } =>
        'heapdiff: HEAPDIFF_RSS_LIMIT must be a positive number of bytes (1.5G, 800M), got "lots"; heapdiff stays off',
      { "HEAPDIFF_RSS_STEP" => "-1" } =>
        "heapdiff: HEAPDIFF_RSS_STEP=-1 is not a positive fraction (0.2 for 20%); heapdiff stays off"
    }.each do |env, message|
      out, status = Processes.ruby(state + 'require "heapdiff/auto"; puts JSON.generate(state.call)',
                                   env: { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir }.merge(env))
      expect(status).to be_success, out
      expect(out.lines.first.chomp).to eq(message)
      expect(JSON.parse(out.lines.last)).to include("threads" => [nil], "tracing" => false)
    end
    expect(File.exist?(dir)).to be(false)
  end

  # Boot goes on, and the process is as if heapdiff were absent: no thread, tracing
  # off, no directory, the signal's handler untouched.
  it "refuses a signal it cannot trap, and leaves nothing on" do
    probe = 'h = Signal.trap("USR1", "DEFAULT"); puts JSON.generate(state.call.merge("usr1" => h.inspect))'
    %w[KILL STOP SEGV VTALRM BUS ILL FPE EXIT].each do |signal|
      out, status = Processes.ruby(state + "require 'heapdiff/auto'; #{probe}",
                                   env: { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_SIGNAL" => signal })
      expect(status).to be_success, out
      expect(out.lines.first).to start_with("heapdiff: signal: SIG#{signal} cannot be trapped (")
      expect(out.lines.first.chomp).to end_with("); heapdiff stays off")
      expect(JSON.parse(out.lines.last)).to include("threads" => [nil], "tracing" => false, "usr1" => '"DEFAULT"')
    end
    expect(File.exist?(dir)).to be(false)
  end

  it "says so when HEAPDIFF_EVERY_JOBS is set in a process that is not a Sidekiq server" do
    out, status = Processes.ruby(state + <<~RUBY, env: { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir, "HEAPDIFF_EVERY_JOBS" => "5" })
      require "heapdiff/auto"
      chain = Sidekiq.respond_to?(:default_configuration) ? Sidekiq.default_configuration.server_middleware : Sidekiq.server_middleware
      puts JSON.generate(state.call.merge("chain" => chain.entries.map { |e| e.klass.name }))
    RUBY
    expect(status).to be_success, out
    expect(out.lines.first.chomp).to eq("heapdiff: HEAPDIFF_EVERY_JOBS: -e has not loaded Sidekiq::CLI (not a Sidekiq " \
                                        "server, or a binstub not named sidekiq): no snapshots between jobs")
    expect(JSON.parse(out.lines.last)["chain"]).not_to include("Heapdiff::Sidekiq::Middleware")
  end

  it "undoes what it began when starting fails late, and says so" do
    # The recorder's thread starts last, after tracing; here it fails as running out of
    # file descriptors for its pipe would.
    out, status = Processes.ruby(state + <<~RUBY, env: { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => dir })
      require "heapdiff"
      Heapdiff::Recorder.prepend(Module.new { def start = raise(Errno::EMFILE, "pipe") })
      require "heapdiff/auto"
      puts JSON.generate(state.call)
    RUBY
    expect(status).to be_success, out
    expect(out.lines.first.chomp).to eq("heapdiff: Too many open files - pipe; heapdiff stays off")
    expect(JSON.parse(out.lines.last)).to include("threads" => [nil], "tracing" => false)
  end
end

RSpec.describe Heapdiff::Env do
  it "reads the defaults" do
    expect(described_class.settings({ "HEAPDIFF" => "1" })).to eq(
      dir: "tmp/heapdiff", every: 300, keep: 10, signal: nil, fork: false, gzip: false, trace: true, every_jobs: nil,
      after_fork: :restart, rss_limit: nil, rss_step: 0.2
    )
  end

  it "reads every variable" do
    env = {
      "HEAPDIFF_DIR" => "/var/dumps", "HEAPDIFF_EVERY" => "0", "HEAPDIFF_KEEP" => "3",
      "HEAPDIFF_SIGNAL" => " USR2 ", "HEAPDIFF_FORK" => "yes", "HEAPDIFF_GZIP" => "1", "HEAPDIFF_TRACE" => "off",
      "HEAPDIFF_AFTER_FORK" => "stop", "HEAPDIFF_RSS_LIMIT" => "1.5G", "HEAPDIFF_RSS_STEP" => "0.5"
    }
    expect(described_class.settings(env)).to eq(
      dir: "/var/dumps", every: nil, keep: 3, signal: "USR2", fork: true, gzip: true, trace: false, every_jobs: nil,
      after_fork: :stop, rss_limit: 3 << 29, rss_step: 0.5
    )
  end

  it "takes no timer by default for a Sidekiq server, unless HEAPDIFF_EVERY is set" do
    expect(described_class.settings({ "HEAPDIFF_EVERY_JOBS" => "500" })).to include(every_jobs: 500, every: nil)
    expect(described_class.settings({ "HEAPDIFF_EVERY_JOBS" => "5", "HEAPDIFF_EVERY" => "60" }))
      .to include(every_jobs: 5, every: 60.0)
  end

  it "names the variable that does not parse" do
    [%w[HEAPDIFF_EVERY -1], %w[HEAPDIFF_KEEP 0], %w[HEAPDIFF_KEEP many], %w[HEAPDIFF_FORK maybe],
     %w[HEAPDIFF_EVERY_JOBS 1.5], %w[HEAPDIFF_AFTER_FORK sometimes]].each do |name, value|
      expect { described_class.settings({ name => value }) }.to raise_error(ArgumentError, /\A#{name}=#{Regexp.escape(value)} /)
    end
  end

  it "knows the switch" do
    expect(%w[1 true yes on anything].map { |v| described_class.on?({ "HEAPDIFF" => v }) }).to all(be(true))
    expect([nil, "", " ", "0", "false", "FALSE", "no", "off"].map { |v| described_class.on?({ "HEAPDIFF" => v }.compact) })
      .to all(be(false))
  end
end
