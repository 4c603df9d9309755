# frozen_string_literal: true

require "etc"
require "stringio"
require "tmpdir"
require_relative "../support/fixtures"
require_relative "../support/processes"

# In a shared sticky directory (/tmp), another user can plant a symlink at any name
# heapdiff is about to write. Nothing heapdiff writes may follow one: the file the
# symlink points at (here root's 0600 file) stays as it was.
RSpec.describe "Writing files beside another user's symlinks" do
  before(:all) do
    skip "needs root, to act as another user" unless Process.uid.zero?
    @attacker = Etc.getpwnam("nobody")
    @victim_dir = Dir.mktmpdir("heapdiff-victim")
    @victim = File.join(@victim_dir, "precious")
    File.write(@victim, "root's secret\n", perm: 0o600)
    # Two snapshots of one process, for report --html.
    @snapshots = Dir.mktmpdir("heapdiff-snapshots")
    out, status = Processes.ruby('require "heapdiff"; 2.times { Heapdiff.snapshot(dir: ARGV[0]) }', @snapshots)
    raise out unless status.success?
  end

  after(:all) { [@victim_dir, @snapshots].compact.each { |d| FileUtils.rm_rf(d) } }

  around do |example|
    Dir.mktmpdir("heapdiff-shared") do |dir|
      File.chmod(0o1777, dir)
      @dir = dir
      example.run
    end
  end

  # Runs the block in a child process. Before the child starts writing, the attacker
  # (uid nobody) plants a symlink to the victim at each name +names+ gives for the
  # child's pid. Returns the child's exit status.
  def write_beside_symlinks(names)
    ready_r, ready_w = IO.pipe
    writer = fork do
      ready_w.close
      ready_r.read(1)
      yield
      exit!(0)
    rescue Heapdiff::Error
      exit!(3) # refused: fine, as long as nothing was written through a link
    rescue Exception => e # rubocop:disable Lint/RescueException -- a forked rspec must not run rspec's at_exit
      warn e.full_message
      exit!(1)
    end
    ready_r.close
    attacker = fork do
      Process::Sys.setgid(@attacker.gid)
      Process::Sys.setuid(@attacker.uid)
      names.call(writer).each { |name| File.symlink(@victim, File.join(@dir, name)) }
      exit!(0)
    end
    Process.wait(attacker)
    raise "the attacker could not plant its links" unless Process.last_status.success?

    ready_w.write("!")
    ready_w.close
    Process.wait(writer)
    Process.last_status
  end

  def expect_victim_intact(status)
    expect(File.read(@victim)).to eq("root's secret\n")
    expect([0, 3]).to include(status.exitstatus)
  end

  # The names older versions used (pid and thread id, or pid and sequence), and the
  # final names themselves.
  thread_id = Thread.current.object_id

  it "Heapdiff.redact follows none" do
    input = Fixtures.dump("3.1")
    status = write_beside_symlinks(lambda do |pid|
      [".out.json.tmp-#{pid}-#{thread_id}", ".out.json.tmp-#{pid}", "out.json"]
    end) { Heapdiff.redact(input, File.join(@dir, "out.json")) }
    expect_victim_intact(status)
    expect(File.symlink?(File.join(@dir, "out.json"))).to be(false)
  end

  it "heapdiff report --html follows none" do
    require "heapdiff/cli"
    status = write_beside_symlinks(->(pid) { ["trend.html.tmp-#{pid}", ".trend.html.tmp-#{pid}", "trend.html"] }) do
      Heapdiff::CLI.new(out: StringIO.new, err: StringIO.new).run(["report", @snapshots, "--html", File.join(@dir, "trend.html")])
    end
    expect_victim_intact(status)
    expect(File.read(File.join(@dir, "trend.html"))).to include("<html")
  end

  it "heapdiff diff --write-baseline follows none" do
    require "heapdiff/cli"
    dumps = (0..2).map { |n| Fixtures.leak3("3.3", n) }
    path = File.join(@dir, "heapdiff_baseline.json")
    status = write_beside_symlinks(->(_pid) { ["heapdiff_baseline.json"] }) do
      Heapdiff::CLI.new(out: StringIO.new, err: StringIO.new).run(["diff", *dumps, "--write-baseline", path])
    end
    expect_victim_intact(status)
    expect([File.symlink?(path), Heapdiff::Baseline.load(path).size]).to eq([false, 2])
  end

  it "Heapdiff.snapshot(path) follows none" do
    sequence = Heapdiff::Snapshot.instance_variable_get(:@sequence) + 1
    status = write_beside_symlinks(lambda do |pid|
      %w[heap.json heap.meta.json].flat_map { |n| [".#{n}.tmp-#{pid}-#{sequence}", n] }
    end) { Heapdiff.snapshot(File.join(@dir, "heap.json")) }
    expect_victim_intact(status)
  end

  it "Heapdiff.snapshot(dir:) follows none" do
    sequence = Heapdiff::Snapshot.instance_variable_get(:@sequence) + 1
    status = write_beside_symlinks(lambda do |pid|
      %w[heap-0001.json heap-0001.json.gz heap-0001.meta.json].flat_map { |n| [".#{n}.tmp-#{pid}-#{sequence}", n] }
    end) { Heapdiff.snapshot(dir: @dir, gzip: true) }
    expect_victim_intact(status)
    written = File.join(@dir, "heap-0002.json.gz") # heap-0001 was taken by a link
    expect([File.symlink?(written), File.file?(written), File.symlink?(File.join(@dir, "heap-0002.meta.json"))])
      .to eq([false, true, false])
  end
end
