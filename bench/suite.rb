# frozen_string_literal: true

# The benchmark suite (`rake bench`): heapdiff against heapy, with `cat` as the floor,
# on seeded three-dump sets of about 150 MB, 440 MB, 1.1 GB and 5.3 GB (100k, 400k, 1M
# and 5M objects a dump; bench/generate.rb's Rails libraries alone make 48 MB a dump,
# so no set is smaller than ~146 MB). `bin/setup --bench` installs what it needs (Rails'
# libraries from Debian, GNU time); heapy takes minutes on the largest set.
#
#   ruby bench/suite.rb [--sizes 100000,400000,1000000,5000000] [--seed 42] [--runs 3]
#                       [--heapy-runs 1] [--no-heapy] [--dumps DIR]
#                       [--results bench/RESULTS.md]
#
# For each size, bench/generate.rb writes three dumps of a real traced process (Rails'
# libraries from Debian's gems, then strings, arrays, hashes, objects, structs…) into
# DIR/SIZE/ (default bench/out/SIZE/), once. Then each command runs in a child process,
# timed with /usr/bin/time (peak RSS) and our clock (wall time), the page cache warmed
# before each run. Runs alternate (A B C… A B C…), so that what else the machine does
# falls on every command alike; each row shows the median and the min–max.
#
#   cat             cat 0.json 1.json 2.json
#   heapy diff      heapy diff 0.json 1.json 2.json (--heapy-runs times: minutes)
#   heapdiff diff   exe/heapdiff diff 0.json 1.json 2.json: the CLI as a user runs it,
#                   the whole process (start-up, requires, loads, diff, output)
#   in process      Heapdiff.diff(0, 1, 2) and its text, timed inside the process
#   idle            ruby -rheapdiff: the RSS a process has before it loads anything
#   retention       on 2.json: its load, the first path query from the roots, and the
#                   dominator tree
#
# Prints a table per size and issue 20's targets, and writes both, with a description
# of the machine, to --results. A benchmark, not a test: exits 0.

require "etc"
require "json"
require "optparse"
require "rbconfig"
require "tempfile"

module HeapdiffBench
  class Suite
    ROOT = File.expand_path("..", __dir__)
    TIME = "/usr/bin/time"
    # What bench/generate.rb loads to make its dumps a Rails app's: without these the
    # dumps (and so the figures) would not be the ones RESULTS.md describes.
    LIBRARIES = %w[rails action_controller/railtie action_view active_job action_mailer active_record sidekiq].freeze
    SIZES = [100_000, 400_000, 1_000_000, 5_000_000].freeze

    # Issue 20's targets.
    HEAPY_SPEEDUP = 30.0
    CAT_RATIO = 4.0
    RSS_FRACTION = 0.3
    FIRST_PATH_MS = 20.0
    DOMINATORS_SHARE = 0.5
    # Time of the 5M-object set ÷ the 1M-object one.
    LINEAR_RATIO = 5.2
    # "Retained means reachable" may cost at most this share of the three-dump diff.
    REACH_SHARE = 0.15

    # The CLI as installed: exe/heapdiff, with this checkout's lib.
    CLI = [RbConfig.ruby, "-I", File.join(ROOT, "lib"), File.join(ROOT, "exe", "heapdiff"), "diff"].freeze
    # Heapdiff.diff and the report's text, timed inside the process (no start-up, no
    # require): one JSON line.
    IN_PROCESS_SCRIPT = <<~RUBY
      require "heapdiff"
      clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      t = clock.call
      report = Heapdiff.diff(*ARGV)
      diff = clock.call - t
      t = clock.call
      text = report.to_s
      puts JSON.generate(diff: diff, text: clock.call - t, bytes: text.bytesize)
    RUBY
    # On the last dump: its load, the first path query (which builds the breadth-first
    # tree from the roots, object → class edges included: what decides reachability in
    # a diff), and the dominator tree with retained sizes.
    RETENTION_SCRIPT = <<~RUBY
      require "heapdiff"
      clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      t = clock.call
      heap = Heapdiff.load(ARGV[0])
      load = clock.call - t
      target = heap.object(Random.new(42).rand(heap.size))
      t = clock.call
      path = heap.path_to_root(target)
      path_s = clock.call - t
      t = clock.call
      retained = heap.retained_size(target)
      puts JSON.generate(load: load, objects: heap.size, path: path_s, path_length: path&.size,
                         dominators: clock.call - t, retained: retained)
    RUBY
    IDLE_SCRIPT = 'require "heapdiff"'

    # One command's runs: wall times (s), peak RSS (kB), blocks read (MB) and, for the
    # scripts, the JSON line each printed.
    Result = Struct.new(:name, :walls, :rss_kbs, :disk_mbs, :inners, :note, keyword_init: true) do
      def wall = median(walls)
      def rss_kb = median(rss_kbs)
      def disk_mb = disk_mbs.max
      def inner(key) = median(inners.map { |i| i[key] })
      def range = walls.size > 1 ? format("%.2f–%.2f", walls.min, walls.max) : ""

      # The median of the runs' figures (the lower middle one of an even count).
      def median(values)
        values.sort[(values.size - 1) / 2]
      end
    end

    def initialize(argv)
      @opts = { sizes: SIZES, seed: 42, runs: 3, heapy_runs: 1, heapy: true,
                dumps: File.join(ROOT, "bench", "out"), results: File.join(ROOT, "bench", "RESULTS.md") }
      OptionParser.new do |o|
        o.banner = "usage: ruby bench/suite.rb [options]"
        o.on("--sizes N,N", Array, "objects per dump (default #{SIZES.join(",")})") do |v|
          @opts[:sizes] = v.map { |s| Integer(s.delete("_")) }
        end
        o.on("--seed S", Integer, "generator seed (default 42)") { |v| @opts[:seed] = v }
        o.on("--runs N", Integer, "runs per command, alternating; median and range shown (default 3)") do |v|
          @opts[:runs] = [v, 1].max
        end
        o.on("--heapy-runs N", Integer, "runs of heapy (default 1: minutes on 5M objects)") do |v|
          @opts[:heapy_runs] = [v, 1].max
        end
        o.on("--no-heapy", "skip heapy") { @opts[:heapy] = false }
        o.on("--dumps DIR", "where the dumps are made and kept (default bench/out)") { |v| @opts[:dumps] = v }
        o.on("--results PATH", "where to write the report (default bench/RESULTS.md)") { |v| @opts[:results] = v }
      end.parse!(argv)
    end

    # Skips (exit 0, saying why) when bin/setup --bench has not installed what the
    # suite needs: a benchmark that cannot run is not a failure of the code.
    def run
      missing = [(TIME unless File.executable?(TIME)), *missing_libraries].compact
      unless missing.empty?
        puts "rake bench: skipped: #{missing.join(", ")} not installed; run bin/setup --bench"
        return 0
      end
      abort "heapdiff is not built: run rake compile" unless heapdiff_built?

      started = Time.now
      load_before = loadavg
      sections = @opts[:sizes].map { |objects| bench_size(objects) }
      report = [machine(started, load_before), *sections.map { |s| s[:text] }, targets(sections)].join("\n")
      puts report
      File.write(@opts[:results], "# Benchmark results\n\n#{report}")
      puts "\nwritten to #{@opts[:results]}"
      0
    end

    private

    def bench_size(objects)
      dir = File.join(@opts[:dumps], objects.to_s)
      system(RbConfig.ruby, File.join(ROOT, "bench", "generate.rb"), dir, "--objects", objects.to_s,
             "--seed", @opts[:seed].to_s, exception: true)
      params = JSON.parse(File.read(File.join(dir, "params.json")))
      files = Array.new(3) { |i| File.join(dir, "#{i}.json") }
      total = files.sum { |f| File.size(f) }
      @warm = files
      puts "#{objects} objects (#{format("%.0f", total / 1e6)} MB), load average #{loadavg}"

      commands = {
        cat: ["cat", ["cat", *files], {}],
        heapy: (["heapy diff", [heapy, "diff", *files], { runs: @opts[:heapy_runs] }] if @opts[:heapy] && heapy),
        cli: ["heapdiff diff (CLI)", [*CLI, *files], {}],
        in_process: ["Heapdiff.diff in process", ruby_cmd(IN_PROCESS_SCRIPT, *files), { json: true }],
        idle: ["idle ruby -rheapdiff", ruby_cmd(IDLE_SCRIPT), {}],
        retention: ["load + path + dominators of 2.json", ruby_cmd(RETENTION_SCRIPT, files[2]), { json: true }]
      }.compact
      results = measure_alternating(commands)
      load_after = loadavg
      { objects: objects, params: params, files: files, total: total, results: results,
        text: section_text(objects, params, files, total, results, load_after) }
    end

    # Runs every command once, in turn, --runs times (a command with fewer runs, heapy,
    # drops out once it has them).
    def measure_alternating(commands)
      runs = Hash.new { |h, k| h[k] = [] }
      @opts[:runs].times do |round|
        commands.each do |key, (name, cmd, opts)|
          next if round >= opts.fetch(:runs, @opts[:runs]) || runs[key].any? { |r| r[:error] }

          print "  #{name}… "
          run = run_once(cmd, {}, capture: opts[:json])
          puts run[:error] ? "failed" : format("%.2f s", run[:wall])
          runs[key] << run
        end
      end
      commands.to_h do |key, (name, _cmd, opts)|
        done = runs[key]
        if (failed = done.find { |r| r[:error] })
          next [key, Result.new(name: name, note: "failed: #{failed[:error]}")]
        end

        [key, Result.new(name: name, walls: done.map { |r| r[:wall] }, rss_kbs: done.map { |r| r[:rss_kb] },
                         disk_mbs: done.map { |r| r[:disk_mb] },
                         inners: opts[:json] ? done.map { |r| JSON.parse(r[:out].lines.last) } : nil)]
      end
    end

    def section_text(objects, params, files, total, r, load_after)
      mb = ->(bytes) { bytes / 1e6 }
      lines = ["## #{objects.to_s.reverse.scan(/\d{1,3}/).join(",").reverse} objects per dump " \
               "(#{format("%.0f", mb.call(total))} MB of dumps)", "",
               format("Dumps: %s MB (%.1f MB in all), %s lines. Load average after: %s.",
                      files.map { |f| format("%.1f", mb.call(File.size(f))) }.join(" + "), mb.call(total),
                      params["lines"].join(" + "), load_after),
               "",
               "| command | wall s (median) | min–max s | peak RSS MB | ÷ cat | heapy ÷ it | RSS ÷ dumps | " \
               "read from disk MB |",
               "|---|---:|---:|---:|---:|---:|---:|---:|"]
      cat = r[:cat]&.wall
      heapy = r[:heapy]&.wall
      r.each_value do |res|
        if res.note
          lines << "| #{res.name} | #{res.note} | | | | | | |"
          next
        end
        lines << format("| %s | %.2f | %s | %.0f | %s | %s | %.2f | %.0f |", res.name, res.wall, res.range,
                        res.rss_kb / 1e3, cat ? format("%.1f×", res.wall / cat) : "n/a",
                        heapy ? format("%.1f×", heapy / res.wall) : "n/a", res.rss_kb * 1e3 / total, res.disk_mb)
      end
      lines << ""
      if (inp = r[:in_process]) && !inp.note
        lines << format("In process: Heapdiff.diff %.3f s (%s), its text %.0f ms; %.1f× `cat`.",
                        inp.inner("diff"), range_of(inp, "diff"), inp.inner("text") * 1e3, inp.inner("diff") / cat)
      end
      if (ret = r[:retention]) && !ret.note
        lines << format("On 2.json (%d objects): load %.2f s, first path query %.1f ms (%s steps), dominator " \
                        "tree and retained sizes %.0f ms = %.2f× the load.", ret.inner("objects"), ret.inner("load"),
                        ret.inner("path") * 1e3, ret.inners.first["path_length"] || "no path",
                        ret.inner("dominators") * 1e3, ret.inner("dominators") / ret.inner("load"))
      end
      lines << ""
      lines.join("\n")
    end

    def range_of(result, key)
      values = result.inners.map { |i| i[key] }
      values.size > 1 ? format("%.3f–%.3f", values.min, values.max) : "one run"
    end

    # The CLI's peak RSS less an idle `ruby -rheapdiff`'s, over the dumps' bytes.
    def rss_fraction(section)
      r = section[:results]
      (r[:cli].rss_kb - r[:idle].rss_kb) * 1e3 / section[:total]
    end

    def reach_share(section)
      r = section[:results]
      r[:retention].inner("path") / r[:in_process].inner("diff")
    end

    def targets(sections)
      lines = ["## Targets (issue 20)", ""]
      sections.each do |s|
        r = s[:results]
        cli = r[:cli]
        next if cli.nil? || cli.note

        label = "#{s[:objects]} objects (#{format("%.0f", s[:total] / 1e6)} MB)"
        if (heapy = r[:heapy]&.wall)
          lines << check(heapy / cli.wall >= HEAPY_SPEEDUP,
                         format("%s: CLI %.1f× faster than heapy (target ≥ %.0f×)", label, heapy / cli.wall,
                                HEAPY_SPEEDUP))
        end
        if (inp = r[:in_process]) && !inp.note
          lines << check(inp.inner("diff") / r[:cat].wall <= CAT_RATIO,
                         format("%s: in-process diff %.1f× `cat` of the three files (target ≤ %.0f×)", label,
                                inp.inner("diff") / r[:cat].wall, CAT_RATIO))
        end
        if (idle = r[:idle]) && !idle.note
          lines << check(rss_fraction(s) <= RSS_FRACTION,
                         format("%s: CLI peak RSS above an idle ruby -rheapdiff %.2f× the dumps (target ≤ %.1f×)",
                                label, rss_fraction(s), RSS_FRACTION))
        end
        next unless (ret = r[:retention]) && !ret.note

        if s[:objects] >= 1_000_000
          lines << check(ret.inner("path") * 1e3 < FIRST_PATH_MS,
                         format("%s: first path_to_root %.1f ms after the load (target < %.0f ms)", label,
                                ret.inner("path") * 1e3, FIRST_PATH_MS))
          lines << check(ret.inner("dominators") / ret.inner("load") < DOMINATORS_SHARE,
                         format("%s: dominator tree %.2f× the load (target < %.1f×)", label,
                                ret.inner("dominators") / ret.inner("load"), DOMINATORS_SHARE))
        end
        next unless (inp = r[:in_process]) && !inp.note

        lines << check(reach_share(s) <= REACH_SHARE,
                       format("%s: reachability %.1f%% of the in-process diff (target ≤ %.0f%%)", label,
                              reach_share(s) * 100, REACH_SHARE * 100))
      end
      small = sections.find { |s| s[:objects] == 1_000_000 }
      large = sections.find { |s| s[:objects] == 5_000_000 }
      if small && large && !small[:results][:cli].note && !large[:results][:cli].note
        ratio = large[:results][:cli].wall / small[:results][:cli].wall
        lines << check(ratio <= LINEAR_RATIO,
                       format("CLI diff of 5M vs 1M objects: %.2f× the time (target ≤ %.1f×)", ratio, LINEAR_RATIO))
      end
      lines.join("\n") + "\n"
    end

    def check(pass, text)
      "- #{pass ? "PASS" : "MISS"} #{text}"
    end

    def loadavg
      File.read("/proc/loadavg").split.first(3).join(" ")
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
       "- load average before the run: #{load_before} (after each size: in its section)",
       "- heapy: #{heapy || "not found"}#{" (Debian ruby-heapy #{heapy_version})" unless heapy_version.to_s.empty?}",
       "- #{@opts[:runs]} run(s) per command, alternating (heapy: #{@opts[:heapy_runs]}), median and min–max " \
       "shown; peak RSS by #{TIME}; page cache warm", ""].join("\n")
    end

    def cores
      Etc.nprocessors
    end

    def heapy
      return @heapy if defined?(@heapy)

      @heapy = ["/usr/bin/heapy", *ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "heapy") }]
               .find { |p| File.executable?(p) }
    end

    def missing_libraries
      LIBRARIES.reject do |lib|
        system(RbConfig.ruby, "-e", "require #{lib.dump}", out: File::NULL, err: File::NULL)
      end
    end

    def heapdiff_built?
      system(*ruby_cmd('require "heapdiff"'), out: File::NULL, err: File::NULL)
    end

    def ruby_cmd(script, *args)
      [RbConfig.ruby, "-I", File.join(ROOT, "lib"), "-rjson", "-e", script, *args]
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
