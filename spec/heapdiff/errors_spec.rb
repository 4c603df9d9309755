# frozen_string_literal: true

require "tmpdir"
require_relative "../support/clock"
require_relative "../support/fixtures"
require_relative "../support/processes"

# An error says what happened: the SnapshotError of a failed snapshot is not replaced
# by the Errno of its cleanup, a failed snapshot leaves no sidecar behind, and a file
# cut while it was read is reported as such, not as a broken dump.
RSpec.describe "Errors that say what happened" do
  around do |example|
    Dir.mktmpdir("heapdiff-errors") do |dir|
      @dir = dir
      example.run
    end
  end

  # In an append-only directory (chattr +a), files can be made but not removed: the
  # snapshot fails, and so does every cleanup after it.
  it "raises SnapshotError, not the Errno of the cleanup, when the directory refuses removals" do
    dir = File.join(@dir, "append-only")
    Dir.mkdir(dir)
    _, status = Processes.ruby("exit(system('chattr', '+a', ARGV[0], err: File::NULL) ? 0 : 1)", dir)
    skip "chattr +a is not available here (needs root and ext4-like file systems)" unless status.success?

    begin
      out, status = Processes.ruby(<<~RUBY, dir)
        require "heapdiff"
        begin
          Heapdiff.snapshot(dir: ARGV[0])
          puts "written"
        rescue Exception => e
          puts "raised \#{e.class}"
        end
      RUBY
      expect(status.success?).to be(true), out
      expect(out).to include("raised Heapdiff::SnapshotError")
    ensure
      system("chattr", "-a", dir)
    end
  end

  it "leaves no PATH.meta.json when snapshot(PATH) fails" do
    path = File.join(@dir, "heap.json")
    Dir.mkdir(path) # the dump cannot take this name
    out, status = Processes.ruby(<<~RUBY, path)
      require "heapdiff"
      begin
        Heapdiff.snapshot(ARGV[0])
      rescue Heapdiff::SnapshotError => e
        puts "SnapshotError"
      end
    RUBY
    expect(status.success?).to be(true), out
    expect(out).to include("SnapshotError")
    expect(Dir.children(@dir)).to eq(["heap.json"])
  end

  it "says that a file truncated during the load shrank while it was read" do
    path = File.join(@dir, "big.json")
    one = File.binread(Fixtures.dump("3.3"))
    File.open(path, "wb") { |f| 20.times { f.write(one) } }
    full = Clock.elapsed { Heapdiff.load(path) }
    loading = Thread.new { Heapdiff.load(path) }
    sleep full / 5
    File.truncate(path, (File.size(path) / 2) + 17) # mid-record
    heap = loading.value
    expect(heap.warnings).to include(match(/shrank from \d+ to \d+ bytes while it was read/))
    expect(heap.warnings.grep(/Ruby 3\.0|truncated \(the dump was cut short\)/)).to eq([])
  end
end

# ParseError#path and #line are data the extension sets, not read back out of the
# message: a path that itself looks like "file:LINE:" must come back whole.
RSpec.describe Heapdiff::ParseError do
  it "carries the path and line of the first line that is no record" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "notes:12:x.json")
      # Line 2's address does not fit in 64 bits: no record.
      File.write(path, %({"address":"0x1", "type":"STRING"}\n{"address":"0x1ffffffffffffffff", "type":"STRING"}\n))
      expect { Heapdiff.load(path) }.to raise_error(described_class) { |e|
        expect([e.path, e.line]).to eq([path, 2])
        expect(e.message).to start_with("#{path}:2: not a heap dump record")
      }
    end
  end

  it "is raised by Heapdiff.redact with the same data" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "page:7:.html")
      File.write(path, "<html>\n")
      expect { Heapdiff.redact(path, File.join(dir, "out.json")) }.to raise_error(described_class) { |e|
        expect([e.path, e.line]).to eq([path, 1])
      }
    end
  end
end
