# frozen_string_literal: true

require "tmpdir"
require "zlib"
require_relative "support/processes"

# heapdiff runs inside someone else's process: no input may hang it, abort it or
# make it hold memory that Ruby's GC does not know about. Each case runs in a child
# process, so that a hang or an abort fails the spec instead of stopping rspec.
RSpec.describe "Safety of the host process" do
  around do |example|
    Dir.mktmpdir("heapdiff-host") do |dir|
      @dir = dir
      example.run
    end
  end

  # Runs +code+ in a child with heapdiff loaded; returns its output, failing on a hang
  # or a crash.
  def child(code, *args, timeout: 60)
    out, status = Processes.ruby_with_deadline("require 'heapdiff'\n#{code}", *args, timeout: timeout)
    expect(status).not_to be_nil, "the child hung and was killed after #{timeout} s:\n#{out}"
    expect(status.success?).to be(true), "the child failed (#{status.inspect}):\n#{out}"
    out
  end

  describe "a FIFO given as a dump" do
    it "is refused with FileError by load and redact, without waiting for a writer" do
      fifo = File.join(@dir, "dump.json")
      File.mkfifo(fifo)
      out = child(<<~RUBY, fifo, File.join(@dir, "out.json"), timeout: 20)
        [-> { Heapdiff.load(ARGV[0]) }, -> { Heapdiff.redact(ARGV[0], ARGV[1]) }].each do |call|
          call.call
          puts "no error"
        rescue Heapdiff::FileError => e
          puts "FileError: \#{e.message}"
        end
      RUBY
      expect(out.lines.grep(/FileError: .*not a regular file/).size).to eq(2), out
    end
  end
end
