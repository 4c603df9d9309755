# frozen_string_literal: true

require "json"
require "tmpdir"
require_relative "../support/processes"

# Paths are bytes: a file name that is not UTF-8, a directory that is not ASCII in a
# process with no locale (LANG=C), a damaged sidecar. A bad neighbour is skipped,
# with a warning where it is a snapshot's own file; it never stops heapdiff. Each case
# runs in a child: with LC_ALL=C, where Ruby tags file names as binary, or with a
# UTF-8 locale, where it tags them UTF-8 whether or not they are.
RSpec.describe "Paths that are not UTF-8" do
  no_locale = { "LC_ALL" => "C", "LANG" => "C" }

  around do |example|
    Dir.mktmpdir("heapdiff-bytes") do |dir|
      @dir = dir
      example.run
    end
  end

  def child(code, *args, env: { "LC_ALL" => "C", "LANG" => "C" })
    code = "require 'heapdiff'\nrequire 'json'\nrequire 'logger'\nrequire 'stringio'\n#{code}"
    out, status = Processes.ruby(code, *args, env: env)
    expect(status.success?).to be(true), out
    out
  end

  it "keeps the Recorder, Snapshot.list, trend and report working beside a stray name and a damaged sidecar" do
    dir = File.join(@dir, "snaps")
    out = child(<<~RUBY, dir, env: { "LC_ALL" => "C.UTF-8" })
      require "heapdiff/cli"
      require "logger"
      dir = ARGV[0]
      errors = StringIO.new
      recorder = Heapdiff::Recorder.new(dir: dir, keep: 3, logger: Logger.new(errors))
      recorder.snapshot_now
      File.write(File.join(dir, "stray-\\xff\\xfe.json".b), "x")
      4.times { recorder.snapshot_now }
      File.write(File.join(dir, "heap-0004.meta.json"), "{not json")
      names = Heapdiff::Snapshot.list(dir).map { |s| [File.basename(s.path), s.meta.nil?] }
      out = StringIO.new
      status = Heapdiff::CLI.new(out: out, err: errors).run(["report", dir, "--html", File.join(dir, "trend.html")])
      trend = Heapdiff.trend(dir)
      puts JSON.generate(names: names, status: status, errors: errors.string, sites: trend.size)
    RUBY
    result = JSON.parse(out.lines.last)
    expect(result["names"]).to eq([["heap-0003.json", false], ["heap-0004.json", true], ["heap-0005.json", false]])
    expect(result["errors"]).not_to include("failed")
    expect(result["status"]).to eq(0)
    expect(result["sites"]).to be > 0
    expect(File.exist?(File.join(dir, "trend.html"))).to be(true)
  end

  it "skips a damaged sidecar with a warning, keeping its dump" do
    dir = File.join(@dir, "damaged")
    out = child(<<~RUBY, dir)
      dir = ARGV[0]
      3.times { Heapdiff.snapshot(dir: dir) }
      File.write(File.join(dir, "heap-0001.meta.json"), "{not json")
      File.write(File.join(dir, "heap-0002.meta.json"), "[1, 2]")
      puts JSON.generate(Heapdiff::Snapshot.list(dir).map { |s| s.meta.nil? })
    RUBY
    expect(JSON.parse(out.lines.last)).to eq([true, true, false])
    expect(out.scan(/heapdiff: ignoring the damaged sidecar .*heap-000[12]\.meta\.json/).size).to eq(2)
  end

  it "reports a forked snapshot in a non-UTF-8 directory as written, and keeps only keep: of them" do
    dir = File.join(@dir, "d\xff\xfe".b)
    out = child(<<~RUBY, dir)
      dir = ARGV[0]
      snapshot = Heapdiff.snapshot(dir: dir, fork: true).wait
      recorder = Heapdiff::Recorder.new(dir: dir, keep: 2, fork: true, logger: Logger.new($stdout))
      3.times { recorder.snapshot_now&.wait; sleep 0.2 }
      recorder.stop
      puts JSON.generate(complete: snapshot.complete?, error: snapshot.error&.message,
                         left: Dir.children(dir).map { |n| n.force_encoding("UTF-8") }.sort)
    RUBY
    result = JSON.parse(out.lines.last)
    expect(result).to include("complete" => true, "error" => nil)
    expect(result["left"]).to eq(%w[heap-0003.json heap-0003.meta.json heap-0003.names.json heap-0004.json heap-0004.meta.json heap-0004.names.json])
  end

  it "diffs when heapdiff itself is installed under a non-ASCII path" do
    lib = File.join(@dir, "lib-é-\xff".b)
    FileUtils.cp_r(Processes::LIB, lib)
    script = <<~RUBY
      $LOAD_PATH.unshift(ARGV[0])
      require "heapdiff"
      dir = ARGV[1]
      paths = 3.times.map { |i| Heapdiff.snapshot(File.join(dir, "\#{i}.json")).path }
      report = Heapdiff.diff(*paths)
      puts report.to_s(top: 1).lines.first
      puts "OK \#{report.size}"
    RUBY
    out, status = Processes.ruby(script, lib, @dir, env: no_locale)
    expect(status.success?).to be(true), out
    expect(out).to include("OK ")
  end
end
