# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require "fileutils"
require "stringio"
require "heapdiff/cli"
require_relative "../support/fixtures"

RSpec.describe "exe/heapdiff" do
  let(:root) { File.expand_path("../..", __dir__) }

  # Runs the executable as a user would: [stdout, stderr, exit status].
  def heapdiff(*args)
    out, err, status = Open3.capture3(RbConfig.ruby, "-I#{root}/lib", "#{root}/exe/heapdiff", *args)
    [out, err, status.exitstatus]
  end

  let(:leak3) { (0..2).map { |n| Fixtures.leak3("3.4", n) } }

  # The text output's groups, below its leaks.
  def sites(out)
    out.split("\nSites:\n", 2).last
  end
  let(:dump) { Fixtures.dump("3.4") }

  describe "diff" do
    it "prints the retained groups with where they are held" do
      out, _, status = heapdiff("diff", *leak3, "--top", "3")
      expect(status).to eq(0)
      # leak3.rb keeps its three sites' objects in one Array constant of Object: one
      # leak (a plain dump names the constant's class, not the constant).
      expect(out).to start_with("Leaks: 2\n  leak ")
      expect(out.lines[1]).to include(": CLASS Object ← 3 sites, OBJECT Leak, STRING: 3000 objects")
      expect(sites(out).lines.first).to eq("Retained STRING 1000 objects of size 40.0 kB/556.2 kB at: leak3.rb:17\n")
      expect(out).to include("1000 OBJECT Leak from leak3.rb:28 — 100% held by ARRAY")
      # Five groups: the three leaks, the script's own string at :34, and one IMEMO
      # cache, which is folded into the VM caches line.
      expect(out).to include("\n(1 more group)\n(VM caches: 1 IMEMO object, 20 B in 1 group: ")
      expect(heapdiff("diff", *leak3, "--top", "2").first).to include("\n(2 more groups)\n")
    end

    it "writes JSON" do
      out, _, status = heapdiff("diff", *leak3, "--format", "json", "--top", "3")
      expect(status).to eq(0)
      data = JSON.parse(out)
      expect(data["groups"].size).to eq(3)
      expect(data["groups"].map { |g| [g["location"], g["count"]] }).to all(satisfy { |_, count| count == 1000 })
      expect(data).to include("total_count" => 3002, "group_count" => 5)
      # A few addresses per group, in the last dump: `heapdiff path` follows one.
      leak = data["groups"].find { |g| g["location"] == "leak3.rb:28" }
      expect(leak["addresses"].size).to eq(3)
      path, = heapdiff("path", leak3[2], leak["addresses"].first)
      expect(path.lines.first).to start_with("#<Heapdiff::Object #{leak["addresses"].first} OBJECT Leak")
    end

    it "groups by type, file or gem" do
      out, = heapdiff("diff", *leak3, "--by", "type")
      expect(out).to match(/^\s+2001\s+536\.1 kB  STRING$/).and match(/^\s+1000\s+20\.0 kB  OBJECT$/)
      data = JSON.parse(heapdiff("diff", *leak3, "--by", "file", "--format", "json").first)
      expect(data["rows"].first).to include("key" => "leak3.rb", "count" => 3002)
    end

    it "exits 1 with --fail-over when more objects are retained" do
      _, err, status = heapdiff("diff", *leak3, "--fail-over", "3001")
      expect(status).to eq(1)
      expect(err).to include("3002 objects retained, more than --fail-over 3001")
      expect(heapdiff("diff", *leak3, "--fail-over", "3002").last).to eq(0)
    end

    it "shows only some sites with --only and --ignore (types, paths, gems), as the matcher does" do
      out, = heapdiff("diff", *leak3, "--only", ":object")
      expect(sites(out).lines.first).to start_with("Retained OBJECT Leak 1000 objects")
      expect(out.lines.grep(/^Retained/).size).to eq(1)
      expect(out).to include("(4 groups left out by only/ignore)")
      out, = heapdiff("diff", *leak3, "--ignore", "leak3.rb", "--ignore", "/leak/")
      expect(out).to start_with("No leaks.\n")
      expect(sites(out)).to start_with("(5 groups left out by only/ignore)")
      data = JSON.parse(heapdiff("diff", *leak3, "--only", ":string", "--format", "json").first)
      expect(data["groups"].map { |g| g["type"] }.uniq).to eq(["STRING"])
      expect(data["left_out_groups"]).to eq(2)
      # --fail-over counts what is shown: 2001 strings (1000 + 1000 + the script's 1)
      _, err, status = heapdiff("diff", *leak3, "--only", ":string", "--fail-over", "2000")
      expect([err, status]).to eq(["heapdiff: 2001 objects retained, more than --fail-over 2000\n", 1])
      out, = heapdiff("trend", *leak3, "--ignore", ":string")
      expect(out).to include("  3. growing OBJECT Leak").and include("(3 growing left out by only/ignore)")
      expect(heapdiff("diff", *leak3, "--only", "/(/")[1..]).to match([%r{invalid argument: --only /\(/}, 2])
    end

    it "says which baseline file it cannot use, before loading any dump" do
      Dir.mktmpdir do |dir|
        bad = File.join(dir, "heapdiff_baseline.json")
        File.write(bad, "[1, 2]")
        _, err, status = heapdiff("diff", *leak3, "--baseline", bad)
        expect([err, status]).to eq(["heapdiff: #{bad} is not a heapdiff baseline ({\"heapdiff_baseline\": 1, \"leaks\": […]})\n", 2])
        _, err, status = heapdiff("diff", "/nonexistent/0.json", "/nonexistent/1.json", "--baseline", File.join(dir, "none.json"))
        expect(status).to eq(2)
        expect(err).to start_with("heapdiff: cannot read the baseline #{File.join(dir, "none.json")}: No such file or directory")
          .and end_with(" (one is made by 'heapdiff report DIR --write-baseline #{File.join(dir, "none.json")}' " \
                        "or Heapdiff::Baseline.write)\n")
      end
    end

    it "writes the leaks it finds into --write-baseline, with --no-class-edges too" do
      Dir.mktmpdir do |dir|
        # 100 strings a run, in an ivar of an anonymous class that only its instance's
        # class edge reaches: without those edges, no root reaches them.
        program = <<~'RUBY'
          require "objspace"
          ObjectSpace.trace_object_allocations_start
          klass = Class.new { class << self; attr_accessor :kept; end }
          klass.kept = []
          HOLDER = klass.new
          klass = nil
          3.times do |k|
            100.times { HOLDER.class.kept << "x#{rand}" }
            GC.start(full_mark: true, immediate_sweep: true)
            File.open(File.join(ARGV[0], "#{k}.json"), "w") { |f| ObjectSpace.dump_all(output: f) }
          end
        RUBY
        out, status = Open3.capture2e(RbConfig.ruby, "-e", program, dir)
        expect(status.success?).to be(true), out
        dumps = (0..2).map { |k| File.join(dir, "#{k}.json") }
        baseline = File.join(dir, "b.json")
        out, _, status = heapdiff("diff", *dumps, "--no-class-edges", "--format", "json", "--write-baseline", baseline)
        expect(status).to eq(0)
        shown = JSON.parse(out)["leaks"].map { |leak| leak["signature"] }
        written = JSON.parse(File.read(baseline))["leaks"].map { |leak| leak["signature"] }
        expect(written).to match_array(shown)
        out, = heapdiff("diff", *dumps, "--format", "json")
        expect(JSON.parse(out)["leaks"].map { |leak| leak["signature"] }).not_to match_array(shown)
      end
    end

    it "verify --format json passes as the exit status does, --fixed included, and says why not" do
      out, err, status = heapdiff("verify", *leak3, "--", *leak3, "--format", "json")
      expect([JSON.parse(out).values_at("passed", "failures"), status]).to eq([[true, []], 0]), err
      # The same recording twice: its leak of 3 sites is unchanged, not fixed.
      signature = JSON.parse(heapdiff("diff", *leak3, "--format", "json")[0])["leaks"].first["signature"]
      out, err, status = heapdiff("verify", *leak3, "--", *leak3, "--format", "json", "--fixed", signature)
      failure = "leak #{signature} is unchanged, not fixed (--fixed)"
      expect([JSON.parse(out).values_at("passed", "failures"), err, status]).to eq([[false, [failure]], "heapdiff: #{failure}\n", 1])
    end

    it "takes file names that are not UTF-8, as options' values and as operands" do
      Dir.mktmpdir do |dir|
        latin1 = File.join(dir, "caf\xe9.json") # a UTF-8 locale's ARGV: tagged UTF-8, invalid
        _, err, status = heapdiff("diff", *leak3, "--write-baseline", latin1)
        expect([err.b, status]).to eq(["heapdiff: wrote #{latin1}: 2 leaks\n".b, 0])
        expect(File.exist?(latin1)).to be(true)
        out, _, status = heapdiff("diff", *leak3, "--baseline", latin1)
        expect(status).to eq(0)
        expect(out.lines.first).to start_with("Leaks: 2 (0 new, 2 known in ")
        _, err, status = heapdiff("diff", File.join(dir, "caf\xe9-0.json"), leak3[1])
        expect([err.b, status]).to match([/\Aheapdiff: .*caf.*-0\.json: No such file/n, 2])
        _, err, status = heapdiff("compare", File.join(dir, "caf\xe9"))
        expect([err.b, status]).to match([/\Aheapdiff: no such directory: .*caf/n, 2])
        _, err, status = heapdiff("verify", *leak3, "--", *leak3, "--fixed", "caf\xe9")
        expect([err.b, status]).to match([/\Aheapdiff: invalid argument: --fixed caf/n, 2])
        _, err, status = heapdiff("path", leak3[2], "0x\xff")
        expect([err.lines.first, status]).to eq(["heapdiff: not an address: 0x\\xFF (expected 0x…)\n", 2])
      end
    end

    it "diffs two dumps: what was allocated in between" do
      out, = heapdiff("diff", *leak3.first(2), "--top", "1")
      expect(sites(out)).to start_with("Allocated STRING 1001 objects")
    end
  end

  describe "report" do
    it "diffs the latest three snapshots of a directory" do
      Dir.mktmpdir do |dir|
        FileUtils.cp(leak3[2], File.join(dir, "heap-0001.json.gz"))
        leak3.each_with_index { |path, i| FileUtils.cp(path, File.join(dir, format("heap-%04d.json.gz", i + 2))) }
        out, _, status = heapdiff("report", dir, "--format", "json")
        expect(status).to eq(0)
        data = JSON.parse(out)
        expect(data["dumps"].map { |p| File.basename(p) }).to eq(%w[heap-0002.json.gz heap-0003.json.gz heap-0004.json.gz])
        expect(data["total_count"]).to eq(3002)
      end
    end

    it "says so when the directory has fewer than two, and which names count" do
      Dir.mktmpdir do |dir|
        FileUtils.cp(leak3[0], File.join(dir, "0.jsonl.gz"))
        _, err, status = heapdiff("report", dir)
        expect(status).to eq(2)
        expect(err).to include("at least two snapshots in #{dir}, found 0 (snapshots are named heap-NNNN.json or " \
                               "heap-NNNN.json.gz; 'heapdiff diff A B C' takes any names)")
      end
    end

    it "points at the pid-PID subdirectories of a directory whose forked processes recorded there (Puma workers)" do
      Dir.mktmpdir do |dir|
        %w[pid-101 pid-102].each { |child| snapshot_dir(FileUtils.mkdir_p(File.join(dir, child)).first) }
        %w[report trend].each do |command|
          out, err, status = heapdiff(command, dir)
          expect([out, status]).to eq(["", 2])
          expect(err).to start_with("heapdiff: #{command} needs at least two snapshots in #{dir}, found 0; its pid-101, pid-102 " \
                                    "hold each forked process's (Puma workers…): 'heapdiff #{command} #{dir}/pid-101' for one, " \
                                    "'heapdiff compare #{dir}' to set them side by side\n")
          _, _, status = heapdiff(command, File.join(dir, "pid-101"))
          expect(status).to eq(0)
        end
      end
    end

    it "leads with the trend's growing leaks over every snapshot and what to do next, then the diff of the latest three" do
      Dir.mktmpdir do |dir|
        snapshot_dir(dir)
        out, _, status = heapdiff("report", dir, "--top", "1")
        expect(status).to eq(0)
        lines = out.lines.map(&:chomp)
        expect(lines.first).to start_with("Trend over 3 snapshots (heap-0001.json.gz … heap-0003.json.gz): ")
          .and end_with("4 growing, 81 stable, 2 transient")
        # The script keeps 1000 objects a phase at each of three lines, in one array:
        # one leak of three sites leads, with what to do next.
        expect(lines[1]).to start_with("Growing leaks: ")
        expect(lines[2]).to start_with("  leak ").and include("CLASS Object ← 3 sites, OBJECT Leak, STRING")
        expect(lines[3..4]).to eq(["      3000 OBJECT Leak at leak3.rb:28 (100%)", "      3000 STRING at leak3.rb:17 (100%)"])
        expect(lines[5]).to include("STRING at leak3.rb:27")
        growing = lines.index { |l| l.start_with?("  1. growing") }
        expect(lines[growing]).to start_with("  1. growing STRING at leak3.rb:17: 1000 → 2000 → 3000 objects")
        expect(lines[growing + 3]).to eq("(1 more growing)")
        expect(lines[growing + 4]).to start_with("Next: ")
        expect(lines[growing + 6]).to eq("  after a fix, recorded in AFTER:   heapdiff verify #{dir} AFTER")
        diff = lines.index("Diff of the latest three (growing or not):")
        expect(lines[diff + 1]).to start_with("Leaks: 2")
        expect(lines[lines.index("Sites:") + 1]).to start_with("Retained STRING 1000 objects of size 40.0 kB/556.2 kB at: leak3.rb:17")
        data = JSON.parse(heapdiff("report", dir, "--format", "json").first)
        expect(data["trend"]["verdicts"]).to eq("growing" => 4, "stable" => 81, "transient" => 2)
        # The text's growing leaks: the script's three lines under one holder lead.
        expect(data["trend"]["leaks"].first["sites"].map { |site| site["location"] })
          .to contain_exactly("leak3.rb:17", "leak3.rb:27", "leak3.rb:28")
        expect(data["trend"]["growing"].first).to include("location" => "leak3.rb:17", "counts" => [1000, 2000, 3000])
      end
    end

    it "marks the trend's growing leaks known or new by --baseline, and names a 1-object new leak in the singular" do
      Dir.mktmpdir do |dir|
        snapshot_dir(dir)
        # The script keeps one string a phase at leak3.rb:34: a baseline of every
        # other leak leaves that one new, with 1 object in the diff.
        baseline = File.join(dir, "heapdiff_baseline.json")
        report = Heapdiff.diff(*leak3)
        Heapdiff::Baseline.write(baseline, report.leaks.reject { |l| l.sites.map { |s| s.site.location } == ["leak3.rb:34"] })
        report.close
        out, err, status = heapdiff("report", dir, "--baseline", baseline)
        expect(status).to eq(1)
        lines = out.lines.map(&:chomp)
        expect(lines[1]).to match(/\AGrowing leaks: \d+ \(\d+ new, 1 known in #{Regexp.escape(baseline)}\)\z/)
        first_site = lines.index { |l| l.start_with?("  1. growing") }
        trend_leaks = lines[2...first_site].grep(/\A  (known|new) leak /)
        # New ones first: the one the baseline lacks leads, the known one is last.
        expect(trend_leaks.first).to start_with("  new leak ").and include("DATA Thread ← 1 site, STRING")
        expect(trend_leaks.last).to start_with("  known leak ").and include("3 sites, OBJECT Leak, STRING")
        expect(err).to start_with("heapdiff: 1 new leak (1 object) not in #{baseline}: ")
      end
    end
  end

  # leak3's dumps (1000 Leak objects kept per phase, counted by the script) as a
  # Recorder's directory.
  def snapshot_dir(dir)
    leak3.each_with_index { |path, i| FileUtils.cp(path, File.join(dir, format("heap-%04d.json.gz", i + 1))) }
    dir
  end

  describe "trend" do
    it "follows every site across a directory's snapshots, in text, JSON and HTML" do
      Dir.mktmpdir do |dir|
        snapshot_dir(dir)
        out, _, status = heapdiff("trend", dir, "--top", "1")
        expect(status).to eq(0)
        expect(out.lines.first).to start_with("Trend over 3 snapshots")
        expect(out).to include("1. growing STRING at leak3.rb:17: 1000 → 2000 → 3000 objects")
        expect(out).not_to include("2. growing")
        data = JSON.parse(heapdiff("trend", dir, "--format", "json", "--top", "3").first)
        expect(data["verdicts"]).to eq("growing" => 4, "stable" => 81, "transient" => 2)
        expect(data["sites"].map { |site| site["counts"].last }).to eq([3000, 3001, 3000])
        html = File.join(dir, "trend.html")
        _, err, status = heapdiff("trend", dir, "--html", html)
        expect([status, err]).to eq([0, "heapdiff: wrote #{html}: trend over 3 snapshots, 4 growing sites\n"])
        expect(File.read(html)).to start_with("<!DOCTYPE html>")
      end
    end

    it "takes dumps by name, oldest first" do
      out, _, status = heapdiff("trend", *leak3, "--top", "1")
      expect(status).to eq(0)
      expect(out).to include("1. growing STRING at leak3.rb:17")
    end
  end

  describe "path" do
    it "prints the path from a root to an object, in text and JSON" do
      leaked = Heapdiff.diff(*leak3).find { |g| g.location == "leak3.rb:28" }.addresses.first
      out, _, status = heapdiff("path", leak3[1], leaked)
      expect(status).to eq(0)
      expect(out.lines.last).to match(/\AROOT \w+ → .* → \[\d+\] OBJECT Leak #{leaked} \(2 refs\)$/)
      data = JSON.parse(heapdiff("path", leak3[1], leaked, "--format", "json").first)
      expect(data["object"]).to include("address" => leaked, "class_name" => "Leak")
      expect(data["path"]["steps"].last["address"]).to eq(leaked)
    end

    it "exits 2 for an address that is not in the dump" do
      _, err, status = heapdiff("path", dump, "0x1")
      expect([err, status]).to match([/no object at 0x1/, 2])
    end
  end

  describe "summary" do
    it "prints the top types, classes, locations, files and gems, and duplicated strings" do
      out, _, status = heapdiff("summary", dump, "--top", "3")
      expect(status).to eq(0)
      expect(out.lines.first).to match(/ruby-3.4.jsonl: 17334 objects, [\d.]+ MB$/)
      %w[type class location file gem].each { |key| expect(out).to include("Top #{key} by count:", "Top #{key} by memsize:") }
      expect(out).to match(/^\s+7976\s+354\.7 kB  STRING$/)
      expect(out).to include("Duplicated strings")
    end

    it "writes JSON, one table with --by" do
      data = JSON.parse(heapdiff("summary", dump, "--format", "json", "--by", "type", "--top", "2").first)
      expect(data["tables"].keys).to eq(["type"])
      expect(data["tables"]["type"]["by_count"].first).to eq("key" => "STRING", "count" => 7976, "memsize" => 354_694)
      expect(data["duplicate_strings"].size).to eq(2)
    end
  end

  describe "usage" do
    it "has --help on every command" do
      %w[diff report path summary].each do |command|
        out, _, status = heapdiff(command, "--help")
        expect([out, status]).to match([start_with("Usage: heapdiff #{command} "), 0])
      end
      expect(heapdiff("--help").first).to include("Commands:")
    end

    it "prints its version" do
      %w[--version -v version].each do |flag|
        expect(heapdiff(flag)).to eq(["heapdiff #{Heapdiff::VERSION}\n", "", 0])
      end
    end

    it "offers --top only where it applies" do
      expect(heapdiff("path", "--help").first).not_to include("--top")
      expect(heapdiff("path", dump, "0x1", "--top", "3")[1..]).to match([/invalid option: --top/, 2])
      %w[diff report trend summary].each { |command| expect(heapdiff(command, "--help").first).to include("--top N") }
      expect(heapdiff("diff", *leak3, "--top", "0")[1]).to start_with("heapdiff: invalid argument: --top 0\n")
    end

    it "says what is wrong with a file given for a directory and the other way round, without a backtrace" do
      expect(heapdiff("report", dump)[1..]).to eq(
        ["heapdiff: #{dump} is a file, not a directory of snapshots ('heapdiff diff A B C' diffs dumps by name)\n" \
         "Try 'heapdiff report --help'.\n", 2]
      )
      dir = File.dirname(dump)
      expect(heapdiff("summary", dir)[1..]).to eq(
        ["heapdiff: #{dir} is a directory; this command reads one dump file\nTry 'heapdiff summary --help'.\n", 2]
      )
      expect(heapdiff("report", "/nonexistent/heapdiff")[1]).to start_with("heapdiff: no such directory: /nonexistent")
    end

    it "exits 130 with one line on a real Ctrl-C (SIGINT)" do
      Dir.mktmpdir do |dir|
        # Stands in for a long diff: says it has started, then waits.
        hook = File.join(dir, "slow_diff.rb")
        File.write(hook, <<~RUBY)
          require "heapdiff"
          Heapdiff.singleton_class.prepend(Module.new { def diff(*) = ($stderr.puts("started") || sleep) })
        RUBY
        command = [RbConfig.ruby, "-I#{root}/lib", "-r#{hook}", "#{root}/exe/heapdiff", "diff", *leak3]
        Open3.popen3(*command) do |_in, _out, err, thread|
          expect(err.gets).to eq("started\n")
          Process.kill("INT", thread.pid)
          expect(thread.value.exitstatus).to eq(130)
          expect(err.read).to eq("heapdiff: interrupted\n")
        end
      end
    end

    it "exits 130 with one line when interrupted" do
      err = StringIO.new
      cli = Heapdiff::CLI.new(out: StringIO.new, err: err)
      allow(Heapdiff).to receive(:diff).and_raise(Interrupt)
      expect(cli.run(["diff", *leak3])).to eq(130)
      expect(err.string).to eq("heapdiff: interrupted\n")
    end

    it "names a missing file without Rust's error number" do
      _, err, status = heapdiff("diff", leak3[0], "/nonexistent/1.json")
      expect([err, status]).to eq(["heapdiff: /nonexistent/1.json: No such file or directory\n", 2])
    end

    it "writes empty JSON arrays as []" do
      out, = heapdiff("diff", *leak3, "--format", "json", "--top", "1")
      expect(out).to include('"warnings": []')
      expect(out).not_to match(/\[\s*\n\s*\n\s*\]/)
    end

    it "exits 2 on a usage error or a file that is not a dump" do
      expect(heapdiff("frobnicate")[1..]).to match([/unknown command "frobnicate"/, 2])
      expect(heapdiff("diff", dump)[1..]).to match([/needs two or three dumps/, 2])
      expect(heapdiff("diff", dump, dump, "--format", "xml")[1..]).to match([/invalid argument: --format xml/, 2])
      expect(heapdiff("summary", __FILE__)[1..]).to match([/not a heap dump/, 2])
    end

    it "prints a loading line for a large dump when stderr is a terminal" do
      require "pty"
      output = +""
      PTY.spawn(RbConfig.ruby, "-I#{root}/lib", "#{root}/exe/heapdiff", "summary", dump, "--by", "type") do |r, _w, pid|
        begin
          r.each_line { |line| output << line }
        rescue Errno::EIO
          nil # the child closed the terminal
        end
        Process.wait(pid)
      end
      expect(output).to include("heapdiff: loading #{dump} (4.8 MB)…")
      expect(heapdiff("summary", dump, "--by", "type")[1]).to be_empty
    end
  end
end
