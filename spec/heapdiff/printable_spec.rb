# frozen_string_literal: true

require "json"
require "stringio"
require "tmpdir"
require "heapdiff/cli"

# A dump is written by the process it describes: its file paths and class names are
# whatever that process made them. Text output must show them, not let them drive the
# terminal (ESC sequences, BEL), and must not crash on bytes that are not UTF-8.
RSpec.describe "Names and paths from a dump in text output" do
  control_bytes = /[\x00-\x09\x0b-\x1f\x7f]/n # all but the newline that ends lines

  evil_file = "/app/\e]0;owned\a\e[2J\x9b.rb"
  evil_class = "Evil\e[31mRed"

  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-printable")
    root = %({"type":"ROOT", "root":"vm", "references":["0x10", "0x20"]}\n)
    klass = %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n)
    # Ruby writes file and class names into the dump as they are, unescaped.
    evil_klass = %({"address":"0x40", "type":"CLASS", "name":"#{evil_class}", "memsize":500}\n)
    file = %("#{evil_file}").b
    string = %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":1, "value":"a", "file":#{file}, "line":1, "generation":5, "memsize":40}\n)
    object = %({"address":"0x20", "type":"OBJECT", "class":"0x40", "ivars":0, "file":#{file}, "line":2, "generation":5, "memsize":40}\n)
    @before = File.join(@dir, "before.json").tap { |p| File.binwrite(p, klass + evil_klass) }
    @after = File.join(@dir, "after.json").tap { |p| File.binwrite(p, root + string + object + klass + evil_klass) }
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  def cli(*argv)
    out = StringIO.new
    err = StringIO.new
    status = Heapdiff::CLI.new(out: out, err: err).run(argv)
    [status, out.string, err.string]
  end

  it "escapes control characters in every text report" do
    outputs = [cli("diff", @before, @after), *%w[location file gem class].map { |by| cli("diff", @before, @after, "--by", by) },
               cli("summary", @after)]
    outputs.each do |status, out, err|
      expect([status, err]).to eq([0, ""])
      expect(out.b).not_to match(control_bytes)
      expect(out.b).not_to include("\xC2\x9B".b)
    end
    expect(outputs.first[1]).to include('/app/\e]0;owned\a\e[2J\x9B.rb:1')
    expect(outputs[4][1]).to include('Evil\e[31mRed')
  end

  it "escapes them in inspect, paths and reports built in Ruby" do
    heap = Heapdiff.load(@after)
    report = Heapdiff.diff(@before, @after)
    texts = [heap.at("0x20").inspect, heap.at("0x20").brief, heap.path_to_root("0x20").to_s, report.to_s, report.inspect]
    texts.each { |text| expect(text.b).not_to match(control_bytes) }
    expect(heap.at("0x20").inspect).to include('OBJECT Evil\e[31mRed')
    expect(heap.at("0x20").file.b).to eq(evil_file.b) # the raw value stays available
  end

  it "writes JSON for paths that are not UTF-8" do
    status, out, err = cli("diff", @before, @after, "--format", "json", "--by", "gem")
    expect([status, err]).to eq([0, ""])
    expect(JSON.parse(out)["groups"].map { |g| g["location"] }).to include('/app/\e]0;owned\a\e[2J\x9B.rb:1')
  end

  it "scales byte counts for text, in decimal units as memory_profiler does" do
    sizes = [0, 120, 999, 1000, 40_000, 556_153, 999_949, 999_999, 35_800_000, 2 * (10**12)]
    expect(sizes.map { |n| Heapdiff::Printable.bytes(n) })
      .to eq(["0 B", "120 B", "999 B", "1.0 kB", "40.0 kB", "556.2 kB", "999.9 kB", "1.0 MB", "35.8 MB", "2.0 TB"])
  end
end
