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

  describe "a small gzip file that inflates to one record of gigabytes" do
    # 32 gzip members of 64 MB of "a" each (a multi-member stream, as gzip reads it):
    # about 2 MB on disk, one 2 GB line once inflated.
    def write_bomb(path)
      member = Zlib.gzip("a" * (64 << 20), level: 9)
      File.open(path, "wb") do |f|
        f.write(Zlib.gzip(%({"address":"0x1", "type":"STRING", "value":")))
        32.times { f.write(member) }
      end
    end

    it "raises ParseError naming the line in the loader and the redactor, and leaves no file behind" do
      bomb = File.join(@dir, "bomb.json.gz")
      write_bomb(bomb)
      expect(File.size(bomb)).to be < 3_000_000
      out_dir = File.join(@dir, "out")
      Dir.mkdir(out_dir)
      # A limit on the address space turns an unbounded allocation into an abort here,
      # whatever memory the machine has.
      out = child(<<~RUBY, bomb, out_dir, timeout: 300)
        Process.setrlimit(:AS, 3 << 30)
        [-> { Heapdiff.load(ARGV[0]) }, -> { Heapdiff.redact(ARGV[0], File.join(ARGV[1], "out.json")) }].each do |call|
          call.call
          puts "no error"
        rescue Heapdiff::ParseError => e
          puts "ParseError: \#{e.message}"
        end
        puts "left: \#{Dir.children(ARGV[1]).inspect}"
      RUBY
      reason = "a record longer than 256 MB, heapdiff's limit"
      expect(out.lines.grep(/ParseError/).map(&:chomp)).to eq(["ParseError: #{bomb}:1: not a heap dump record (#{reason})"] * 2)
      expect(out).to include("left: []")
    end
  end

  # Sizes that come from the input are allocated fallibly: what does not fit in the
  # memory left is an error naming the file and the line, never an abort.
  describe "allocations sized by the input that cannot be had" do
    it "loads a file whose size promises billions of objects by growing as records come" do
      # 70,000 small records, then zeros to 64 GB (a sparse file): the first batch's
      # objects per byte, scaled to the file's size, ask for ~1 billion rows at once.
      sparse = File.join(@dir, "sparse.json")
      records = Array.new(70_000) { |i| %({"address":"0x#{(i + 1).to_s(16)}", "type":"OBJECT", "memsize":40}\n) }
      File.binwrite(sparse, records.join)
      File.truncate(sparse, 64 << 30)
      out = child(<<~RUBY, sparse, timeout: 120)
        Process.setrlimit(:AS, 3 << 30)
        begin
          Heapdiff.load(ARGV[0])
          puts "no error"
        rescue Heapdiff::ParseError => e
          puts "ParseError line \#{e.line}: \#{e.message}"
        end
      RUBY
      # The zeros after the last record are part of it (they hold no newline): a record
      # longer than heapdiff's limit, or, first, longer than the memory the limit leaves.
      expect(out).to match(/^ParseError line 70000: #{Regexp.escape(sparse)}:70000: (not a heap dump record \(a record longer than 256 MB|too large to load: could not allocate \d+ MB for a record$)/)
    end

    it "refuses a record larger than the memory left with ParseError naming its line, in the redactor" do
      big = File.join(@dir, "big.json.gz")
      Zlib::GzipWriter.open(big) do |gz|
        gz.write(%({"address":"0x1", "type":"STRING", "value":"))
        chunk = "a" * (1 << 20)
        200.times { gz.write(chunk) }
        gz.write(%("}\n))
      end
      out_dir = File.join(@dir, "out")
      Dir.mkdir(out_dir)
      # Room for about 160 MB more than the process holds now: less than the line.
      out = child(<<~RUBY, big, out_dir, timeout: 120)
        vm_size = File.read("/proc/self/status")[/^VmSize:\\s+(\\d+)/, 1].to_i * 1024
        Process.setrlimit(:AS, vm_size + (160 << 20))
        begin
          Heapdiff.redact(ARGV[0], File.join(ARGV[1], "out.json"))
          puts "no error"
        rescue Heapdiff::ParseError => e
          puts "ParseError line \#{e.line}: \#{e.message}"
        end
        puts "left: \#{Dir.children(ARGV[1]).inspect}"
      RUBY
      expect(out).to match(/^ParseError line 1: #{Regexp.escape(big)}:1: too large to load: could not allocate \d+ MB for a record$/)
      expect(out).to include("left: []")
    end
  end
end
