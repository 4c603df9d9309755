# frozen_string_literal: true

require "open3"
require "tmpdir"
require_relative "../support/fixtures"
require_relative "../support/processes"

# The shared cases (../shared/cases, see its README): reproductions of public leak
# hunts. Each case's make_dumps.rb writes three dumps with the running Ruby and prints
# its own count of what it leaked; heapdiff must give that answer, through the Ruby
# API, the CLI and the matcher.
RSpec.describe "The shared leak cases" do
  cases = File.join(Fixtures.shared, "cases")

  # Runs a case's program into a fresh directory: [truth, [dump paths]].
  def make_dumps(dir, name)
    program = File.join(Fixtures.shared, "cases", name, "make_dumps.rb")
    out, err, status = Open3.capture3(RbConfig.ruby, program, dir)
    raise "#{name}: make_dumps.rb failed: #{err}" unless status.success?

    [JSON.parse(out.lines.last), (0..2).map { |i| File.join(dir, "#{i}.json.gz") }]
  end

  def cli(*args)
    Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__), *args)
  end

  around do |example|
    Dir.mktmpdir("heapdiff-case") do |dir|
      @dir = dir
      example.run
    end
  end

  it "02-no-full-gc: retained means reachable; the garbage is counted apart" do
    truth, dumps = make_dumps(@dir, "02-no-full-gc")
    report = Heapdiff.diff(*dumps)
    at = ->(line) { report.select { |g| g.type == "STRING" && g.line == line }.sum(&:count) }
    expect(at.call(truth["leak_line"])).to eq(truth["leaked"])
    expect(at.call(truth["buffer_line"])).to eq(0)
    expect(report.unreachable_count).to be >= truth["buffer_strings_garbage_at_dump_2"]
    expect(report.warnings.join).to include("garbage the GC had not collected")
    # Suspects come from the last dump, where $leak holds the 500.
    top = report.find { |g| g.line == truth["leak_line"] }
    expect(report.suspect(top).to_s).to include("100% held by").and include("ROOT global_tbl")

    out, _err, status = cli("diff", *dumps, "--format", "json")
    expect(status.exitstatus).to eq(0)
    groups = JSON.parse(out)["groups"].select { |g| g["type"] == "STRING" }
    expect(groups.select { |g| g["line"] == truth["leak_line"] }.sum { |g| g["count"] }).to eq(truth["leaked"])
    expect(groups.select { |g| g["line"] == truth["buffer_line"] }).to be_empty
  end

  it "04-singleton-closure: what only a singleton class holds is reachable, through it" do
    truth, dumps = make_dumps(@dir, "04-singleton-closure")
    report = Heapdiff.diff(*dumps)
    line = truth["value_line"].first
    group = report.find { |g| g.type == "STRING" && g.line == line }
    expect(group.count).to eq(truth["values_defined_between_dump0_and_dump1"])
    suspect = report.suspect(group).to_s
    expect(suspect).not_to match(/not reachable|no root reaches/)
    expect(suspect).to include(truth["singleton_class_address"]).or include(truth["settings_address"])

    heap = report.last_heap
    path = heap.path_to_root(truth["sample_address"])
    expect(path).not_to be_nil
    addresses = path.to_a.map(&:address)
    expect(addresses).to include(truth["settings_address"], truth["singleton_class_address"])
    expect(addresses.index(truth["settings_address"])).to be < addresses.index(truth["singleton_class_address"])
    expect(path.to_a.first(2).map(&:type)).to eq(%w[CLASS OBJECT])

    out, _err, status = cli("path", dumps.last, truth["sample_address"])
    expect(status.exitstatus).to eq(0)
    expect(out).to include(truth["singleton_class_address"]).and include("ROOT vm")
    # Switched off, the object → class edge is missing and so is the path.
    out, _err, status = cli("path", dumps.last, truth["sample_address"], "--no-class-edges")
    expect(status.exitstatus).to eq(0)
    expect(out).to include("no root reaches #{truth["sample_address"]}")
  end

  it "04-singleton-closure: the matcher's failure message names the singleton class" do
    spec = File.join(Fixtures.shared, "cases", "04-singleton-closure", "settings_spec.rb")
    out, status = Open3.capture2e(RbConfig.ruby, "-I#{Processes::LIB}", "-S", "rspec", spec)
    expect(status.success?).to be(false)
    expect(out).to include("1 example, 1 failure")
    expect(out).to match(/singleton Class/i)
    expect(out).not_to match(/not reachable/)
  end

  it "06-finalizer-self: held by the finalizer table, and ImageFixed not at all" do
    truth, dumps = make_dumps(@dir, "06-finalizer-self")
    report = Heapdiff.diff(*dumps)
    images = report.select { |g| g.class_name == "Image" }
    expect(images.sum(&:count)).to eq(truth["image_objects_from_interval_alive"])
    expect(report.select { |g| g.class_name == "ImageFixed" }.sum(&:count)).to eq(truth["image_fixed_from_interval_alive"])
    line = report.suspect(images.first).to_s
    expect(line).to include("ROOT finalizers")
    expect(line).not_to include("held by the roots directly")
  end

  it "08-fiber-locals: the fiber's and the thread variable's strings, exactly" do
    truth, dumps = make_dumps(@dir, "08-fiber-locals")
    report = Heapdiff.diff(*dumps)
    counts = report.select { |g| g.type == "STRING" }.to_h { |g| [g.line, g.count] }
    program = File.read(File.join(cases, "08-fiber-locals", "make_dumps.rb")).lines
    fiber_line = program.index { |l| l.include?("# FIBER LINE") } + 1
    thread_line = program.index { |l| l.include?("# THREAD LINE") } + 1
    expect(counts[fiber_line]).to eq(truth["fiber_buffer_rows_from_interval"])
    expect(counts[thread_line]).to eq(truth["thread_variable_entries_from_interval"])
    [fiber_line, thread_line].each do |line|
      expect(report.suspect(report.find { |g| g.line == line }).to_s).not_to match(/not reachable/)
    end
  end
end
