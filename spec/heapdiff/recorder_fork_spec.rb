# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# The process that started a recorder owns it; a forked child gets a fresh one
# (after_fork: :restart, in DIR/pid-PID) or none (after_fork: :stop). Each example
# runs in a child Ruby of its own: it forks, traps signals and daemonizes.
RSpec.describe "A Recorder across fork" do
  around do |example|
    Dir.mktmpdir("heapdiff-recorder-fork") do |tmp|
      @tmp = tmp
      example.run
    end
  end

  let(:dir) { File.join(@tmp, "snapshots") }

  # Runs +code+ with heapdiff loaded, a Recorder on USR2 in +recorder+ and helpers;
  # returns the JSON it prints last.
  def run(code, after_fork: :restart)
    prelude = <<~RUBY
      require "heapdiff"
      require "json"
      require "logger"
      $stdout.sync = true
      def wait_for(what)
        200.times { return if yield; sleep 0.05 }
        raise "timed out waiting for \#{what}"
      end
      def snapshots(dir)
        Dir.exist?(dir) ? Dir.children(dir).grep(/\\Aheap-\\d+\\.json\\z/).sort : []
      end
      def recorder_threads
        Thread.list.count { |t| t.name == "heapdiff-recorder" && t.alive? }
      end
      recorder = Heapdiff::Recorder.start(dir: ARGV[0], every: nil, signal: "USR2", after_fork: :#{after_fork},
                                          logger: Logger.new($stderr))
    RUBY
    out, status = Processes.ruby(prelude + code, dir)
    expect(status).to be_success, out
    JSON.parse(out.lines.last)
  end

  it "restarts in a forked child, in its own directory, once; the child's stop and restart leave the parent's alone" do
    result = run(<<~RUBY)
      reader, writer = IO.pipe
      child = fork do
        reader.close
        mine = File.join(ARGV[0], "pid-\#{Process.pid}")
        state = { "running" => recorder.running?, "dir" => recorder.dir == mine, "threads" => recorder_threads }
        Process.kill("USR2", Process.pid)
        wait_for("the child's snapshot") { snapshots(mine).size == 1 }
        recorder.stop
        recorder.start          # what restarted in a worker and then got its signal died of
        Process.kill("USR2", Process.pid)
        wait_for("the child's second snapshot") { snapshots(mine).size == 2 }
        recorder.stop
        writer.puts(JSON.generate(state.merge("snapshots" => snapshots(mine))))
        exit!(0)
      end
      writer.close
      child_state = JSON.parse(reader.read)
      Process.wait(child)
      child_ok = $?.success?
      Process.kill("USR2", Process.pid)
      wait_for("the parent's snapshot") { snapshots(ARGV[0]).size == 1 }
      puts JSON.generate("child" => child_state, "child_ok" => child_ok, "running" => recorder.running?,
                         "threads" => recorder_threads, "snapshots" => snapshots(ARGV[0]))
      recorder.stop
    RUBY
    expect(result["child_ok"]).to be(true)
    expect(result["child"]).to eq("running" => true, "dir" => true, "threads" => 1,
                                  "snapshots" => %w[heap-0001.json heap-0002.json])
    expect(result).to include("running" => true, "threads" => 1, "snapshots" => %w[heap-0001.json])
  end

  it "with after_fork: :stop leaves the child no recorder, and its signal to the handler it replaced" do
    result = run(<<~RUBY, after_fork: :stop)
      reader, writer = IO.pipe
      child = fork do
        reader.close
        caught = Queue.new
        state = { "running" => recorder.running?, "threads" => recorder_threads }
        previous = Signal.trap("USR2") { caught << :usr2 }
        state["previous"] = previous.inspect
        Signal.trap("USR2", previous)
        writer.puts(JSON.generate(state))
        exit!(0)
      end
      writer.close
      child_state = JSON.parse(reader.read)
      Process.wait(child)
      puts JSON.generate("child" => child_state, "running" => recorder.running?)
      recorder.stop
    RUBY
    expect(result["child"]).to eq("running" => false, "threads" => 0, "previous" => '"DEFAULT"')
    expect(result["running"]).to be(true)
  end

  it "restarts after Process.daemon" do
    out_file = File.join(@tmp, "daemon.json")
    run(<<~RUBY)
      Process.daemon(true, true)
      mine = File.join(ARGV[0], "pid-\#{Process.pid}")
      Process.kill("USR2", Process.pid)
      wait_for("the daemon's snapshot") { snapshots(mine).size == 1 }
      File.write(#{out_file.dump}, JSON.generate("running" => recorder.running?, "threads" => recorder_threads,
                                                  "snapshots" => snapshots(mine)))
      recorder.stop
      puts "{}"
    RUBY
    Processes.wait_for("the daemon") { File.exist?(out_file) && !File.empty?(out_file) }
    expect(JSON.parse(File.read(out_file))).to eq("running" => true, "threads" => 1, "snapshots" => %w[heap-0001.json])
  end
end

RSpec.describe "Heapdiff::Env.start in a forked child" do
  %w[restart stop].each do |after_fork|
    it "with HEAPDIFF_AFTER_FORK=#{after_fork} returns a recorder of the child's own, running there" do
      Dir.mktmpdir("heapdiff-env-fork") do |tmp|
        env = { "HEAPDIFF" => "1", "HEAPDIFF_DIR" => tmp, "HEAPDIFF_EVERY" => "0", "HEAPDIFF_SIGNAL" => "USR2",
                "HEAPDIFF_AFTER_FORK" => after_fork }
        out, status = Processes.ruby(<<~RUBY, env: env)
          require "heapdiff/auto"
          require "json"
          master = Heapdiff::Env.recorder
          reader, writer = IO.pipe
          child = fork do
            worker = Heapdiff::Env.start
            writer.puts(JSON.generate("running" => worker.running?, "dir" => worker.dir,
                                      "threads" => Thread.list.count { |t| t.name == "heapdiff-recorder" }))
            exit!(0)
          end
          writer.close
          state = JSON.parse(reader.read)
          Process.wait(child)
          puts JSON.generate(state.merge("child" => child, "master" => master.running? && Heapdiff::Env.start.equal?(master)))
        RUBY
        expect(status).to be_success, out
        result = JSON.parse(out.lines.last)
        expect(result).to include("running" => true, "threads" => 1, "master" => true,
                                  "dir" => File.join(tmp, "pid-#{result["child"]}"))
      end
    end
  end
end
