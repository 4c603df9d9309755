# frozen_string_literal: true

require "heapdiff/rake_task"
require "stringio"
require "tmpdir"
require "fileutils"
require_relative "../support/fixtures"

RSpec.describe Heapdiff::RakeTask do
  let(:leak3) { (0..2).map { |n| Fixtures.leak3("3.4", n) } }
  let(:out) { StringIO.new }
  let(:err) { StringIO.new }

  # Each example defines its tasks in a fresh Rake application.
  around do |example|
    previous = Rake.application
    Rake.application = Rake::Application.new
    example.run
  ensure
    Rake.application = previous
  end

  def define(**options)
    described_class.new do |t|
      t.out = out
      t.err = err
      options.each { |k, v| t.public_send("#{k}=", v) }
    end
  end

  def invoke(name, *args)
    Rake::Task[name].invoke(*args)
    out.string
  end

  it "defines the six tasks" do
    define
    expect(Rake::Task.tasks.map(&:name)).to eq(%w[heapdiff:baseline heapdiff:diff heapdiff:path heapdiff:report
                                                  heapdiff:summary heapdiff:trend])
    expect(Rake::Task["heapdiff:diff"].arg_names).to eq(%i[before after later])
  end

  it "heapdiff:diff[a,b,c] prints the report" do
    define(top: 2)
    text = invoke("heapdiff:diff", *leak3)
    expect(text.lines.first).to start_with("Leaks: 2")
    expect(text.split("\nSites:\n").last.lines.first).to start_with("Retained STRING 1000 objects")
    expect(text).to include("(2 more groups)")
  end

  it "heapdiff:report[dir] diffs the latest three snapshots" do
    define(format: "json")
    Dir.mktmpdir do |dir|
      leak3.each_with_index { |path, i| FileUtils.cp(path, File.join(dir, format("heap-%04d.json.gz", i + 1))) }
      expect(JSON.parse(invoke("heapdiff:report", dir))["total_count"]).to eq(3002)
    end
  end

  context "without a directory" do
    around do |example|
      saved = ENV.fetch("HEAPDIFF_DIR", nil)
      Dir.mktmpdir do |tmp|
        @tmp = tmp
        Dir.chdir(tmp) { example.run }
      end
    ensure
      ENV["HEAPDIFF_DIR"] = saved
    end

    def snapshots_in(dir)
      FileUtils.mkdir_p(dir)
      leak3.each_with_index { |path, i| FileUtils.cp(path, File.join(dir, format("heap-%04d.json.gz", i + 1))) }
    end

    it "heapdiff:report reads HEAPDIFF_DIR" do
      snapshots_in(File.join(@tmp, "dumps"))
      ENV["HEAPDIFF_DIR"] = File.join(@tmp, "dumps")
      define(top: 1)
      expect(invoke("heapdiff:report").lines.first).to start_with("Trend over 3 snapshots")
    end

    it "heapdiff:report reads tmp/heapdiff without HEAPDIFF_DIR, and writes HTML when asked" do
      ENV.delete("HEAPDIFF_DIR")
      snapshots_in("tmp/heapdiff")
      define(top: 1, html: "trend.html")
      expect(invoke("heapdiff:report")).to include("Diff of the latest three (growing or not):")
      expect(File.read("trend.html")).to start_with("<!DOCTYPE html>")
      expect(err.string).to include("heapdiff: wrote trend.html: trend over 3 snapshots")
    end

    it "heapdiff:trend[dir,html] writes the trend to the file given" do
      snapshots_in("d")
      define(top: 1)
      expect(invoke("heapdiff:trend", "d", "t.html")).to include("1. growing STRING at leak3.rb:17")
      expect(File.exist?("t.html")).to be(true)
    end

    it "says what is missing without the command's --help hint" do
      ENV.delete("HEAPDIFF_DIR")
      define
      expect { invoke("heapdiff:report") }.to raise_error(RuntimeError, /heapdiff report failed \(exit status 2\)/)
      expect(err.string).to eq("heapdiff: no such directory: tmp/heapdiff\n")
    end
  end

  it "heapdiff:path[dump,address] prints the path to a root" do
    define
    address = Heapdiff.diff(*leak3).first.addresses.first
    expect(invoke("heapdiff:path", leak3[1], address).lines.last).to match(/\AROOT vm → .* STRING #{address}$/)
  end

  it "heapdiff:summary[dump] prints the summary" do
    define(by: "type", top: 1)
    expect(invoke("heapdiff:summary", Fixtures.dump("3.4"))).to match(/Top type by count:\n\s+7976\s+354\.7 kB  STRING\n/)
  end

  it "fails when the command does, with fail_over exceeded" do
    define(fail_over: 10)
    expect { invoke("heapdiff:diff", *leak3) }.to raise_error(RuntimeError, /heapdiff diff failed \(exit status 1\)/)
    expect(err.string).to include("more than --fail-over 10")
  end

  it "takes another namespace" do
    described_class.new(:leaks)
    expect(Rake::Task.task_defined?("leaks:summary")).to be(true)
  end

  it "reads heapdiff_baseline.json from the project root by default; heapdiff:baseline[dir] writes it" do
    Dir.mktmpdir do |root|
      snapshots = File.join(root, "tmp/heapdiff")
      FileUtils.mkdir_p(snapshots)
      leak3.each_with_index { |path, i| FileUtils.cp(path, File.join(snapshots, format("heap-%04d.json.gz", i + 1))) }
      Dir.chdir(root) do
        define(fail_over: 0)
        # Without a baseline, 3002 retained objects are over 0.
        expect { invoke("heapdiff:report", snapshots) }.to raise_error(RuntimeError, /exit status 1/)
        invoke("heapdiff:baseline", snapshots)
        expect(err.string).to include("wrote heapdiff_baseline.json: 2 leaks")
        # With it, nothing is new: --fail-over 0 counts new leaks only.
        Rake::Task["heapdiff:report"].reenable
        expect { invoke("heapdiff:report", snapshots) }.not_to raise_error
        expect(out.string).to include("(0 new, 2 known in heapdiff_baseline.json)")
      end
    end
  end
end
