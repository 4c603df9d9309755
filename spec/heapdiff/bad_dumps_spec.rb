# frozen_string_literal: true

require "tmpdir"
require "zlib"

# What heapdiff does with dumps that are broken the ways real dumps are broken.
RSpec.describe "Loading broken dumps", :gc_stress do
  around { |example| Dir.mktmpdir { |dir| @dir = dir; example.run } }

  def write(name, text)
    File.join(@dir, name).tap { |path| File.binwrite(path, text) }
  end

  let(:root) { %({"type":"ROOT", "root":"vm", "references":["0x10", "0x20"]}\n) }
  let(:string) { %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":1, "value":"a", "file":"a.rb", "line":1, "generation":5, "memsize":40}\n) }
  let(:klass) { %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n) }

  it "recovers a line broken by the Ruby 3.0/3.1 non-ASCII bug instead of dropping it" do
    broken = %({"address":"0x20", "type":"IMEMO", "imemo_type":"callcache", "method":"\\u00ff\0\0j"u"nk\xE3\x81", "file":"b.rb", "line":7, "generation":9, "references":["0x10"], "memsize":40}\n).b
    heap = Heapdiff.load(write("bug.json", root + string + broken + klass))
    expect(heap.size).to eq(3)
    expect(heap.recovered_lines).to eq(1)
    object = heap.at("0x20")
    expect([object.type, object.location, object.generation, object.memsize]).to eq(["IMEMO", "b.rb:7", 9, 40])
    expect(object.references).to eq(["0x10"])
    expect(heap.warnings.join).to match(/1 record\(s\) .* recovered.*line 3/)
  end

  it "recovers an unescaped quote in a file path" do
    quoted = %({"address":"0x20", "type":"STRING", "class":"0x30", "file":"/srv/we"ird.rb", "line":3, "memsize":40}\n)
    heap = Heapdiff.load(write("quote.json", root + quoted + klass))
    expect(heap.at("0x20").file).to eq('/srv/we"ird.rb')
    expect(heap.recovered_lines).to eq(1)
  end

  it "keeps a truncated last line as far as it goes and warns" do
    heap = Heapdiff.load(write("cut.json", root + klass + string[0, 60]))
    expect(heap.size).to eq(2)
    expect(heap.stats[:truncated_last_line]).to eq(3)
    expect(heap.warnings.join).to include("line 3: the last line is truncated")
  end

  it "raises ParseError naming the file and line for a file that is not a heap dump" do
    path = write("page.html", "<html>\n<body>hello</body>\n</html>\n")
    expect { Heapdiff.load(path) }.to raise_error(Heapdiff::ParseError) { |e|
      expect(e.message).to start_with("#{path}:1:")
      expect([e.path, e.line]).to eq([path, 1])
    }
  end

  # The junk of a broken record can contain newlines: a line that does not start a
  # record (`{"address":` or `{"type":`) belongs to the record before it.
  it "keeps a line that starts no record with the record before it, and warns" do
    path = write("mixed.json", root + klass + "{\"\", \"generation\":29}\n" + string)
    heap = Heapdiff.load(path)
    expect(heap.size).to eq(2)
    expect(heap.stats[:lines]).to eq(4)
    expect(heap.recovered_lines).to eq(1)
    expect(heap.warnings.join).to include("line 2")
    expect(heap.at("0x10").location).to eq("a.rb:1")
  end

  it "raises ParseError for an empty file" do
    expect { Heapdiff.load(write("empty.json", "")) }.to raise_error(Heapdiff::ParseError, /empty/)
  end

  it "raises FileError for a missing file" do
    expect { Heapdiff.load(File.join(@dir, "nope.json")) }.to raise_error(Heapdiff::FileError, /nope.json/)
  end

  it "counts references to addresses with no record" do
    heap = Heapdiff.load(write("dangling.json", %({"type":"ROOT", "root":"vm", "references":["0x99"]}\n) + klass))
    expect(heap.stats[:dangling_references]).to eq(1)
    expect(heap.roots["vm"]).to eq(["0x99"])
  end

  it "reads gzip dumps by content, whatever the file name" do
    path = File.join(@dir, "dump.json")
    Zlib::GzipWriter.open(path) { |gz| gz.write(root + string + klass) }
    heap = Heapdiff.load(path)
    expect(heap.size).to eq(2)
    expect(heap.at("0x10").value).to eq("a")
  end

  it "rejects what is not a path" do
    expect { Heapdiff.load(42) }.to raise_error(TypeError, /path/)
  end
end
