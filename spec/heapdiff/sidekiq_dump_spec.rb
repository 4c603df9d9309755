# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../../examples/sidekiq_leak/run"

# Real dumps from a real Sidekiq + ActiveRecord server (Debian's Ruby) with the
# thread-local SQL-log leak. Sidekiq's own `Launcher#❤` trips the Ruby 3.1 non-ASCII
# bug, so these dumps contain broken lines, some spanning two physical lines.
RSpec.describe "A real Sidekiq process's dumps" do
  before(:all) do
    @dir = Dir.mktmpdir("heapdiff-sidekiq")
    SidekiqLeak::Runner.new(@dir, 250).run
    @expected = JSON.parse(File.read(File.join(@dir, "expected.json")))
    @paths = (0..2).map { |n| File.join(@dir, "#{n}.json") }
  end

  after(:all) { FileUtils.rm_rf(@dir) }

  it "loads with every record kept, the broken ones recovered and counted" do
    @paths.each do |path|
      heap = Heapdiff.load(path)
      lines = File.binread(path).lines
      # Objects: the records with an address, less Ruby 3.3's SHAPE records.
      record_lines = lines.count { |l| l.start_with?('{"address":') && !l.match?(/\A\{"address":"\w+", "type":"SHAPE"/) }
      root_lines = lines.count { |l| l.start_with?('{"type":"ROOT"') }
      broken = lines.count do |l|
        JSON.parse(l)
        false
      rescue JSON::ParserError
        l.start_with?('{"address":')
      end
      expect(heap.size).to eq(record_lines), path
      expect(heap.stats[:root_records]).to eq(root_lines)
      expect(heap.stats[:lines]).to eq(lines.size)
      expect(heap.recovered_lines).to eq(broken)
      # Ruby 3.0 and 3.1 write bytes >= 0x80 in names as invalid JSON, which a Sidekiq
      # app's dumps always hold (../shared/docs/heap-dump-format.md); later Rubies don't.
      if RUBY_VERSION < "3.2"
        expect(broken).to be > 0
        expect(heap.warnings.join).to include("#{broken} record(s) were not valid JSON and were recovered")
      else
        expect(heap.warnings.join).not_to include("not valid JSON")
      end
    end
  end

  it "folds the three dumps' recovered-records warnings into one line in the report" do
    skip "Ruby #{RUBY_VERSION} writes no broken records" unless RUBY_VERSION < "3.2"

    # Ruby's JSON parser counts the broken records of each dump.
    broken = @paths.map do |path|
      File.binread(path).lines.count do |l|
        JSON.parse(l)
        false
      rescue JSON::ParserError
        l.start_with?('{"address":')
      end
    end
    warnings = Heapdiff.diff(*@paths).warnings.grep(/not valid JSON/)
    expect(warnings.size).to eq(1)
    expect(warnings.first).to start_with("#{broken.sum} record(s) in 3 dumps were not valid JSON and were recovered (")
    expect(warnings.first).to include(broken.each_with_index.map { |n, i| "#{i}.json #{n}" }.join(", "))
  end

  it "folds the VM's method and constant caches into one line after the top groups" do
    report = Heapdiff.diff(*@paths)
    caches = report.select { |g| g.type == "IMEMO" && Heapdiff::Report::VM_CACHES.include?(g.subtype) }
    expect(caches).not_to be_empty # the first calls of Sidekiq's and redis's code make some
    text = report.to_s(top: 10)
    # Method entries (IMEMO ment) and other kinds stay: a program can leak those.
    expect(text.lines.grep(/^Retained IMEMO(?: callcache| callinfo| constcache)? \d/)).to eq([])
    expect(text).to include("(VM caches: #{caches.sum(&:count)} IMEMO objects, #{Heapdiff::Printable.bytes(caches.sum(&:memsize))} in " \
                            "#{caches.size} groups: method and constant caches made once per call site, not a leak; " \
                            "only: :imemo lists them)")
    expect(report.to_s(top: 10, only: :imemo).lines.first).to start_with("Retained IMEMO")
  end

  it "names the leaking line first with the exact count" do
    report = Heapdiff.diff(*@paths)
    top = report.first
    expect(top.type).to eq("STRING")
    expect(top.location).to eq(@expected["leak_location"])
    expect(top.count).to eq(@expected["per_phase"]["1"])
    expect(top.sample(3).map(&:value)).to all(start_with("phase=1 "))
  end

  it "names the thread-local buffer as the suspect, by its key and the processor thread's name" do
    report = Heapdiff.diff(*@paths)
    suspect = report.suspect(report.first)
    expect(suspect.top.object.type).to eq("ARRAY")
    expect(suspect.top.share).to eq(1.0)
    expect(suspect.top.path.map(&:subtype)).to include("VM/thread")
    # Sidekiq 6 names its processor threads "processor", 7 and later "sidekiq.default/processor".
    thread = '"[\w./]*processor"'
    # Ruby 3.3 keeps a thread's fiber-locals in its root fiber: one more step there.
    fiber = "(DATA fiber 0x\\h+ ← )?"
    key = "Thread.current\\[:sql_log\\] \\(fiber-local, thread #{thread}, Array of \\d+\\)"
    expect(suspect.to_s).to match(/100% held by #{key} ← #{fiber}Thread #{thread} ← .*ROOT vm/)
    expect(suspect.top.named.object).to eq(suspect.top.object)
  end

  it "makes the buffer one leak: every group at the SQL-log line under Thread.current[:sql_log], the app's count" do
    report = Heapdiff.diff(*@paths)
    at_line = report.select { |g| g.location == @expected["leak_location"] }
    leak = report.leaks.find { |l| l.sites.any? { |s| s.site.location == @expected["leak_location"] } }
    expect(leak.holder_chain.first).to match(%r{\AThread.current\[:sql_log\] \(fiber-local, thread "[\w./]*processor", Array\)\z})
    expect(leak.holder_chain).to include(a_string_matching(%r{\AThread "[\w./]*processor"}))
    expect(leak.sites.map(&:site)).to match_array(at_line)
    expect(leak.sites.sum(&:count)).to eq(@expected["per_phase"]["1"])
    expect(leak.title).to start_with("Thread.current[:sql_log]")
    # No other leak has any of the buffer's strings.
    others = report.leaks - [leak]
    expect(others.flat_map(&:sites).map { |s| s.site.location }).not_to include(@expected["leak_location"])
  end
end
