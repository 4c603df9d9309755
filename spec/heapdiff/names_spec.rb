# frozen_string_literal: true

require "heapdiff/rspec"
require "open3"
require "tmpdir"
require_relative "../support/fixtures"
require_relative "../support/processes"

# Names: a snapshot's names sidecar (heap-NNNN.names.json) lets suspects and paths say
# who holds a leak in the code's words. The programs in spec/support/apps make the
# leaks and count their own truth: how many objects, and the address of the object
# that holds them (ObjectSpace.dump); heapdiff's names must point at those objects.
RSpec.describe "Names of holders" do
  around do |example|
    Dir.mktmpdir("heapdiff-names") do |dir|
      @dir = dir
      example.run
    end
  end

  # Runs an app of spec/support/apps; returns the JSON it prints last.
  def run_app(name, *args)
    app = File.expand_path("../support/apps/#{name}", __dir__)
    out, status = Open3.capture2e(RbConfig.ruby, "-I", Processes::LIB, app, *args)
    raise "#{name} failed: #{out}" unless status.success?

    JSON.parse(out.lines.last)
  end

  # The group of +type+ objects allocated at +line+.
  def group_at(report, type, line)
    report.find { |g| g.type == type && g.line == line } or raise "no #{type} group at line #{line}"
  end

  # The step of +path+ named +expr+.
  def named_step(path, expr)
    path.steps.find { |s| s.name&.expr == expr }
  end

  shared_examples "each kind named" do |fork|
    it "names the constant, global, class ivar, singleton class, thread-local, finalizer and at_exit holders" do
      truth = run_app("named_leaks.rb", @dir, *("fork" if fork))
      lines = truth["lines"]
      holders = truth["holders"]
      count = truth["count"]
      report = Heapdiff.diff(*truth["dumps"])
      heap = report.last_heap
      expect(heap.names_count).to be > 0

      expected = {
        "constant" => ["Registry::ENTRIES", "Registry::ENTRIES (Array of #{count})", holders["constant"]],
        "global" => ["$audit_log", "$audit_log (Array of #{count}) ← ROOT global_tbl", holders["global"]],
        "class_ivar" => ["@cache of Sessions", "@cache of Sessions (Array of #{count})", holders["class_ivar"]],
        "singleton" => ["singleton class of #<Settings #{holders["settings"]}>",
                        "singleton class of #<Settings #{holders["settings"]}> (Class)", holders["singleton"]],
        # The worker's buffer had one entry before the first snapshot.
        "thread_local" => ["Thread.current[:buffer]",
                           "Thread.current[:buffer] (fiber-local, thread \"worker\", Array of #{count + 1})",
                           holders["thread_local"]]
      }
      expected.each do |kind, (expr, text, address)|
        group = group_at(report, "STRING", lines[kind])
        expect(group.count).to eq(count), kind
        suspect = report.suspect(group)
        # (The worker's stack may hold the last string it made.)
        expect(suspect.to_s).to include("% held by #{text}"), "#{kind}: #{suspect}"
        expect(suspect.top.count).to be >= count - 1
        expect(suspect.top.named.object.address).to eq(address), kind
        expect(suspect.inspect).to include("named #{address}")
        expect(suspect.to_h[:holders].first[:name]).to include(expr: expr)

        paths = group.sample(count).map { |object| heap.path_to_root(object) }
        through = paths.select { |path| named_step(path, expr)&.object&.address == address }
        expect(through.size).to be >= count - 1, "#{kind}: #{paths.first}"
        expect(through.first.to_s).to include(expr)
      end
      worker = heap.path_to_root(holders["thread_local"])
      expect(worker.steps[-2].name.to_h).to eq(kind: "thread", expr: 'Thread "worker"', context: nil)
      expect(worker.steps[-2].object.address).to eq(holders["worker"])

      # Roots that the dump names: no object holds these, the finalizer table and
      # the at_exit list do.
      images = group_at(report, "OBJECT", lines["finalizer"])
      expect(images.count).to eq(count)
      expect(report.suspect(images).to_s).to include("100% held directly by the finalizer table " \
                                                     "(ObjectSpace.define_finalizer): ROOT finalizers")
      expect(heap.path_to_root(images.sample(1).first).steps.first.name.expr).to eq("finalizer table (ObjectSpace.define_finalizer)")
      exits = group_at(report, "STRING", lines["at_exit"])
      expect(exits.count).to eq(count)
      expect(report.suspect(exits).to_s).to include("100% held directly by at_exit blocks: ROOT end_proc")
      expect(heap.path_to_root(exits.sample(1).first).steps.first.name.expr).to eq("at_exit block")

      # Names and addresses, never values.
      names = File.read(Heapdiff::Names.path_for(truth["dumps"].last))
      expect(names).not_to include("entry 1", "audit 1", "session 1", "job 1 logged")
    end
  end

  context "in-process snapshots" do
    include_examples "each kind named", false
  end

  context "fork: true snapshots (the child names the threads it inherited)" do
    include_examples "each kind named", true
  end

  describe "everywhere a holder is shown" do
    before(:all) do
      @shared_dir = Dir.mktmpdir("heapdiff-names-shared")
      app = File.expand_path("../support/apps/named_leaks.rb", __dir__)
      out, status = Open3.capture2e(RbConfig.ruby, "-I", Processes::LIB, app, @shared_dir)
      raise "named_leaks.rb failed: #{out}" unless status.success?

      @truth = JSON.parse(out.lines.last)
    end
    after(:all) { FileUtils.rm_rf(@shared_dir) }

    def cli(*args)
      Open3.capture3(RbConfig.ruby, "-I#{Processes::LIB}", File.expand_path("../../exe/heapdiff", __dir__), *args)
    end

    it "heapdiff path and heapdiff report" do
      out, _err, status = cli("path", @truth["dumps"].last, @truth["holders"]["constant"])
      expect(status.exitstatus).to eq(0)
      expect(out).to include("→ MODULE Registry 0x").and include("→ Registry::ENTRIES ARRAY #{@truth["holders"]["constant"]}")
      out, _err, status = cli("report", @shared_dir, "--top", "3")
      expect(status.exitstatus).to eq(0)
      expect(out).to include("held by singleton class of #<Settings #{@truth["holders"]["settings"]}> (Class) ← SETTINGS ← ")
    end

    it "the trend's JSON and HTML report" do
      code = <<~RUBY
        require "heapdiff"
        Heapdiff.trace_allocations!
        Sessions = Class.new
        Sessions.instance_variable_set(:@cache, [])
        3.times do
          100.times { |i| Sessions.instance_variable_get(:@cache) << "session \#{i}" }
          Heapdiff.snapshot(dir: ARGV[0])
        end
      RUBY
      dir = File.join(@shared_dir, "trend")
      out, status = Processes.ruby(code, dir)
      raise "snapshots failed: #{out}" unless status.success?

      trend = Heapdiff.trend(dir)
      site = trend.first
      expect(site).to have_attributes(verdict: :growing, type: "STRING", counts: [100, 200, 300])
      holder = site.to_h(details: true)[:suspect][:holders].first
      expect(holder).to include(name: { kind: "class_ivar", expr: "@cache of Sessions", context: nil })
      expect(holder[:path][:steps].last).to include(label: "@cache of Sessions", address: holder[:named_object])
      card = trend.to_html[%r{<article class="site" id="site-1">.*?</article>}m]
      expect(card).to include("<b>Allocated at</b> <code>#{site.location}</code>")
        .and include("<b>Held by</b> <code>@cache of Sessions</code> <span class=\"context\">Array of 300</span>")
        .and include("<b>Holder chain</b>: <code>@cache of Sessions ← CLASS Sessions 0x")
    end

    it "the matcher's failure message" do
      stub_const("NAMES_SPEC_CACHE", [])
      message = begin
        expect { NAMES_SPEC_CACHE << ("kept" * 4) }.not_to leak(iterations: 10)
        nil
      rescue RSpec::Expectations::ExpectationNotMetError => e
        e.message
      end
      expect(message).to match(/100% held by NAMES_SPEC_CACHE \(Array of \d+\) ← CLASS Object 0x\h+ ← ROOT vm/)
    end
  end

  it "08-fiber-locals through Heapdiff.snapshot: the thread variable, and the enumerator's fiber" do
    truth = run_app("fiber_locals.rb", @dir)
    report = Heapdiff.diff(*truth["dumps"])

    audit = group_at(report, "STRING", truth["thread_line"])
    expect(audit.count).to eq(truth["audit_entries"])
    suspect = report.suspect(audit)
    expect(suspect.to_s).to include("100% held by Thread.main.thread_variable_get(:audit) (Array of 200) ← HASH 0x")
      .and include("← Thread.main ← ")
    expect(suspect.top.named.object.address).to eq(truth["audit"])

    rows = group_at(report, "STRING", truth["fiber_line"])
    expect(rows.count).to eq(truth["fiber_rows"])
    suspect = report.suspect(rows)
    # Ruby cannot read a suspended fiber's locals: the constant, and the fiber, not a key.
    # The last string made may also sit on the suspended fiber's stack (a conservative
    # root), and then the paths meet at the fiber rather than at the buffer: either
    # way the named owner is ROWS, through its fiber.
    through_buffer = /ARRAY 0x\h+ \(\d+ refs\) \(fiber-local or stack of the fiber\) ← /
    expect(suspect.to_s).to start_with("300 STRING from")
      .and match(/(100%|>99%) held by ROWS \(Enumerator\), through (#{through_buffer})?DATA fiber 0x/)
    expect(suspect.top.named.object.address).to eq(truth["rows"])
    expect(suspect.to_s).not_to include(":row_log")
  end

  it "names nothing a plain dump_all does not say: classes, shapes, root categories" do
    cases = File.join(Fixtures.shared, "cases")
    dumps = (0..2).map { |i| File.join(cases, "08-fiber-locals", "#{i}.json.gz") }
    report = Heapdiff.diff(*dumps)
    expect(report.last_heap.names_count).to eq(0)
    dump_kinds = %w[ivar singleton_class finalizer at_exit]
    report.suspects(top: 5).each do |suspect|
      suspect.holders.each do |holder|
        holder.path&.steps&.each { |step| expect(dump_kinds).to include(step.name.kind) if step.name }
      end
    end
    expect(report.suspects(top: 2).map(&:to_s).join).not_to include("Thread.", "ROWS")

    dumps = (0..2).map { |i| File.join(cases, "04-singleton-closure", "#{i}.json.gz") }
    report = Heapdiff.diff(*dumps)
    group = report.find { |g| g.type == "STRING" && g.line == 28 }
    expect(report.suspect(group).to_s).to include("held by singleton class of #<Settings 0x")
  end

  it "names an ivar from the object's shape on Ruby 3.2+ dumps, of the object that has it; 3.1 dumps have no shapes" do
    %w[3.1 3.3].each do |ruby|
      heap = Heapdiff.load(File.join(Fixtures.shared, "fixtures", "leak3", "ruby-#{ruby}", "2.jsonl.gz"))
      payload = heap.find { |o| o.type == "STRING" && o.line == 17 }
      path = heap.path_to_root(payload)
      leak = path.steps[-2].object
      expect(leak.class_name).to eq("Leak")
      if ruby == "3.1"
        expect(path.steps.last.name).to be_nil
      else
        expect(path.steps.last.label).to eq("@payload")
        expect(path.steps.last.name.to_h).to eq(kind: "ivar", expr: "@payload of #<Leak #{leak.address}>", context: nil)
      end
    end
  end

  it "loads a dump whose names file is damaged without its names, with a warning" do
    snapshot = Heapdiff.snapshot(dir: @dir)
    File.write(Heapdiff::Names.path_for(snapshot.path), '{"format":1,"entries":[["x"]]}')
    heap = nil
    expect { heap = Heapdiff.load(snapshot.path) }.to output(/ignoring the damaged names/).to_stderr
    expect(heap.names_count).to eq(0)
    File.write(Heapdiff::Names.path_for(snapshot.path), "not json")
    expect { heap = Heapdiff.load(snapshot.path) }.to output(/ignoring the damaged names file/).to_stderr
    expect(heap.names_count).to eq(0)
  end

  it "reads the names without touching the process: no autoload, no warning, ARGV and GC as they were" do
    code = <<~RUBY
      require "heapdiff"
      module Lazy
        autoload :Heavy, "/nonexistent/heavy"
      end
      module Old
        GONE = "gone"
        deprecate_constant :GONE
      end
      Warning[:deprecated] = true
      Heapdiff.snapshot(dir: ARGV.first)
      puts JSON.generate(argv: ARGV, autoload: Lazy.autoload?(:Heavy), deprecated: Warning[:deprecated],
                         gc_was_disabled: GC.enable)
    RUBY
    out, err, status = Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, "-e", code, @dir, "second")
    expect(status).to be_success, err
    expect(err).to eq("")
    expect(JSON.parse(out)).to eq("argv" => [@dir, "second"], "autoload" => "/nonexistent/heavy", "deprecated" => true,
                                  "gc_was_disabled" => false)
    heap = Heapdiff.load(Heapdiff::Snapshot.list(@dir).last.path)
    expect(heap.names_count).to be > 0
  end

  it "keeps, when the GC ran during the dump, only the names of objects older than the dump" do
    code = <<~RUBY
      require "heapdiff"
      Heapdiff.trace_allocations! if ARGV[0] == "traced"
      OLD_VALUE = +"old"
      GC.start
      gc_count = GC.count # as if the dump started here
      compact_count = GC.stat(:compact_count)
      traced = Heapdiff.tracing?
      ARGV[0] == "compacted" ? GC.compact : GC.start # the GC runs during the dump
      NEW_VALUE = +"new" # may be where the dump saw another object
      names = JSON.parse(Heapdiff::Names.capture(gc_count, compact_count, traced: traced))
      puts JSON.generate(names["entries"].map { |entry| entry[3] }.select { |expr| expr.end_with?("_VALUE") })
    RUBY
    kept = %w[traced untraced compacted].to_h do |how|
      out, status = Processes.ruby(code, how)
      raise "#{how}: #{out}" unless status.success?

      [how, JSON.parse(out.lines.last)]
    end
    expect(kept).to eq("traced" => ["OLD_VALUE"], "untraced" => [], "compacted" => [])
  end

  it "writes the names of this process's objects beside its dump" do
    snapshot = Heapdiff.snapshot(dir: @dir)
    heap = Heapdiff.load(snapshot.path)
    expect(heap.names_count).to be > 100
    expect(heap.name_of(ObjectSpace.dump(Heapdiff::OWN_PATHS)[/0x\h+/]).to_h)
      .to eq(kind: "constant", expr: "Heapdiff::OWN_PATHS", context: nil)
  end
end
