# frozen_string_literal: true

require "tmpdir"
require "zlib"
require_relative "support/fixtures"
require_relative "support/memory"

# Every kind of bad input in one place, each with its defined outcome: a
# Heapdiff::ParseError or FileError naming the file (and line), or a Heap whose
# warnings and stats say what was wrong. Never a crash, a hang or unbounded memory.
# The same inputs at the Rust level: ext/heapdiff-core/tests/{bad_inputs,quirks}.rs.
RSpec.describe "Bad inputs" do
  let(:dangling) do
    "reference(s) point to addresses with no record (objects allocated during the dump, or a partial since: dump)"
  end

  # One directory for all (made outside the examples, so outside GC.stress); every
  # example writes files of its own names.
  before(:all) { @dir = Dir.mktmpdir("heapdiff-bad") }
  after(:all) { FileUtils.rm_rf(@dir) }

  def write(name, text)
    File.join(@dir, name).tap { |path| File.binwrite(path, text) }
  end

  def expect_parse_error(path, line, reason)
    expect { Heapdiff.load(path) }.to raise_error(Heapdiff::ParseError) { |e|
      expect(e.message).to eq("#{path}:#{line}: not a heap dump record (#{reason})")
      expect([e.path, e.line]).to eq([path, line])
    }
  end

  let(:root) { %({"type":"ROOT", "root":"vm", "references":["0x10", "0x20"]}\n) }
  let(:string) { %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":1, "value":"a", "file":"a.rb", "line":1, "generation":5, "memsize":40}\n) }
  let(:klass) { %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\n) }

  # Tiny inputs: these also run under GC_STRESS=1.
  describe "the format doc's broken output", :gc_stress do
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

    it "recovers unescaped quotes and backslashes in members no Ruby escapes" do
      quoted = %({"address":"0x20", "type":"STRING", "class":"0x30", "file":"/srv/we"ird.rb", "line":3, "memsize":40}\n)
      data = %({"address":"0x28", "type":"DATA", "class":"0x30", "struct":"my\\", "file":"c:\\x.rb", "line":4, "memsize":40}\n)
      heap = Heapdiff.load(write("quote.json", root + quoted + data + klass))
      expect(heap.at("0x20").file).to eq('/srv/we"ird.rb')
      expect(heap.at("0x28").file).to eq('c:\\x.rb')
      expect(heap.recovered_lines).to eq(2)
      expect(heap.warnings.join).to include("2 record(s) were not valid JSON and were recovered")
    end

    it "reads Ruby 2.6/2.7's decimal \\u escapes as decimal" do
      anon = %({"address":"0x40", "type":"CLASS", "name":"#<Class:0x000055d0>", "memsize":40}\n)
      value = %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":3, "value":"a\\u0010b", "memsize":40}\n)
      # An anonymous class named #<Class:0x…> marks a 2.6/2.7 dump.
      expect(Heapdiff.load(write("26.json", root + anon + value + klass)).at("0x10").value).to eq("a\nb")
      expect(Heapdiff.load(write("31.json", root + value + klass)).at("0x10").value).to eq("a\x10b")
    end

    it "keeps invalid UTF-8 in paths and names as bytes" do
      line = %({"address":"0x20", "type":"STRING", "class":"0x30", "file":"/app/\xff\xfe.rb", "line":2, "method":"m\x7f", "memsize":40}\n).b
      heap = Heapdiff.load(write("utf8-path.json", root + line + klass))
      file = heap.at("0x20").file
      expect(file.b).to eq("/app/\xff\xfe.rb".b)
      expect(file.valid_encoding?).to be(false)
      expect(heap.recovered_lines).to eq(0)
    end

    it "keeps a truncated last line as far as it goes and warns" do
      heap = Heapdiff.load(write("cut.json", root + klass + string[0, 60]))
      expect(heap.size).to eq(2)
      expect(heap.stats[:truncated_last_line]).to eq(3)
      expect(heap.warnings.join).to include("line 3: the last line is truncated")
    end

    it "decodes every escape Ruby 3.0+ writes" do
      value = %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":12, "value":"\\\\\\"\\u0000\\b\\t\\f\\n\\r\\u007f\\u0001", "memsize":40}\n)
      heap = Heapdiff.load(write("escapes.json", root + value + klass))
      expect(heap.at("0x10").value.b).to eq("\\\"\0\b\t\f\n\r\x7f\x01".b)
      expect(heap.recovered_lines).to eq(0)
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
  end

  describe "files that are no dump", :gc_stress do
    it "raises ParseError for an empty file, or one of blank lines" do
      expect_parse_error(write("empty.json", ""), 1, "the file is empty")
      expect_parse_error(write("blank.json", "\n \n\n"), 1, "the file holds only blank lines")
    end

    it "raises ParseError at line 1 for an HTML page" do
      expect_parse_error(write("page.html", "<html>\n<body>hello</body>\n</html>\n"), 1, "does not start with '{'")
    end

    it "raises ParseError at line 1 for binary garbage" do
      expect_parse_error(write("random.bin", Random.new(7).bytes(64 * 1024)), 1, "does not start with '{'")
    end

    it "raises ParseError at line 1 for JSON that is no dump record" do
      expect_parse_error(write("config.json", %({"name":"app", "version":2}\n)), 1, 'no "type" member')
    end

    it "raises ParseError naming the line of a record whose address overflows 64 bits" do
      bad = %({"address":"0x1ffffffffffffffff", "type":"STRING", "memsize":40}\n)
      expect_parse_error(write("address.json", root + klass + bad), 3, 'no "address" member')
    end

    it "raises FileError for a missing file" do
      expect { Heapdiff.load(File.join(@dir, "nope.json")) }.to raise_error(Heapdiff::FileError, /nope.json/)
    end

    it "rejects what is not a path" do
      expect { Heapdiff.load(42) }.to raise_error(TypeError, /path/)
    end
  end

  describe "odd but loadable dumps", :gc_stress do
    it "loads a dump of only ROOT lines to no objects, and warns of the dangling roots" do
      heap = Heapdiff.load(write("roots.json", root + %({"type":"ROOT", "root":"global_tbl", "references":["0x99"]}\n)))
      expect([heap.size, heap.roots]).to eq([0, { "vm" => %w[0x10 0x20], "global_tbl" => %w[0x99] }])
      expect(heap.stats[:dangling_references]).to eq(3)
      expect(heap.warnings).to eq(["#{heap.path}: 3 #{dangling}"])
    end

    it "counts duplicate addresses, and finds the last record" do
      second = string.sub('"generation":5', '"generation":6')
      heap = Heapdiff.load(write("dup.json", root + string + second + klass))
      expect(heap.size).to eq(3)
      expect(heap.at("0x10").generation).to eq(6)
      expect(heap.stats[:duplicate_addresses]).to eq(1)
      expect(heap.warnings).to include(end_with("1 record(s) repeat the address of an earlier record; lookups find the last"))
    end

    it "keeps references to addresses with no record, and counts them" do
      heap = Heapdiff.load(write("dangling.json", %({"type":"ROOT", "root":"vm", "references":["0x99"]}\n) + klass))
      expect(heap.stats[:dangling_references]).to eq(1)
      expect(heap.roots["vm"]).to eq(["0x99"])
      expect(heap.warnings.size).to eq(1)
    end

    it "leaves out numbers that overflow 64 bits, and counts each" do
      big = "1" * 25
      line = %({"address":"0x10", "type":"STRING", "class":"0x30", "line":#{big}, "generation":#{big}, "memsize":#{big}, "file":"a.rb"}\n)
      heap = Heapdiff.load(write("overflow.json", root + line + klass))
      object = heap.at("0x10")
      expect([object.line, object.generation, object.memsize]).to eq([nil, nil, 0])
      expect(heap.stats[:overflowed_numbers]).to eq(3)
      expect(heap.warnings).to include("#{heap.path}: 3 number(s) do not fit in 64 bits and were left out")
    end

    it "reads gzip dumps by content, whatever the file name" do
      path = File.join(@dir, "dump.json")
      Zlib::GzipWriter.open(path) { |gz| gz.write(root + string + klass) }
      heap = Heapdiff.load(path)
      expect(heap.size).to eq(2)
      expect(heap.at("0x10").value).to eq("a")
    end
  end

  describe "large and real inputs" do
    it "keeps what a gzip dump cut in half holds, and says so" do
      bytes = File.binread(Fixtures.leak3("3.4", 1))
      path = write("cut.json.gz", bytes[0, bytes.size / 2])
      heap = Heapdiff.load(path)
      kept = heap.stats.values_at(:objects, :root_records, :shapes).sum
      total = Fixtures.count_records(Fixtures.leak3("3.4", 1)).values.sum
      expect(kept).to be_between(total / 4, total - 1)
      expect(heap.warnings).to include(match(/gzip stream ends early .*: the #{kept} records before the cut were kept/))
    end

    it "loads 10,000 records full of invalid UTF-8 byte for byte, and rejects 10,000 lines of it" do
      junk = "\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\n".b * 10_000
      expect_parse_error(write("junk.txt", junk), 1, "does not start with '{'")
      records = Array.new(10_000) do |i|
        %({"address":"0x#{(0x1000 + (i * 40)).to_s(16)}", "type":"STRING", "class":"0x30", "bytesize":2, "value":"\xff\xfe", "file":"caf\xe9.rb", "line":#{i}, "memsize":40}\n).b
      end
      heap = Heapdiff.load(write("utf8.json", root.b + records.join + klass))
      expect(heap.size).to eq(10_001)
      expect(heap.recovered_lines).to eq(0)
      expect(heap.at("0x1028").file.b).to eq("caf\xe9.rb".b)
      expect(heap.at("0x1028").line).to eq(1)
    end

    # A child process per case: its peak RSS (VmHWM) is the load's alone.
    it "loads a single 100 MB line with bounded memory" do
      result = Memory.child(<<~RUBY, @dir)
        size = 100 << 20
        path = File.join(ARGV[0], "line.json")
        File.open(path, "wb") do |f|
          f << %({"type":"ROOT", "root":"vm", "references":["0x10"]}\\n)
          f << %({"address":"0x10", "type":"STRING", "class":"0x30", "bytesize":\#{size}, "value":")
          chunk = "0123456789abcdef" * 65536
          (size / chunk.bytesize).times { f << chunk }
          f << %(", "file":"big.rb", "line":1, "memsize":\#{size + 41}}\\n)
          f << %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\\n)
        end
        GC.start
        before = peak_mb
        heap = Heapdiff.load(path)
        object = heap.at("0x10")
        puts JSON.generate(size: heap.size, bytesize: object.bytesize, location: object.location,
                           warnings: heap.warnings, growth: peak_mb - before)
      RUBY
      expect(result).to include("size" => 2, "bytesize" => 100 << 20, "location" => "big.rb:1", "warnings" => [])
      # The record passes through a batch buffer and the parse: about twice its size.
      expect(result["growth"]).to be < 300
    end

    it "loads a references array of a million entries with bounded memory" do
      result = Memory.child(<<~RUBY, @dir)
        path = File.join(ARGV[0], "refs.json")
        File.open(path, "wb") do |f|
          f << %({"type":"ROOT", "root":"vm", "references":["0x10"]}\\n)
          f << %({"address":"0x10", "type":"ARRAY", "class":"0x30", "length":1000000, "references":[)
          f << Array.new(1_000_000) { |i| %("0x\#{(i % 10).zero? ? "30" : (0x100000 + i * 40).to_s(16)}") }.join(", ")
          f << %(], "memsize":8000040}\\n)
          f << %({"address":"0x30", "type":"CLASS", "name":"String", "memsize":500}\\n)
        end
        GC.start
        before = peak_mb
        heap = Heapdiff.load(path)
        array = heap.at("0x10")
        puts JSON.generate(references: array.references.size, referents: array.referents.size,
                           dangling: heap.stats[:dangling_references], warnings: heap.warnings.size,
                           growth: peak_mb - before)
      RUBY
      expect(result).to include("references" => 1_000_000, "referents" => 100_000, "dangling" => 900_000, "warnings" => 1)
      # 12.6 MB of text; a million 8-byte addresses, then 4-byte targets, plus the
      # Ruby array of a million address strings asked for above.
      expect(result["growth"]).to be < 250
    end

    # Real dumps of this Ruby, written by a child process.
    def dump_with(options)
      path = File.join(@dir, "#{options.keys.join}.json")
      out, status = Processes.ruby(<<~RUBY, path)
        require "objspace"
        ObjectSpace.trace_object_allocations_start
        keep = Array.new(200) { |i| "kept \#{i}" }
        gen = GC.count
        GC.start
        later = Array.new(300) { |i| "later \#{i}" }
        File.open(ARGV[0], "w") { |f| ObjectSpace.dump_all(output: f, #{options.map { |k, v| "#{k}: #{v}" }.join(", ")}) }
        p keep.size + later.size
      RUBY
      raise "child failed: #{out}" unless status.success?

      path
    end

    it "loads a since: partial dump, which has no roots, and warns of its dangling references" do
      path = dump_with(since: "gen + 1")
      heap = Heapdiff.load(path)
      # Every line is an object, but for the SHAPE lines that Ruby 3.3 writes too.
      expect(heap.size).to eq(Fixtures.count_records(path)["objects"])
      expect(heap.roots).to eq({})
      expect(heap.count { |o| o.type == "STRING" && o.value&.start_with?("later ") }).to eq(300)
      expect(heap.count { |o| o.value&.start_with?("kept ") }).to eq(0)
      expect(heap.stats[:dangling_references]).to be > 0
      expect(heap.warnings).to eq(["#{path}: #{heap.stats[:dangling_references]} #{dangling}"])
    end

    it "loads a full: true dump, keeping its empty (NONE) slots apart from objects" do
      path = dump_with(full: true)
      nones = File.foreach(path).count { |line| line.include?('"type":"NONE"') }
      expect(nones).to be > 100
      heap = Heapdiff.load(path)
      expect(heap.count { |o| o.type == "NONE" }).to eq(nones)
      expect(heap.size).to eq(Fixtures.count_records(path)["objects"])
      # Free slots are never "new objects": diffing against itself finds nothing.
      expect(Heapdiff.diff(path, path).total_count).to eq(0)
    end
  end
end
