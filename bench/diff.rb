# frozen_string_literal: true

# Benchmarks a 3-dump diff: heapdiff against heapy, with `cat` as the floor.
#
#   ruby bench/diff.rb [--objects 1_000_000] [--seed 42] [--runs 1]
#
# Generates the dumps with bench/generate.rb into bench/out/ (skipped when
# already there with the same parameters), then measures wall time and peak
# RSS of each command in its own child process with `/usr/bin/time -f "%e %M"`
# (Debian package `time`; without it, RSS is sampled from /proc/PID/status
# VmHWM and marked "~"):
#
#   cat       cat 0.json 1.json 2.json > /dev/null    (page cache warmed first)
#   wc -l     wc -l 0.json 1.json 2.json
#   heapy     heapy diff 0.json 1.json 2.json > /dev/null
#   heapdiff  ruby -I lib -e 'require "heapdiff"; ...Heapdiff.diff(*ARGV)...'
#
# Prints a table (median of --runs runs) and PASS/MISS for the targets:
# heapdiff at least 20x faster than heapy; heapdiff peak RSS below half the
# total size of the three dumps. Always exits 0: it is a benchmark, not a test.

require "json"
require "optparse"
require "rbconfig"
require "tempfile"

module HeapdiffBench
  class DiffBench
    ROOT = File.expand_path("..", __dir__)
    OUT = File.join(ROOT, "bench", "out")
    TIME = "/usr/bin/time"
    SPEEDUP_TARGET = 20.0
    RSS_FRACTION_TARGET = 0.5

    HEAPDIFF_SCRIPT = 'require "heapdiff"; r = Heapdiff.diff(*ARGV); puts r.groups.first.to_s'

    Result = Struct.new(:name, :wall, :rss_kb, :note, :approx_rss, keyword_init: true)

    def initialize(argv)
      @opts = { objects: 1_000_000, seed: 42, runs: 1 }
      OptionParser.new do |o|
        o.banner = "usage: ruby bench/diff.rb [--objects N] [--seed S] [--runs N]"
        o.on("--objects N", Integer) { |v| @opts[:objects] = v }
        o.on("--seed S", Integer) { |v| @opts[:seed] = v }
        o.on("--runs N", Integer) { |v| @opts[:runs] = [v, 1].max }
      end.parse!(argv)
    end

    def run
      generate
      @files = Array.new(3) { |i| File.join(OUT, "#{i}.json") }
      @total = @files.sum { |f| File.size(f) }
      puts "time/RSS: #{have_time? ? "#{TIME} -f '%e %M'" : "#{TIME} missing (apt-get install time); RSS sampled from /proc VmHWM"}"

      # warm the page cache so that `cat` is the floor, not the disk
      system("cat", *@files, out: File::NULL)

      results = []
      results << measure("cat", ["cat", *@files])
      wc = nil
      results << measure("wc -l", ["wc", "-l", *@files]) { |out| wc = out }
      results << measure("heapy", [heapy_bin, "diff", *@files]) if heapy_bin
      results << (heapdiff_built? ? measure("heapdiff", heapdiff_cmd) : Result.new(name: "heapdiff", note: "heapdiff not built"))

      report(results, wc)
      0
    end

    private

    # -- generation ----------------------------------------------------------

    def generate
      cmd = [RbConfig.ruby, File.join(ROOT, "bench", "generate.rb"), OUT,
             "--objects", @opts[:objects].to_s, "--seed", @opts[:seed].to_s]
      t = now
      system(*cmd, exception: true)
      puts format("dumps: %s (generate step %.1f s)", OUT, now - t)
    end

    # -- commands ------------------------------------------------------------

    def heapy_bin
      @heapy_bin ||= ["/usr/bin/heapy", *ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "heapy") }]
                     .find { |p| File.executable?(p) }
    end

    def heapdiff_cmd
      [RbConfig.ruby, "-I", File.join(ROOT, "lib"), "-e", HEAPDIFF_SCRIPT, *@files]
    end

    def heapdiff_built?
      return @heapdiff_built unless @heapdiff_built.nil?

      @heapdiff_built = system(RbConfig.ruby, "-I", File.join(ROOT, "lib"), "-e", 'require "heapdiff"',
                               out: File::NULL, err: File::NULL)
    end

    # -- measuring -----------------------------------------------------------

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def have_time?
      File.executable?(TIME)
    end

    # Runs cmd @opts[:runs] times; returns the median wall time and median peak
    # RSS. stdout goes to /dev/null unless a block wants it (first run only).
    def measure(name, cmd, &want_stdout)
      walls = []
      rsses = []
      approx = false
      failure = nil
      @opts[:runs].times do |i|
        wall, rss, status, out, err, approx = run_one(cmd, capture: want_stdout && i.zero?)
        unless status.success?
          failure = "#{status.exitstatus ? "exit #{status.exitstatus}" : "signal #{status.termsig}"}: #{first_error(err)}"
          break
        end
        want_stdout&.call(out) if i.zero?
        walls << wall
        rsses << rss
      end
      return Result.new(name: name, note: "failed (#{failure})") if failure

      Result.new(name: name, wall: median(walls), rss_kb: median(rsses.compact), approx_rss: approx)
    end

    def run_one(cmd, capture:)
      out_r, out_w = capture ? IO.pipe : [nil, File::NULL]
      err_file = Tempfile.new("bench-err")
      if have_time?
        tf = Tempfile.new("bench-time")
        t = now
        pid = Process.spawn(TIME, "-f", "%e %M", "-o", tf.path, *cmd, out: out_w, err: err_file.path)
        out_w.close if capture
        out = capture ? out_r.read : nil
        _, status = Process.wait2(pid)
        wall_fallback = now - t
        fields = File.read(tf.path).lines.last.to_s.split
        wall = Float(fields[0], exception: false) || wall_fallback
        # %e has 10 ms resolution; prefer our clock for very short commands
        wall = wall_fallback if wall < 0.1
        [wall, Integer(fields[1], exception: false), status, out, File.read(err_file.path), false]
      else
        t = now
        pid = Process.spawn(*cmd, out: out_w, err: err_file.path)
        out_w.close if capture
        reader = capture ? Thread.new { out_r.read } : nil
        hwm = 0
        loop do
          hwm = [hwm, vm_hwm_kb(pid)].max
          break if Process.waitpid(pid, Process::WNOHANG)

          sleep 0.01
        end
        status = $?
        [now - t, hwm, status, reader&.value, File.read(err_file.path), true]
      end
    ensure
      out_r&.close
      err_file&.close!
      tf&.close!
    end

    def first_error(err)
      lines = err.to_s.lines.map(&:strip).reject(&:empty?)
      (lines.find { |l| l.match?(/\[BUG\]|Error|error|rror:/) } || lines.first || "no stderr")[0, 200]
    end

    def vm_hwm_kb(pid)
      File.read("/proc/#{pid}/status")[/^VmHWM:\s+(\d+)/, 1].to_i
    rescue SystemCallError
      0
    end

    def median(xs)
      return nil if xs.empty?

      s = xs.sort
      s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
    end

    # -- report --------------------------------------------------------------

    def report(results, wc)
      by = results.to_h { |r| [r.name, r] }
      hd = by["heapdiff"]&.wall
      cat = by["cat"]&.wall
      mb = ->(b) { b / 1e6 }

      puts
      puts format("dumps: %s  total %.1f MB (%s)", @files.map { |f| File.basename(f) }.join(" "),
                  mb.call(@total), @files.map { |f| format("%.1f", mb.call(File.size(f))) }.join(" + "))
      if wc
        counts = wc.lines.map { |l| l.split.first }.first(3)
        puts "lines: #{counts.join(" + ")}"
      end
      puts "runs per command: #{@opts[:runs]} (median)"
      puts
      puts format("%-10s %10s %13s %12s %10s", "tool", "wall s", "peak RSS MB", "vs heapdiff", "vs cat")
      results.each do |r|
        if r.note
          puts format("%-10s %s", r.name, r.note)
          next
        end
        rss = r.rss_kb ? format("%s%.1f", r.approx_rss ? "~" : "", r.rss_kb * 1024 / 1e6) : "n/a"
        puts format("%-10s %10.2f %13s %12s %10s", r.name, r.wall, rss,
                    hd ? format("%.1fx", r.wall / hd) : "n/a",
                    cat ? format("%.1fx", r.wall / cat) : "n/a")
      end
      puts
      targets(by)
    end

    def targets(by)
      hd = by["heapdiff"]
      heapy = by["heapy"]
      if hd&.wall && heapy&.wall
        speedup = heapy.wall / hd.wall
        puts format("%-4s heapdiff %.1fx faster than heapy (target >= %.0fx)",
                    speedup >= SPEEDUP_TARGET ? "PASS" : "MISS", speedup, SPEEDUP_TARGET)
      else
        puts "MISS heapdiff vs heapy speed: not measured (#{hd&.note || heapy&.note || "heapy not found"})"
      end
      if hd&.rss_kb
        rss = hd.rss_kb * 1024.0
        limit = @total * RSS_FRACTION_TARGET
        puts format("%-4s heapdiff peak RSS %.1f MB (target < %.1f MB = half of %.1f MB of dumps)",
                    rss < limit ? "PASS" : "MISS", rss / 1e6, limit / 1e6, @total / 1e6)
      else
        puts "MISS heapdiff peak RSS: not measured (#{hd&.note || "n/a"})"
      end
    end
  end
end

exit HeapdiffBench::DiffBench.new(ARGV).run if $PROGRAM_NAME == __FILE__
