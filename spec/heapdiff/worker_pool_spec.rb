# frozen_string_literal: true

require "io/wait"
require_relative "../support/fixtures"

# Long work runs on one worker pool per process, shared by concurrent calls. A forked
# child inherits the pool's bookkeeping but not its threads: it must build its own
# instead of waiting forever on threads that do not exist.
RSpec.describe "the worker pool" do
  let(:paths) { (0..2).map { |n| Fixtures.leak3("3.3", n) } }

  it "serves a forked child after the parent has used it" do
    expect(Heapdiff.diff(*paths).first.count).to eq(1000)

    reader, writer = IO.pipe
    pid = fork do
      reader.close
      writer.write(Heapdiff.diff(*paths).first.count.to_s)
      writer.close
      exit!(0)
    end
    writer.close
    # A child stuck on the parent's threads would never answer: bounded wait.
    answer = reader.wait_readable(60) && reader.read
    Process.kill(:KILL, pid) unless answer
    _, status = Process.wait2(pid)
    expect(answer).to eq("1000")
    expect(status.exitstatus).to eq(0)
  ensure
    reader&.close
  end

  it "runs concurrent loads from several Ruby threads to the same results" do
    sizes = paths.map { |path| Heapdiff.load(path).size }
    concurrent = Array.new(2) { paths.map { |path| Thread.new { Heapdiff.load(path).size } } }
                      .map { |threads| threads.map(&:value) }
    expect(concurrent).to all(eq(sizes))
  end
end
