# frozen_string_literal: true

require "open3"
require "tmpdir"
require "zlib"
require_relative "../support/processes"

# Dumps hold every string of the process. A redacted dump holds none of them, and
# still diffs and paths the same as the dump it came from.
RSpec.describe "Redacting dumps" do
  secret = "hunter2-s3cr3t"
  define_method(:secret) { secret }

  # A child process retains 40 strings holding the secret between its first two
  # snapshots, then takes a third; and a redacted snapshot of each kind.
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-redact")
    out, status = Processes.ruby(<<~RUBY, @dir)
      require "heapdiff"
      require "objspace"
      dir = ARGV[0]
      ObjectSpace.trace_object_allocations_start
      $leak = []
      Heapdiff.snapshot(File.join(dir, "0.json"))
      40.times { |i| $leak << "#{secret}-" + i.to_s }
      # What the strings take, from this Ruby (40 bytes each on 3.1, 80 on 3.3).
      File.write(File.join(dir, "leak-memsize"), $leak.sum { |s| ObjectSpace.memsize_of(s) })
      Heapdiff.snapshot(File.join(dir, "1.json"))
      Heapdiff.snapshot(File.join(dir, "2.json"))
      Heapdiff.snapshot(File.join(dir, "r.json"), redact: true)
      Heapdiff.snapshot(File.join(dir, "r.json.gz"), redact: true, gzip: true)
      Heapdiff.snapshot(File.join(dir, "rf.json.gz"), redact: true, gzip: true, fork: true).wait
    RUBY
    raise "child failed: #{out}" unless status.success?

    @leak_memsize = Integer(File.read(File.join(@dir, "leak-memsize")))
    @originals = (0..2).map { |n| File.join(@dir, "#{n}.json") }
    @redacted = @originals.map { |path| path.sub(/(\d)\.json\z/, 'redacted-\1.json') }
    @stats = @originals.zip(@redacted).map { |input, output| Heapdiff.redact(input, output) }
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  def text(path)
    File.binread(path).then { |bytes| bytes.start_with?("\x1f\x8b".b) ? Zlib.gunzip(bytes) : bytes }
  end

  def summary(paths)
    report = Heapdiff.diff(*paths)
    leak = report.find { |group| group.type == "STRING" && group.count == 40 }
    path = report.after.path_to_root(leak.sample(1).first)
    [report.map { |g| [g.label, g.location, g.count, g.memsize] }, report.total_count, path.to_s]
  end

  it "removes every value, the planted secret among them" do
    expect(text(@originals[1]).scan(/"#{secret}-\d+"/).size).to eq(40)
    @redacted.each do |path|
      expect(text(path)).not_to include(secret)
      expect(text(path)).not_to include('"value":')
    end
    values = text(@originals[1]).lines.count { |line| line.include?('"value":') }
    expect(@stats[1]).to include(values_removed: values, rebuilt_records: 0, records: text(@originals[1]).lines.size)
  end

  it "keeps what a diff and a retention path need: the same groups, counts and path" do
    original = summary(@originals)
    expect(original[0]).to include(["STRING", "-e:7", 40, @leak_memsize])
    expect(original[2]).to start_with("ROOT ").and include("ARRAY")
    expect(summary(@redacted)).to eq(original)
  end

  it "loads to the same objects, references and roots" do
    a = Heapdiff.load(@originals[1])
    b = Heapdiff.load(@redacted[1])
    expect(b.size).to eq(a.size)
    expect(b.roots).to eq(a.roots)
    expect(b.map { |o| [o.address, o.type, o.location, o.memsize, o.references] })
      .to eq(a.map { |o| [o.address, o.type, o.location, o.memsize, o.references] })
    string = a.find { |o| o.type == "STRING" && o.value&.start_with?(secret) }
    expect(b.at(string.address).value).to be_nil
  end

  it "takes redacted snapshots, plain, gzip and forked, leaving no unredacted file" do
    %w[r.json r.json.gz rf.json.gz].each do |name|
      path = File.join(@dir, name)
      expect(text(path)).not_to include(secret)
      expect(text(path).lines.size).to be > 1000
      expect(File.binread(path, 2).bytes).to eq([0x1f, 0x8b]) if name.end_with?(".gz")
      expect(JSON.parse(File.read(Heapdiff::Snapshot.meta_path_for(path)))).to include("redacted" => true)
      expect(Heapdiff.load(path).size).to be > 1000
    end
    expect(Dir.children(@dir).grep(/tmp/)).to eq([])
  end

  describe "heapdiff redact" do
    let(:exe) { File.expand_path("../../exe/heapdiff", __dir__) }

    def heapdiff(*args)
      Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, exe, *args)
    end

    it "writes a redacted copy, 0600, gzip by name" do
      output = File.join(@dir, "cli.json.gz")
      out, err, status = heapdiff("redact", @originals[1], output)
      expect([status.exitstatus, err]).to eq([0, ""])
      expect(out).to eq("#{output}: #{@stats[1][:records]} records, #{@stats[1][:values_removed]} values removed\n")
      expect(File.stat(output).mode & 0o777).to eq(0o600)
      expect(Zlib.gunzip(File.binread(output))).to eq(text(@redacted[1]))
    end

    it "explains itself with --help" do
      out, _, status = heapdiff("redact", "--help")
      expect(status.exitstatus).to eq(0)
      expect(out).to start_with("Usage: heapdiff redact IN OUT [options]").and include("--[no-]gzip")
    end

    it "fails with exit status 2, naming the file and line, on what is not a dump" do
      page = File.join(@dir, "page.html")
      File.write(page, "<html>#{secret}</html>\n")
      _, err, status = heapdiff("redact", page, File.join(@dir, "page.out"))
      expect(status.exitstatus).to eq(2)
      expect(err).to eq("heapdiff: #{page}:1: not a heap dump record (does not start with '{')\n")
      expect(File.exist?(File.join(@dir, "page.out"))).to be(false)
    end

    it "refuses to overwrite its input" do
      _, err, status = heapdiff("redact", @redacted[0], @redacted[0])
      expect(status.exitstatus).to eq(2)
      expect(err).to include("would replace the input")
    end
  end

  it "keeps the program name and host name out of a redacted snapshot's sidecar" do
    dir = File.join(@dir, "sidecar")
    out, status = Processes.ruby(<<~RUBY, dir)
      require "heapdiff"
      require "etc"
      $PROGRAM_NAME = "worker --token=#{secret}"
      plain = Heapdiff.snapshot(dir: ARGV[0])
      redacted = Heapdiff.snapshot(dir: ARGV[0], redact: true)
      puts JSON.generate([Etc.uname[:nodename], plain.meta_path, redacted.meta_path])
    RUBY
    raise "child failed: #{out}" unless status.success?

    hostname, plain, redacted = JSON.parse(out.lines.last)
    expect(File.read(plain)).to include(secret, hostname) # what the sidecar would hold
    meta = JSON.parse(File.read(redacted))
    expect(File.read(redacted)).not_to include(secret)
    expect(File.read(redacted)).not_to include(hostname)
    expect(meta).to include("program" => nil, "hostname" => start_with("sha256:"), "redacted" => true)
  end
end

# The binding on tiny input, so that it runs under GC_STRESS in CI.
RSpec.describe "Heapdiff.redact on a tiny dump", :gc_stress do
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-redact-tiny")
    @input = File.join(@dir, "in.json")
    File.write(@input, <<~DUMP)
      {"type":"ROOT", "root":"vm", "references":["0x10"]}
      {"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":6, "value":"s3cr3t", "file":"a.rb", "line":1, "memsize":40}
      {"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}
    DUMP
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "writes the dump without the value and returns the counts" do
    output = File.join(@dir, "out.json")
    stats = Heapdiff.redact(@input, output)
    expect(stats).to eq(lines: 3, records: 3, values_removed: 1, rebuilt_records: 0, junk_members_removed: 0,
                        dropped_last_line: false, gzip_input: false, stream_cut_short: nil)
    expect(File.read(output).lines[1]).to eq(%({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":6, "file":"a.rb", "line":1, "memsize":40}\n))
  end

  it "raises ParseError naming the file and line, and leaves no output" do
    output = File.join(@dir, "bad.json")
    page = File.join(@dir, "page.html")
    File.write(page, "<p>s3cr3t</p>\n")
    expect { Heapdiff.redact(page, output) }.to raise_error(Heapdiff::ParseError, "#{page}:1: not a heap dump record (does not start with '{')")
    expect(Dir.children(@dir)).not_to include("bad.json", a_string_starting_with(".bad.json"))
  end

  it "raises FileError for a missing input" do
    expect { Heapdiff.redact(File.join(@dir, "nope.json"), File.join(@dir, "x.json")) }
      .to raise_error(Heapdiff::FileError, /nope\.json/)
  end
end
