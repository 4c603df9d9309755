# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# A leak's signature survives a restart, another process and another checkout
# directory; a baseline written from one run keeps the next one green, and only a new
# leak fails. Each run is a real program in a directory of its own (so its absolute
# paths differ), taking heapdiff snapshots of itself and counting what it keeps.
RSpec.describe "Leak signatures and baselines across runs" do
  store = <<~'RUBY'
    # The app's code, loaded by require_relative: the dump records its absolute path.
    module Store
      ENTRIES = []
      BACKUP = []
      AUDIT = []
      SESSIONS = {}

      class Session
        def initialize(id)
          @name = "session-#{id}"
          @tags = ["tag-#{id}"]
        end
      end

      def self.remember(id, holder)
        (holder == "backup" ? BACKUP : ENTRIES) << "entry-#{id}"
      end

      def self.open_session(id)
        SESSIONS[id] = Session.new(id)
      end

      def self.audit(id)
        AUDIT << "audit-#{id}"
      end

      # A thread without a name: the names file calls it by the file and line that started it.
      WORKER = Thread.new { sleep }; WORKER_LINE = __LINE__
      WORKER[:log] = []
      def self.log(id) = WORKER[:log] << "log-#{id}"

      # One site, two holders: even ids in one constant, odd ones in another.
      EVEN = []
      ODD = []
      def self.split(id) = (id.even? ? EVEN : ODD) << "split-#{id}"

      # A second call site that appends to ENTRIES: the same buffer, one site more.
      def self.remember_again(id) = ENTRIES << "again-#{id}"
    end
  RUBY

  program = <<~'RUBY'
    # ruby leaky.rb HOLDER [extra]: keeps an entry string in Store::ENTRIES (or
    # Store::BACKUP with HOLDER "backup") and a Session (with its name, its tags
    # array and its tag) per step, with "extra" an audit string too, and with "wider"
    # a second entry string from another call site. Snapshots
    # after steps 0...100, 100...300 and 300...350; prints what it kept of 100...300.
    require "heapdiff"
    require "json"
    Heapdiff.trace_allocations!
    require_relative "lib/store"

    holder, extra = ARGV
    step = lambda do |range|
      range.each do |id|
        Store.remember(id, holder)
        Store.open_session(id)
        Store.log(id)
        Store.split(id)
        Store.audit(id) if extra == "extra"
        Store.remember_again(id) if extra == "wider"
      end
    end
    sizes = [0...100, 100...300, 300...350].map do |range|
      step.call(range)
      Heapdiff.snapshot(dir: "snapshots")
      Store::ENTRIES.size + Store::BACKUP.size
    end

    middle = ->(list) { list.count { |s| (100...300).cover?(s[/\d+/].to_i) } }
    puts JSON.generate(
      entries: middle.call(Store::ENTRIES + Store::BACKUP),
      sessions: Store::SESSIONS.count { |id, _| (100...300).cover?(id) },
      audit: middle.call(Store::AUDIT),
      entries_at_snapshots: sizes,
      worker_line: Store::WORKER_LINE,
      even: middle.call(Store::EVEN),
      odd: middle.call(Store::ODD)
    )
  RUBY

  before(:all) { @root = Dir.mktmpdir("heapdiff-signatures") }
  after(:all) { FileUtils.rm_rf(@root) }

  # Runs the program in a new directory NAME: [its counts, its snapshots' directory].
  def run_program(name, *args)
    dir = File.join(@root, name)
    FileUtils.mkdir_p(File.join(dir, "lib"))
    File.write(File.join(dir, "lib", "store.rb"), store_source)
    File.write(File.join(dir, "leaky.rb"), program_source)
    out, err, status = Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, "leaky.rb", *args, chdir: dir)
    raise "leaky.rb #{args.join(" ")} failed: #{err}" unless status.success?

    [JSON.parse(out.lines.last), File.join(dir, "snapshots")]
  end

  def leaks_of(snapshots)
    Heapdiff.diff(*Heapdiff::Snapshot.list(snapshots)).leaks
  end

  def heapdiff(*args)
    Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, File.expand_path("../../exe/heapdiff", __dir__), *args)
  end

  define_method(:store_source) { store }
  define_method(:program_source) { program }

  it "gives the same leaks the same signatures in two directories and processes, another holder another" do
    truth1, snapshots1 = run_program("checkout-one", "entries")
    truth2, snapshots2 = run_program("another/checkout-two", "entries")
    truth3, snapshots3 = run_program("checkout-three", "backup")
    leaks1 = leaks_of(snapshots1)
    leaks2 = leaks_of(snapshots2)
    leaks3 = leaks_of(snapshots3)

    entries1 = leaks1.find { |l| l.holder_chain.first.start_with?("Store::ENTRIES") }
    expect(entries1.count).to eq(truth1["entries"])
    expect(entries1.sites.map(&:key)).to eq(["STRING lib/store.rb:16"])
    # The Session, its name, its tags array and its tag: one leak under Store::SESSIONS.
    sessions1 = leaks1.find { |l| l.holder_chain.first.start_with?("Store::SESSIONS") }
    expect(sessions1.sites.map(&:count)).to eq([truth1["sessions"]] * 4)
    expect(sessions1.sites.map(&:key)).to include("OBJECT Store::Session lib/store.rb:20", "ARRAY lib/store.rb:11")

    # In a trend over the three snapshots: the same leak, counted at each snapshot.
    Heapdiff.trend(snapshots1) do |trend|
      entries = trend.leaks.find { |l| l.holder_chain.first.start_with?("Store::ENTRIES") }
      expect(entries.counts).to eq(truth1["entries_at_snapshots"])
      expect(entries.signature).to eq(entries1.signature)
    end

    # The unnamed thread's buffer: its name's path is relative to the app root too.
    log1 = leaks1.find { |l| l.holder_chain.first.start_with?("Thread.current[:log]") }
    expect(log1.holder_chain.first).to eq("Thread.current[:log] (fiber-local, thread (lib/store.rb:#{truth1["worker_line"]}), Array)")
    expect(log1.count).to eq(truth1["entries"])

    # A site whose objects two holders share is under both leaks, each with its part.
    even, odd = %w[EVEN ODD].map { |c| leaks1.find { |l| l.holder_chain.first.start_with?("Store::#{c}") } }
    split = [even, odd].map { |l| l.sites.find { |s| s.key.start_with?("STRING lib/store.rb:") } }
    expect(split.map(&:count)).to eq([truth1["even"], truth1["odd"]])
    expect(split.map(&:share)).to eq([truth1["even"], truth1["odd"]].map { |n| n.fdiv(truth1["even"] + truth1["odd"]) })
    expect(split.map { |s| s.site.equal?(split.first.site) }).to eq([true, true])

    # Every leak of run 2 is one of run 1, by signature, and none says where it ran.
    expect(leaks2.map(&:signature).sort).to eq(leaks1.map(&:signature).sort)
    expect(truth2).to eq(truth1)
    expect(JSON.generate(leaks2.map { |l| [l.signature, l.title, l.holder_chain, l.sites.map(&:key)] }))
      .not_to include(@root)

    # Another holder: another signature for that leak, the same for the sessions.
    backup3 = leaks3.find { |l| l.holder_chain.first.start_with?("Store::BACKUP") }
    expect(backup3.count).to eq(truth3["entries"])
    expect(backup3.sites.map(&:key)).to eq(entries1.sites.map(&:key))
    expect(backup3.signature).not_to eq(entries1.signature)
    expect(leaks3.map(&:signature)).not_to include(entries1.signature)
    expect(leaks3.map(&:signature)).to include(sessions1.signature)
  end

  it "passes a run against the baseline of another, and flags only the leak a third run adds" do
    _, snapshots1 = run_program("base", "entries")
    _, snapshots2 = run_program("again", "entries")
    truth3, snapshots3 = run_program("added", "entries", "extra")
    baseline = File.join(@root, "heapdiff_baseline.json")

    _out, err, status = heapdiff("report", snapshots1, "--write-baseline", baseline)
    expect(status.exitstatus).to eq(0), err
    written = JSON.parse(File.read(baseline))
    expect(written["leaks"].map { |l| l["title"] }).to include(a_string_starting_with("Store::ENTRIES"))

    out, err, status = heapdiff("report", snapshots2, "--baseline", baseline)
    expect(status.exitstatus).to eq(0), err + out
    expect(out).to match(/^Leaks: \d+ \(0 new, \d+ known in /)

    out, err, status = heapdiff("report", snapshots3, "--baseline", baseline, "--format", "json")
    expect(status.exitstatus).to eq(1)
    fresh = JSON.parse(out)["leaks"].reject { |l| l["known"] }
    expect(fresh.size).to eq(1)
    expect(fresh.first["holder_chain"].first).to start_with("Store::AUDIT")
    expect(fresh.first["count"]).to eq(truth3["audit"])
    expect(err).to include("1 new leak (#{truth3["audit"]} objects)").and include(fresh.first["signature"])

    # A known holder reached from one more call site: another signature, but the
    # baseline's entry has its holder chain and shares a site with it, so it is known.
    _, snapshots4 = run_program("wider", "entries", "wider")
    wider = leaks_of(snapshots4).find { |l| l.holder_chain.first.start_with?("Store::ENTRIES") }
    expect(wider.sites.size).to eq(2)
    expect(written["leaks"].map { |l| l["signature"] }).not_to include(wider.signature)
    expect(Heapdiff::Baseline.load(baseline).known?(wider)).to be(true)
    out, err, status = heapdiff("report", snapshots4, "--baseline", baseline)
    expect(status.exitstatus).to eq(0), err + out

    # --fail-over counts the new leaks' objects only.
    _out, _err, status = heapdiff("report", snapshots3, "--baseline", baseline, "--fail-over", truth3["audit"].to_s)
    expect(status.exitstatus).to eq(0)
    _out, _err, status = heapdiff("report", snapshots3, "--baseline", baseline, "--fail-over", (truth3["audit"] - 1).to_s)
    expect(status.exitstatus).to eq(1)
  end

  # A pool of numbered threads, as Puma names its own ("puma srv tp 001", …), each
  # with its own buffer in Thread.current: one leak, whichever threads served.
  pool_program = <<~'RUBY'
    # ruby pool.rb THREADS FIRST: THREADS threads named "app tp FIRST", "app tp FIRST+1",
    # … (like Puma's pool, whose numbers grow as threads are replaced), each keeping the
    # strings it made in Thread.current[:buffer]; snapshots after 60, 240 and 300 items
    # dealt round robin. Prints how many the pool kept of items 60...240.
    require "heapdiff"
    require "json"
    Heapdiff.trace_allocations!
    threads, first = ARGV.map(&:to_i)
    queues = Array.new(threads) { Queue.new }
    done = Queue.new
    pool = queues.each_with_index.map do |queue, i|
      Thread.new do
        Thread.current.name = format("app tp %03d", first + i)
        Thread.current[:buffer] = []
        while (id = queue.pop)
          Thread.current[:buffer] << "item-#{id}"
          done << id
        end
      end
    end
    [0...60, 60...240, 240...300].each do |range|
      range.each { |id| queues[id % threads] << id }
      range.size.times { done.pop }
      Heapdiff.snapshot(dir: "snapshots")
    end
    kept = pool.sum { |t| t[:buffer].count { |s| (60...240).cover?(s[/\d+/].to_i) } }
    puts JSON.generate(kept: kept)
  RUBY

  def run_pool(name, threads, first, program)
    dir = File.join(@root, name)
    FileUtils.mkdir_p(dir)
    File.write(File.join(dir, "pool.rb"), program)
    out, err, status = Open3.capture3(RbConfig.ruby, "-I", Processes::LIB, "pool.rb", threads.to_s, first.to_s, chdir: dir)
    raise "pool.rb failed: #{err}" unless status.success?

    [JSON.parse(out.lines.last), File.join(dir, "snapshots")]
  end

  define_method(:pool_source) { pool_program }

  it "makes the buffers of a pool of numbered threads one leak, with one signature in runs of other threads" do
    truth1, snapshots1 = run_pool("pool-one", 3, 1, pool_source)
    truth2, snapshots2 = run_pool("pool-two", 2, 7, pool_source)
    buffers = [snapshots1, snapshots2].map do |snapshots|
      leaks_of(snapshots).select { |l| l.holder_chain.first.start_with?("Thread.current[:buffer]") }
    end
    expect(buffers.map(&:size)).to eq([1, 1])
    one, two = buffers.map(&:first)
    expect(one.holder_chain.first).to eq('Thread.current[:buffer] (fiber-local, thread "app tp N", Array)')
    expect([one.count, two.count]).to eq([truth1["kept"], truth2["kept"]])
    expect(two.signature).to eq(one.signature)
  end
end
