# frozen_string_literal: true

# The benchmark suite (`rake bench`): heapdiff against heapy, with `cat` and `wc -l`
# as the floor, on seeded dumps of about 1M and 5M objects. `bin/setup --bench`
# installs what it needs (Rails' libraries from Debian, GNU time); the dumps take
# about 7 GB in bench/out/, and heapy several minutes on the larger ones.
#
#   ruby bench/suite.rb [--sizes 1000000,5000000] [--seed 42] [--runs 1]
#                       [--no-heapy] [--results bench/RESULTS.md]
#
# For each size, bench/generate.rb writes three dumps of a real traced process (Rails'
# libraries from Debian's gems, then strings, arrays, hashes, objects, structs…) into
# bench/out/SIZE/, once. Then each command runs in a child process, timed with
# /usr/bin/time (peak RSS) and our clock (wall time), the page cache warmed before each
# run:
#
#   cat         cat 0.json 1.json 2.json
#   wc -l       wc -l 0.json 1.json 2.json
#   heapy       heapy diff 0.json 1.json 2.json
#   diff        Heapdiff.diff(0, 1, 2) and print the top group: the whole user story
#   load        Heapdiff.load(2.json), all cores; and again with HEAPDIFF_THREADS=1
#   retention   on 2.json: the first path query from the roots, and the dominator tree
#   phases      the three-dump diff in process, and the share of it that deciding
#               reachability in the last dump takes
#
# Prints a table per size and the targets of issue 6, and writes both, with a
# description of the machine, to --results. A benchmark, not a test: exits 0.

require "etc"
require "json"
require "optparse"
require "rbconfig"
require "tempfile"

module HeapdiffBench
  class Suite
    ROOT = File.expand_path("..", __dir__)
    TIME = "/usr/bin/time"

    # Issue 6's targets for this machine.
    HEAPY_SPEEDUP = 30.0
    CAT_RATIO = 4.0
    LOAD_MB_S_PER_CORE = 400.0
    RSS_FRACTION = 0.3
    LINEAR_RATIO = 5.5

    # Runs in the child for "load" and "retention": prints one JSON line of timings
    # measured inside the process (no Ruby start-up, no require).
    LOAD_SCRIPT = <<~RUBY
      require "heapdiff"
      t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      heap = Heapdiff.load(ARGV[0])
      puts JSON.generate(load: Process.clock_gettime(Process::CLOCK_MONOTONIC) - t, objects: heap.size)
    RUBY
    RETENTION_SCRIPT = <<~RUBY
      require "heapdiff"
      clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      heap = Heapdiff.load(ARGV[0])
      # The first query builds the breadth-first tree from the roots, whatever the target.
      target = heap.object(Random.new(42).rand(heap.size))
      t = clock.call
      path = heap.path_to_root(target)
      path_s = clock.call - t
      t = clock.call
      retained = heap.retained_size(target)
      puts JSON.generate(path: path_s, path_length: path&.size, dominators: clock.call - t, retained: retained)
    RUBY
    DIFF_SCRIPT = 'require "heapdiff"; puts Heapdiff.diff(*ARGV).groups.first'
    # The cost of "retained means reachable": the three-dump diff in this process
    # (loads, then the diff, which walks the last dump from its roots), and that walk
    # alone on a fresh load of the last dump (the breadth-first tree from the roots,
    # object → class edges included, is what decides reachability; the first path
    # query builds the same tree).
    REACH_SCRIPT = <<~RUBY
      require "heapdiff"
      clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      t = clock.call
      heaps = ARGV.map { |path| Heapdiff.load(path) }
      loads = clock.call - t
      t = clock.call
      report = Heapdiff.diff(*heaps)
      diff = clock.call - t
      count = report.total_count
      report.close
      heaps.each(&:close)
      last = Heapdiff.load(ARGV.last)
      t = clock.call
      last.path_to_root(last.object(0))
      reach = clock.call - t
      puts JSON.generate(loads: loads, diff: diff, reach: reach, retained: count)
    RUBY
    # "Retained means reachable" may cost at most this share of the three-dump diff.
    REACH_SHARE = 0.15

    Result = Struct.new(:name, :wall, :rss_kb, :disk_mb, :inner, :note, keyword_init: true)

    def initialize(argv)
      @opts = { sizes: [1_000_000, 5_000_000], seed: 42, runs: 1, heapy: true,
                results: File.join(ROOT, "bench", "RESULTS.md") }
      OptionParser.new do |o|
        o.banner = "usage: ruby bench/suite.rb [options]"
        o.on("--sizes N,N", Array, "objects per dump (default 1000000,5000000)") do |v|
          @opts[:sizes] = v.map { |s| Integer(s.delete("_")) }
        end
        o.on("--seed S", Integer, "generator seed (default 42)") { |v| @opts[:seed] = v }
        o.on("--runs N", Integer, "runs per command, the median is shown (default 1)") { |v| @opts[:runs] = [v, 1].max }
        o.on("--no-heapy", "skip heapy (minutes on 5M objects)") { @opts[:heapy] = false }
        o.on("--results PATH", "where to write the report (default bench/RESULTS.md)") { |v| @opts[:results] = v }
      end.parse!(argv)
    end

    def run
      abort "#{TIME} is missing: run bin/setup --bench" unless File.executable?(TIME)
      abort "heapdiff is not built: run rake compile" unless heapdiff_built?

      started = Time.now
      load_before = File.read("/proc/loadavg").split.first(3).join(" ")
      sections = @opts[:sizes].map { |objects| bench_size(objects) }
      report = [machine(started, load_before), *sections.map { |s| s[:text] }, targets(sections)].join("\n")
      puts report
      File.write(@opts[:results], "# Benchmark results\n\n#{report}")
      puts "\nwritten to #{@opts[:results]}"
      0
    end

    private

    def bench_size(objects)
      dir = File.join(ROOT, "bench", "out", objects.to_s)
      system(RbConfig.ruby, File.join(ROOT, "bench", "generate.rb"), dir, "--objects", objects.to_s,
             "--seed", @opts[:seed].to_s, exception: true)
      params = JSON.parse(File.read(File.join(dir, "params.json")))
      files = Array.new(3) { |i| File.join(dir, "#{i}.json") }
      total = files.sum { |f| File.size(f) }
      @warm = files

      results = {}
      results[:cat] = measure("cat", ["cat", *files])
      results[:wc] = measure("wc -l", ["wc", "-l", *files])
      # heapy runs once: minutes on the larger dumps, and the ratio it gives is not close.
      results[:heapy] = measure("heapy diff", [heapy, "diff", *files], runs: 1) if @opts[:heapy] && heapy
      results[:diff] = measure("heapdiff diff", ruby_cmd(DIFF_SCRIPT, *files))
      results[:load] = measure("heapdiff load", ruby_cmd(LOAD_SCRIPT, files[2]), json: true)
      results[:load1] = measure("heapdiff load, 1 thread", ruby_cmd(LOAD_SCRIPT, files[2]), json: true,
                                                                                            env: { "HEAPDIFF_THREADS" => "1" })
      results[:retention] = measure("heapdiff path + dominators", ruby_cmd(RETENTION_SCRIPT, files[2]), json: true)
      results[:reach] = measure("heapdiff diff phases", ruby_cmd(REACH_SCRIPT, *files), json: true)
      { objects: objects, params: params, files: files, total: total, results: results,
        text: section_text(objects, params, files, total, results) }
    end

    def section_text(objects, params, files, total, r)
      mb = ->(bytes) { bytes / 1e6 }
      dump2 = File.size(files[2])
      lines = ["## #{objects.to_s.reverse.scan(/\d{1,3}/).join(",").reverse} objects per dump", "",
               format("Dumps: %s MB (%.1f MB in all), %s lines.",
                      files.map { |f| format("%.1f", mb.call(File.size(f))) }.join(" + "), mb.call(total),
                      params["lines"].join(" + ")),
               "",
               "| command | wall s | peak RSS MB | ÷ cat | heapy ÷ it | RSS ÷ dumps | read from disk MB |",
               "|---|---:|---:|---:|---:|---:|---:|"]
      cat = r[:cat]&.wall
      heapy = r[:heapy]&.wall
      r.each_value do |res|
        if res.note
          lines << "| #{res.name} | #{res.note} | | | | | |"
          next
        end
        lines << format("| %s | %.2f | %.0f | %s | %s | %.2f | %.0f |", res.name, res.wall, res.rss_kb / 1e3,
                        cat ? format("%.1f×", res.wall / cat) : "n/a",
                        heapy ? format("%.1f×", heapy / res.wall) : "n/a", res.rss_kb * 1e3 / total, res.disk_mb)
      end
      lines << ""
      if (load = r[:load]&.inner) && (load1 = r[:load1]&.inner)
        lines << format("In-process load of 2.json (%.1f MB, %d objects): %.2f s on %d cores = %.0f MB/s, " \
                        "%.0f MB/s per core; %.2f s on 1 thread = %.0f MB/s.",
                        mb.call(dump2), load["objects"], load["load"], cores, mb.call(dump2) / load["load"],
                        mb.call(dump2) / load["load"] / cores, load1["load"], mb.call(dump2) / load1["load"])
      end
      if (ret = r[:retention]&.inner)
        lines << format("Retention on 2.json: first path query %.1f ms (%s steps), dominator tree and retained " \
                        "sizes %.0f ms.", ret["path"] * 1e3, ret["path_length"] || "no path", ret["dominators"] * 1e3)
      end
      if (reach = r[:reach]&.inner)
        lines << format("Three-dump diff in process: loads %.2f s, diff %.0f ms; of which reachability in the last " \
                        "dump %.0f ms = %.1f%% of loads + diff.", reach["loads"], reach["diff"] * 1e3,
                        reach["reach"] * 1e3, reach_share(reach) * 100)
      end
      lines << ""
      lines.join("\n")
    end

    def reach_share(reach)
      reach["reach"] / (reach["loads"] + reach["diff"])
    end

    def targets(sections)
      lines = ["## Targets", ""]
      sections.each do |s|
        r = s[:results]
        diff = r[:diff]
        next unless diff&.wall

        label = "#{s[:objects]} objects"
        if (heapy = r[:heapy]&.wall)
          lines << check(heapy / diff.wall >= HEAPY_SPEEDUP,
                         format("%s: diff %.1f× faster than heapy (target ≥ %.0f×)", label, heapy / diff.wall, HEAPY_SPEEDUP))
        end
        lines << check(diff.wall / r[:cat].wall <= CAT_RATIO,
                       format("%s: diff takes %.1f× `cat` of the three files (target ≤ %.0f×)", label,
                              diff.wall / r[:cat].wall, CAT_RATIO))
        if (load = r[:load]&.inner)
          per_core = File.size(s[:files][2]) / 1e6 / load["load"] / cores
          lines << check(per_core >= LOAD_MB_S_PER_CORE,
                         format("%s: load %.0f MB/s per core (target ≥ %.0f)", label, per_core, LOAD_MB_S_PER_CORE))
        end
        if (reach = r[:reach]&.inner)
          lines << check(reach_share(reach) <= REACH_SHARE,
                         format("%s: reachability %.1f%% of the three-dump diff (target ≤ %.0f%%)", label,
                                reach_share(reach) * 100, REACH_SHARE * 100))
        end
        fraction = diff.rss_kb * 1e3 / s[:total]
        lines << check(fraction <= RSS_FRACTION,
                       format("%s: diff peak RSS %.2f× the dumps' size (target ≤ %.1f×)", label, fraction, RSS_FRACTION))
      end
      small, large = sections.minmax_by { |s| s[:objects] }
      if sections.size > 1 && small[:results][:diff]&.wall && large[:results][:diff]&.wall
        ratio = large[:results][:diff].wall / small[:results][:diff].wall
        scale = large[:objects].to_f / small[:objects]
        lines << check(ratio <= LINEAR_RATIO * scale / 5,
                       format("diff of %d vs %d objects: %.2f× the time (target ≤ %.1f×: linear)", large[:objects],
                              small[:objects], ratio, LINEAR_RATIO * scale / 5))
      end
      lines.join("\n") + "\n"
    end

    def check(pass, text)
      "- #{pass ? "PASS" : "MISS"} #{text}"
    end

    def machine(started, load_before)
      cpu = File.read("/proc/cpuinfo")[/^model name\s*:\s*(.+)$/, 1]
      mem = File.read("/proc/meminfo")[/^MemTotal:\s+(\d+)/, 1].to_i / 1e6
      commit = `git -C #{ROOT} rev-parse --short HEAD 2>/dev/null`.strip
      heapy_version = heapy && `dpkg-query -W -f '${Version}' ruby-heapy 2>/dev/null`.strip
      ["## Machine", "",
       "- #{started.utc.strftime("%Y-%m-%d %H:%M UTC")}, heapdiff #{commit.empty? ? "(no git)" : commit}, " \
       "#{RUBY_DESCRIPTION}",
       "- #{cpu}, #{cores} cores, #{format("%.1f", mem)} GB memory, #{`uname -sr`.strip}",
       "- load average before the run: #{load_before}",
       "- heapy: #{heapy || "not found"}#{" (Debian ruby-heapy #{heapy_version})" unless heapy_version.to_s.empty?}",
       "- #{@opts[:runs]} run(s) per command (heapy: one), median shown; peak RSS by #{TIME}; " \
       "page cache warm", ""].join("\n")
    end

    def cores
      Etc.nprocessors
    end

    def heapy
      return @heapy if defined?(@heapy)

      @heapy = ["/usr/bin/heapy", *ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "heapy") }]
               .find { |p| File.executable?(p) }
    end

    def heapdiff_built?
      system(*ruby_cmd('require "heapdiff"'), out: File::NULL, err: File::NULL)
    end

    def ruby_cmd(script, *args)
      [RbConfig.ruby, "-I", File.join(ROOT, "lib"), "-rjson", "-e", script, *args]
    end

    # The median of --runs runs of +cmd+: wall time and peak RSS from /usr/bin/time,
    # and with json: true, the JSON line the command printed.
    def measure(name, cmd, json: false, env: {}, runs: @opts[:runs])
      print "  #{name}… "
      runs = Array.new(runs) { run_once(cmd, env, capture: json) }
      if (failed = runs.find { |r| r[:error] })
        puts "failed"
        return Result.new(name: name, note: "failed: #{failed[:error]}")
      end

      runs.sort_by! { |r| r[:wall] }
      mid = runs[runs.size / 2]
      puts format("%.2f s", mid[:wall])
      Result.new(name: name, wall: mid[:wall], rss_kb: runs.map { |r| r[:rss_kb] }.sort[runs.size / 2],
                 disk_mb: mid[:disk_mb], inner: json ? JSON.parse(mid[:out].lines.last) : nil)
    end

    # Output goes to /dev/null unless +capture+: `cat` into a pipe would time the pipe.
    def run_once(cmd, env, capture:)
      # Warm the page cache before every run: this machine pages out what it has not
      # touched for a few seconds (DAMON), and a cold `cat` measures the disk, not the
      # floor. The "read from disk" column shows when that still happened.
      2.times { system("cat", *@warm, out: File::NULL) }
      timing = Tempfile.new("bench-time")
      err = Tempfile.new("bench-err")
      out_r, out_w = capture ? IO.pipe : [nil, File::NULL]
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      pid = Process.spawn(env, TIME, "-f", "%M %I", "-o", timing.path, *cmd, out: out_w, err: err.path)
      out_w.close if capture
      out = capture ? out_r.read : ""
      _, status = Process.wait2(pid)
      # Our clock, not time's %e: that one has 10 ms steps, too coarse for `cat`.
      wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      return { error: "#{status}: #{File.read(err.path).lines.last(3).join.strip[0, 300]}" } unless status.success?

      rss_kb, inputs = File.read(timing.path).lines.last.split.map { |v| Integer(v) }
      # %I counts 512-byte blocks read from storage: not 0 means the cache was cold.
      { wall: wall, rss_kb: rss_kb, disk_mb: inputs * 512 / 1e6, out: out }
    ensure
      out_r&.close
      timing&.close!
      err&.close!
    end
  end
end

exit HeapdiffBench::Suite.new(ARGV).run if $PROGRAM_NAME == __FILE__
