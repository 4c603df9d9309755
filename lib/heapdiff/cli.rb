# frozen_string_literal: true

require "json"
require "optparse"
require "shellwords"
require_relative "../heapdiff"
require_relative "analysis/gem_attribution"
require_relative "analysis/summary"

module Heapdiff
  # The heapdiff command (exe/heapdiff). CLI.new.run(argv) returns the exit status:
  # 0, 1 when --fail-over is exceeded (with --baseline: for a new leak, or new leaks
  # over --fail-over), 2 on a usage error, an unreadable dump or baseline, 130 when
  # interrupted (Ctrl-C). Errors are one line on stderr, never a backtrace.
  class CLI
    COMMANDS = {
      "diff" => ["A B [C]", "What was allocated between A and B (and, given C, is still there in C)."],
      "report" => ["DIR", "The leaks that grow over one process's snapshots in DIR, what next, then the latest three's diff."],
      "trend" => ["DIR | DUMP…", "Every allocation site across all the snapshots: growing, stable or transient."],
      "path" => ["DUMP ADDRESS", "The shortest path from a GC root to the object at ADDRESS."],
      "verify" => ["BEFORE AFTER", "Whether a fix worked: each leak's growth before and after (fixed, reduced, new…)."],
      "compare" => ["DIR…", "Leaks every process in DIR shares, and those only some have (Puma workers…)."],
      "summary" => ["DUMP", "Top types, classes, locations, files and gems; strings held more than once."],
      "redact" => ["IN OUT", "Copy a dump without its string, symbol and float values (OUT.gz: gzip)."]
    }.freeze
    # More of a command's --help, between its line and its options.
    BANNERS = {
      "verify" => "BEFORE and AFTER are Recorder directories (each: its latest process's snapshots), or\n" \
                  "lists of one process's dumps: heapdiff verify B1 B2 B3 -- A1 A2 A3. Leaks are matched by\n" \
                  "signature; rates are per job or request when both recordings count them,\n" \
                  "else per hour, else per snapshot. AFTER's rate as a share of BEFORE's: at most " \
                  "#{(Verification::FIXED * 100).round}% fixed,\n" \
                  "at most #{(Verification::REDUCED * 100).round}% reduced, above " \
                  "#{(Verification::WORSE * 100).round}% worse, else unchanged; new: grows only in AFTER.\n" \
                  "Exit status: 1 when a leak is new or worse (or, with --fixed, not fixed); 2 for a usage error.\n",
      "compare" => "Each process's leaks come from the trend over its own snapshots, found in DIR and\n" \
                   "in its subdirectories (a forked Recorder's pid-PID), matched across processes by signature.\n" \
                   "Exit status: 0; 2 for a usage error (fewer than two processes with two snapshots or more).\n"
    }.freeze
    BY = %w[location file gem class type].freeze
    FORMATS = %w[text json].freeze
    # Addresses of each group's objects in --format json: enough for `heapdiff path`
    # without opening the dump.
    SAMPLE_ADDRESSES = 3
    # Dumps at least this large get a "loading" line on a terminal.
    PROGRESS_BYTES = 1 << 20
    # How many growing sites `report` names above the diff.
    VERDICT_SITES = 3
    # Commands that show rows, and so take --top.
    TOP = %w[diff report trend summary].freeze
    # Commands that show allocation sites, and so take --only and --ignore.
    FILTERED = %w[diff report trend].freeze
    # The shell's status for a process ended by SIGINT.
    INTERRUPTED = 130

    Usage = Class.new(StandardError)
    private_constant :Usage

    # +hint+: whether a usage error ends with "Try 'heapdiff COMMAND --help'." (the
    # Rake tasks say no: their user typed a task, not the command).
    #
    # @param out [IO] where results go
    # @param err [IO] where messages, warnings and progress go
    # @param attribution [GemAttribution] how files map to gems (--by gem)
    # @param hint [Boolean]
    def initialize(out: $stdout, err: $stderr, attribution: GemAttribution.default, hint: true)
      @out = out
      @err = err
      @attribution = attribution
      @hint = hint
    end

    # Runs one command line (exe/heapdiff calls it with ARGV). Every error a user can
    # cause is a one-line message on +err+, never a backtrace.
    #
    # @param argv [Array<String>]
    # @return [Integer] the exit status: 0, 1 when --fail-over is exceeded, 2 for a
    #   usage or input error, 130 when interrupted
    def run(argv)
      # A file name need not be UTF-8; OptionParser matches each option's value with a
      # pattern, which raises ArgumentError for a String with invalid bytes. As bytes,
      # such a name still opens the file it names.
      argv = argv.map { |arg| String === arg && !arg.valid_encoding? ? arg.b : arg }
      command = argv.shift
      return help(@out, 0) if [nil, "-h", "--help", "help"].include?(command)
      return version if %w[-v --version version].include?(command)
      return help(@err, 2, "heapdiff: unknown command #{command.inspect}") unless COMMANDS.key?(command)

      options = { format: "text", top: 10, by: nil, fail_over: nil, class_edges: true, only: [], ignore: [], fixed: [] }
      parser = option_parser(command, options)
      args = command == "verify" ? verify_operands(parser, argv) : parser.parse(argv)
      if options[:help]
        @out.puts parser
        return 0
      end
      # Before any dump is loaded: a baseline that cannot be read is said at once.
      options[:baseline] &&= Baseline.load(options[:baseline])

      public_send("#{command}_command", args, options)
    rescue Usage, OptionParser::ParseError => e
      @err.puts "heapdiff: #{e.message}"
      @err.puts "Try 'heapdiff #{command} --help'." if @hint
      2
    rescue Heapdiff::Interrupted, Interrupt
      @err.puts "heapdiff: interrupted"
      INTERRUPTED
    rescue Heapdiff::Error, SystemCallError => e
      @err.puts e.message.start_with?("heapdiff") ? e.message : "heapdiff: #{e.message}"
      2
    end

    # `heapdiff diff` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def diff_command(args, options)
      raise Usage, "diff needs two or three dumps" unless (2..3).cover?(args.size)

      report = diff_paths(args)
      begin
        # The first dump serves the diff alone (the groups' objects are the second's,
        # their suspects come from the last): freed now, it is no part of the peak
        # that the suspects' graph caches on the last dump make.
        report.before.close
        report_output(report, options)
      ensure
        report.close
      end
    end

    # `heapdiff report` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def report_command(args, options)
      raise Usage, "report needs a directory" unless args.size == 1

      directory(args[0])
      all = process_snapshots(args[0], options[:pid])
      snapshots = all.last(3)
      too_few_snapshots("report", args[0], snapshots.size) if snapshots.size < 2

      # Where the memory grew, from the sidecars alone: before any dump is loaded.
      memory = MemoryVerdict.from_snapshots(all, work: Trend.work_total_of(Trend.work_of(all)))
      options[:memory] = memory
      @out.puts memory unless memory.verdict == :unknown || options[:format] == "json"
      trend = verdict(all, args[0], options)
      begin
        report = diff_paths(snapshots)
        status = begin
          options[:survivors] = survivor_paths(snapshots.last, report.last_heap, options)
          result = report_output(report, options, trend)
          survivors_output(options[:survivors], snapshots.last) unless options[:format] == "json"
          result
        ensure
          report.close
        end
        write_html(trend || all, options[:html]) if options[:html]
        status
      ensure
        trend&.close
      end
    end

    # `heapdiff trend` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def trend_command(args, options)
      raise Usage, "trend needs a directory of snapshots or at least two dumps" if args.empty?

      source = args.size == 1 ? process_snapshots(directory(args[0]), options[:pid]) : args
      too_few_snapshots("trend", args[0], source.size) if args.size == 1 && source.size < 2
      args.each { |path| progress(path) } if args.size > 1
      Heapdiff.trend(source) do |trend|
        shown = { top: options[:top], only: options[:only], ignore: options[:ignore] }
        @out.puts options[:format] == "json" ? pretty(trend.to_h(**shown)) : trend.to_s(**shown)
        write_html(trend, options[:html]) if options[:html]
      end
      0
    end

    # `heapdiff path` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def path_command(args, options)
      raise Usage, "path needs a dump and an address" unless args.size == 2
      raise Usage, "not an address: #{Printable.escape(args[1])} (expected 0x…)" unless args[1].match?(/\A0x\h+\z/)

      load(args[0]) do |heap|
        object = heap.at(args[1])
        raise Usage, "no object at #{args[1]} in #{args[0]}" unless object

        path = heap.path_to_root(object, class_edges: options[:class_edges])
        if options[:format] == "json"
          @out.puts pretty(object: object.to_h, path: path&.to_h)
        else
          @out.puts object.inspect, path ? path.to_s : "no root reaches #{args[1]}"
        end
      end
      0
    end

    # `heapdiff verify` (see COMMANDS), called by #run. +args+: two directories, or
    # two Arrays of dumps (BEFORE's and AFTER's, split at "--").
    #
    # @param args [Array<String, Array<String>>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status: 1 when a leak is new or worse, or one that
    #   --fixed names is not fixed
    def verify_command(args, options)
      raise Usage, "verify needs BEFORE and AFTER: two directories, or 'BEFORE-DUMP… -- AFTER-DUMP…'" \
        unless args.size == 2

      args.each { |arg| arg.each { |path| progress(path) } if arg.is_a?(Array) }
      # A directory stands for its latest process's snapshots, said on stderr when it
      # holds several processes' (as for `report`).
      sources = args.zip(%w[BEFORE AFTER]).map do |arg, name|
        next arg if arg.is_a?(Array)

        if File.file?(arg)
          raise Usage, "#{arg} is a file: verify takes two directories, or lists of dumps split by --: " \
                       "'heapdiff verify BEFORE-DUMP… -- AFTER-DUMP…'"
        end

        snapshots = process_snapshots(directory(arg), nil)
        next snapshots if snapshots.size >= 2

        forked = forked_dirs(arg).first&.then { |child| File.join(arg, child) }
        raise Usage, "#{name}: #{arg} holds #{snapshots.size} snapshot(s) of its latest process; verify needs two or more" \
                     "#{" (a forked process's are in #{forked})" if forked}"
      end
      verification = Heapdiff.verify(*sources)
      failures = verify_failures(verification, options[:fixed])
      # The JSON's "passed" is the exit status's: --fixed counts too, and "failures" says why.
      json = -> { pretty(verification.to_h.merge(passed: failures.empty?, failures: failures)) }
      @out.puts options[:format] == "json" ? json.call : verification.to_s
      failures.each { |failure| @err.puts "heapdiff: #{failure}" }
      failures.empty? ? 0 : 1
    end

    # `heapdiff compare` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def compare_command(args, options)
      raise Usage, "compare needs a directory" if args.empty?

      siblings = Heapdiff.compare(args.map { |arg| directory(arg) }, last: options[:last])
      @out.puts options[:format] == "json" ? pretty(siblings.to_h) : siblings.to_s
      0
    end

    # `heapdiff summary` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def summary_command(args, options)
      raise Usage, "summary needs one dump" unless args.size == 1

      keys = options[:by] ? [options[:by].to_sym] : Summary::KEYS
      load(args[0]) do |heap|
        summary = Summary.new(heap, attribution: @attribution)
        if options[:format] == "json"
          @out.puts pretty(summary.to_h(top: options[:top], keys: keys))
        else
          @out.puts summary.to_s(top: options[:top], keys: keys)
        end
      end
      0
    end

    # `heapdiff redact` (see COMMANDS), called by #run.
    #
    # @param args [Array<String>] the operands
    # @param options [Hash{Symbol => Object}] the parsed options
    # @return [Integer] the exit status
    def redact_command(args, options)
      raise Usage, "redact needs an input and an output dump" unless args.size == 2

      stats = begin
        Heapdiff.redact(args[0], args[1], gzip: options[:gzip])
      rescue ArgumentError => e
        raise Usage, e.message.delete_prefix("heapdiff: ")
      end
      if stats[:stream_cut_short]
        @err.puts "heapdiff: #{args[0]}: the gzip stream ends early (#{stats[:stream_cut_short]}); redacted what it holds"
      end
      @out.puts "#{args[1]}: #{stats[:records]} records, #{stats[:values_removed]} values removed" \
                "#{", #{stats[:rebuilt_records]} broken records rewritten" if stats[:rebuilt_records].positive?}"
      0
    end

    private

    def option_parser(command, options)
      return redact_option_parser(options) if command == "redact"

      OptionParser.new do |o|
        usage, text = COMMANDS.fetch(command)
        o.banner = "Usage: heapdiff #{command} #{usage} [options]\n#{text}\n#{BANNERS[command]}\nOptions:"
        o.on("--format FORMAT", FORMATS, "text (default) or json") { |v| options[:format] = v }
        if TOP.include?(command)
          o.on("--top N", Integer, "How many rows to show (default 10)") do |v|
            raise OptionParser::InvalidArgument, v.to_s unless v.positive?

            options[:top] = v
          end
        end
        o.on("--by KEY", BY, "Group by #{BY.join("|")}") { |v| options[:by] = v } if %w[diff report summary].include?(command)
        unless %w[summary verify compare].include?(command)
          o.on("--no-class-edges", "Paths and holders without the object → class edges dumps leave out") do
            options[:class_edges] = false
          end
        end
        if FILTERED.include?(command)
          o.on("--only PATTERN", "Show only these sites: :type (:string), /regexp/ on the path, " \
                                 "a gem name (app, sidekiq) or part of a path; repeatable") do |v|
            options[:only] << pattern(v)
          end
          o.on("--ignore PATTERN", "Leave out these sites (same patterns); repeatable") do |v|
            options[:ignore] << pattern(v)
          end
        end
        if %w[report trend].include?(command)
          o.on("--pid PID", Integer, "The process whose snapshots to report (default: the one that took the latest)") do |v|
            options[:pid] = v
          end
          o.on("--html FILE", "Also write the trend over every snapshot to FILE (one self-contained page)") do |v|
            options[:html] = v
          end
        end
        if command == "verify"
          o.on("--fixed SIGNATURE", /\A\h{12}\z/, "Exit 1 unless this leak (its signature) is fixed; repeatable") do |v|
            options[:fixed] << v.downcase
          end
        end
        if command == "compare"
          o.on("--last N", Integer, "Each process's latest N snapshots (default: all; at least 2)") do |v|
            raise OptionParser::InvalidArgument, v.to_s unless v >= 2

            options[:last] = v
          end
        end
        if %w[diff report].include?(command)
          o.on("--fail-over N", Integer, "Exit 1 when more than N objects are retained (for CI); " \
                                         "with --baseline, N objects in new leaks") do |v|
            options[:fail_over] = v
          end
          o.on("--baseline FILE", "Known leaks (a --write-baseline file): marked known; exit 1 only for new ones") do |v|
            options[:baseline] = v
          end
          o.on("--write-baseline FILE", "Write the leaks found to FILE, with their titles, for review") do |v|
            options[:write_baseline] = v
          end
        end
        o.on("-h", "--help", "Show this help") { options[:help] = true }
      end
    end

    def redact_option_parser(options)
      OptionParser.new do |o|
        usage, text = COMMANDS.fetch("redact")
        o.banner = "Usage: heapdiff redact #{usage} [options]\n#{text}\n" \
                   "Keeps addresses, types, class names, references, file/line/method, sizes and flags,\n" \
                   "so that OUT diffs and paths the same as IN. OUT is written 0600, complete or not at all.\n\nOptions:"
        o.on("--[no-]gzip", "Compress OUT (default: when OUT ends in .gz)") { |v| options[:gzip] = v }
        o.on("-h", "--help", "Show this help") { options[:help] = true }
      end
    end

    # JSON.pretty_generate, with empty arrays and objects as [] and {} (json before 2.7
    # writes "[\n\n  ]"). JSON strings never hold a raw newline, so only layout changes.
    def pretty(data)
      JSON.pretty_generate(data).gsub(/\[\n\s*\n?\s*\]/, "[]").gsub(/\{\n\s*\n?\s*\}/, "{}")
    end

    # `verify`'s operands: "BEFORE AFTER", or BEFORE's dumps (or directory), "--",
    # AFTER's (each side parsed for options too, so that they may come anywhere).
    def verify_operands(parser, argv)
      cut = argv.index("--")
      return parser.parse(argv) unless cut

      # A side that is one directory is that directory ("DIR -- A1 A2 A3").
      [parser.parse(argv[0...cut]), parser.parse(argv[(cut + 1)..])].map do |side|
        side.size == 1 && File.directory?(side[0]) ? side[0] : side
      end
    end

    # Why `verify` fails CI: a leak that is new or worse, one that --fixed names and is
    # not fixed.
    def verify_failures(verification, fixed)
      failures = (verification.new + verification.worse).map do |row|
        "#{row.status} leak #{row.signature}: #{Printable.escape(row.title)}"
      end
      failures + fixed.filter_map do |signature|
        row = verification[signature]
        if row.nil? then "no leak #{signature} in BEFORE or AFTER (--fixed)"
        elsif row.status != :fixed then "leak #{signature} is #{row.status}, not fixed (--fixed)"
        end
      end
    end

    def version
      @out.puts "heapdiff #{VERSION}"
      0
    end

    def help(io, status, error = nil)
      io.puts error if error
      io.puts "Usage: heapdiff COMMAND [options]", "", "Commands:"
      COMMANDS.each { |name, (usage, text)| io.puts format("  %-28s %s", "#{name} #{usage}", text) }
      io.puts "", "Options: --format text|json, --top N, --by #{BY.join("|")}, --fail-over N,",
              "         --baseline FILE and --write-baseline FILE (diff, report),",
              "         --html FILE and --pid PID (report, trend), --help, --version.",
              "'heapdiff COMMAND --help' for a command's own. Exit status: 0; 1 over --fail-over,",
              "for a leak not in --baseline, or for one that verify finds new or worse (or not",
              "fixed, with --fixed); 2 for a usage error or a file that is not a dump; 130 when",
              "interrupted."
      status
    end

    # Heapdiff.load with the block, after a progress line.
    def load(path, &)
      raise Usage, "#{path} is a directory; this command reads one dump file" if File.directory?(path)

      progress(path)
      Heapdiff.load(path, &)
    end

    # The snapshots in +dir+ of the process with +pid+, or of the latest process. When
    # the directory holds several processes' snapshots, says on stderr which it took.
    def process_snapshots(dir, pid)
      all = Snapshot.list(dir)
      groups = Snapshot.processes(all)
      named = groups.except(nil)
      raise Usage, "no sidecar in #{dir} names a process, so --pid cannot choose" if pid && named.empty?

      chosen = Snapshot.of_process(all, pid || :latest, dir)
      raise Usage, "no snapshot of pid #{pid} in #{dir}; its snapshots are of #{pids_in(named)}" if pid && chosen.empty?

      if named.size > 1 || (pid.nil? && named.size == 1 && groups.key?(nil))
        identity = chosen.first.process
        @err.puts "heapdiff: #{dir} holds snapshots of #{named.size} process#{"es" unless named.size == 1}" \
                  "#{" (and #{groups[nil].size} without a sidecar, left out)" if groups.key?(nil)}; " \
                  "reporting #{identity} (#{chosen.size} snapshot#{"s" unless chosen.size == 1})" \
                  "#{"; --pid to choose: #{pids_in(named)}" unless pid}"
      end
      chosen
    end

    def pids_in(named)
      named.map { |identity, group| "#{identity.pid} (#{group.size})" }.join(", ")
    end

    # The watched objects (Heapdiff.watch) that +snapshot+'s sidecar says survived,
    # each label with the path from a root to one of them in +heap+ (that snapshot's
    # dump), or why there is none: [{label:, count:, watched:, address:, path:,
    # conservative:, why:}], or nil. Of the sampled addresses, one that a precise root
    # reaches is shown before one held only from a machine stack.
    def survivor_paths(snapshot, heap, options)
      survivors = snapshot.meta&.dig("survivors")
      return nil unless survivors.is_a?(Hash) && !survivors.empty?

      survivors.map do |label, s|
        address, path = survivor_path(heap, s["addresses"], options)
        { label: label, count: s["count"], watched: s["watched"], address: address, path: path&.to_s,
          conservative: path&.conservative? || false, why: path ? nil : no_path_reason(heap, address, options) }
      end
    end

    # [address, path] for the first of +addresses+ in +heap+ with a precise path, else
    # the first with any path, else the first in the heap (path nil).
    def survivor_path(heap, addresses, options)
      found = Array(addresses).select { |a| a.is_a?(String) && heap.at(a) }
      paths = found.map { |a| [a, heap.path_to_root(heap.at(a), class_edges: options[:class_edges])] }
      paths.find { |_, path| path && !path.conservative? } || paths.find { |_, path| path } || [found.first, nil]
    end

    def survivors_output(survivors, snapshot)
      return unless survivors

      @out.puts "Watched objects still alive at #{File.basename(snapshot.path)} (they should have died):"
      survivors.each do |s|
        line = "  #{Printable.escape(s[:label])}: #{s[:count]} of #{s[:watched]} watched — #{s[:path] || s[:why]}"
        line += CONSERVATIVE_NOTE if s[:conservative]
        @out.puts line
      end
    end

    # After a survivor's path from the dumping thread's machine stack (Path#conservative?).
    CONSERVATIVE_NOTE = " (held only from a thread's machine stack, which the GC scans conservatively: " \
                        "maybe a stale slot that later calls overwrite, not a reference the code keeps)"

    # Why a survivor at +address+ (nil: none of its addresses is in +heap+) has no path
    # from a root. Without --no-class-edges: it survived the full GC before the dump,
    # and the dump lists every root, machine stacks included (the current thread's as
    # "machine_context", other threads' as their Thread's references), so either it
    # was let go between that GC and the dump (a dump lists objects no GC has swept
    # yet), or something the dump does not show holds it. The report cannot tell
    # which. With --no-class-edges, only the object → class edges it left out may
    # reach it.
    def no_path_reason(heap, address, options)
      return "none of its addresses is in the dump" unless address
      if !options[:class_edges] && heap.path_to_root(heap.at(address), class_edges: true)
        return "no path from a root without the object → class edges that --no-class-edges leaves out"
      end

      "no path from a root in the dump: let go after the full GC before the dump, " \
        "or held by something the dump does not show"
    end

    # Loads side by side (Heapdiff.diff does), after a progress line for each.
    def diff_paths(paths)
      paths.each { |path| progress(Snapshot === path ? path.path : path) }
      Heapdiff.diff(*paths)
    end

    # A "loading" line on stderr for a large dump, when stderr is a terminal.
    def progress(path)
      return unless @err.respond_to?(:tty?) && @err.tty?

      size = File.size?(path)
      return unless size && size >= PROGRESS_BYTES

      @err.puts format("heapdiff: loading %s (%.1f MB)…", path, size / 1_000_000.0)
    end

    # +path+, or a usage error saying what it is instead of a directory.
    def directory(path)
      return path if File.directory?(path)
      raise Usage, "no such directory: #{path}" unless File.exist?(path)

      raise Usage, "#{path} is a file, not a directory of snapshots ('heapdiff diff A B C' diffs dumps by name)"
    end

    # Raises the usage error of `report` or `trend` (+command+) for a directory with
    # fewer than two snapshots: where a forked process's are, when its pid-PID
    # subdirectories hold them (a Puma cluster's DIR), else how snapshots are named.
    def too_few_snapshots(command, dir, found)
      forked = forked_dirs(dir)
      if forked.empty?
        raise Usage, "#{command} needs at least two snapshots in #{dir}, found #{found} " \
                     "(snapshots are named heap-NNNN.json or heap-NNNN.json.gz; 'heapdiff diff A B C' takes any names)"
      end

      raise Usage, "#{command} needs at least two snapshots in #{dir}, found #{found}; its " \
                   "#{forked.join(", ")} hold each forked process's (Puma workers…): " \
                   "'heapdiff #{command} #{File.join(dir, forked.first)}' for one, " \
                   "'heapdiff compare #{dir}' to set them side by side"
    end

    # The pid-PID subdirectories of +dir+ where forked processes' recorders write
    # (Recorder: a process forked after heapdiff loaded), sorted.
    def forked_dirs(dir)
      Dir.glob("pid-*", base: dir).select { |child| File.directory?(File.join(dir, child)) }.sort
    end

    # The trend over every snapshot of a directory, for `report`: its verdict is
    # printed (text) above the diff of the latest three. A trend needs three
    # snapshots to call a site growing; one that cannot be made (snapshots of two
    # processes) is said on stderr and the diff goes on. Returns the Trend or nil.
    def verdict(snapshots, dir, options)
      return nil if snapshots.size < 3

      trend = Heapdiff.trend(snapshots)
      trend_output(trend, dir, options) if options[:format] == "text"
      trend
    rescue TrendError, MixedProcessesError => e
      @err.puts "#{e.message}; no trend"
      nil
    end

    # The trend's growing leaks (one per holder, what to fix) first, then its first
    # growing sites (what makes them grow), then what to do next: a newcomer's first
    # screen. The diff below lists every group the last dump still holds, growing or not.
    def trend_output(trend, dir, options)
      leaks = shown_leaks(trend, options)
      growing = filter(options).select(trend.growing)
      @out.puts trend.headline
      leak_lines(leaks, options[:baseline], options, "Growing leaks") unless leaks.empty?
      growing.first(VERDICT_SITES).each { |site| @out.puts site.to_s }
      @out.puts "(#{growing.size - VERDICT_SITES} more growing)" if growing.size > VERDICT_SITES
      next_steps(dir) unless leaks.empty?
      @out.puts "", "Diff of the latest three (growing or not):"
    end

    # What to do with the growing leaks `report` just printed, with the user's directory.
    def next_steps(dir)
      dir = Shellwords.escape(dir)
      @out.puts "Next: a leak's first words say what holds it; its sites, where its objects were allocated.",
                "  a path from a root to each site:  heapdiff trend #{dir}",
                "  after a fix, recorded in AFTER:   heapdiff verify #{dir} AFTER",
                "  accept these leaks in CI:         heapdiff report #{dir} --write-baseline heapdiff_baseline.json"
    end

    # The trend over +snapshots+ (or a Trend, which its maker closes) as HTML, written
    # to a temporary file renamed into place: a browser reloading the page never sees
    # half of it. A trend made here is closed at once (Heapdiff.trend's block form).
    def write_html(snapshots, path)
      return html_of(snapshots, path) if snapshots.is_a?(Trend)

      Heapdiff.trend(snapshots) { |trend| html_of(trend, path) }
    end

    def html_of(trend, path)
      SafeFile.write(path, mode: 0o644) { |io| io.write(trend.to_html) }
      @err.puts "heapdiff: wrote #{path}: trend over #{trend.snapshots.size} snapshots, " \
                "#{trend.growing.size} growing site#{"s" unless trend.growing.size == 1}"
    rescue SystemCallError => e
      raise FileError, "heapdiff: cannot write #{path}: #{e.message}"
    end

    def report_output(report, options, trend = nil)
      baseline = options[:baseline]
      leaks = shown_leaks(report, options)
      if options[:format] == "json"
        h = report_h(report, options)
        if trend
          h[:trend] = { verdicts: Trend::VERDICTS.to_h { |v| [v, trend.public_send(v).size] },
                        leaks: leaks_h(shown_leaks(trend, options), baseline),
                        growing: filter(options).select(trend.growing).first(VERDICT_SITES).map(&:to_h) }
        end
        @out.puts pretty({ leaks: leaks_h(leaks, baseline) }.merge(h.except(:leaks)))
      elsif options[:by]
        @out.puts "#{report.verb} #{report.total_count} objects, #{Printable.bytes(report.total_memsize)}, by #{options[:by]}:"
        rows = regroup(filter(options).select(report), options[:by])
        rows.first(options[:top]).each do |key, count, memsize|
          @out.puts format("  %10d  %10s  %s", count, Printable.bytes(memsize), Printable.escape(key))
        end
        @out.puts "(#{rows.size - options[:top]} more)" if rows.size > options[:top]
      else
        leaks_output(leaks, baseline, options)
        @out.puts report.to_s(top: options[:top], class_edges: options[:class_edges], only: options[:only],
                              ignore: options[:ignore])
      end
      write_baseline(report, options) if options[:write_baseline]
      baseline ? fail_over_new(leaks, baseline, options) : fail_over(report, options)
    end

    # The leaks of a Report or Trend that have a site --only/--ignore keep.
    def shown_leaks(report, options)
      keep = filter(options)
      report.leaks(class_edges: options[:class_edges]).select { |leak| leak.sites.any? { |s| keep.keep?(s.site) } }
    end

    def leaks_h(leaks, baseline)
      leaks.map { |leak| baseline ? leak.to_h.merge(known: baseline.known?(leak)) : leak.to_h }
    end

    # "Leaks: 2 (1 new, 1 known in heapdiff_baseline.json)", then each leak, new ones
    # first, with its sites; at most --top. Then "Sites:", which the groups follow.
    def leaks_output(leaks, baseline, options)
      return @out.puts("No leaks.", "", "Sites:") if leaks.empty?

      leak_lines(leaks, baseline, options, "Leaks")
      @out.puts "", "Sites:"
    end

    # +heading+: "Leaks" (a diff's) or "Growing leaks" (a trend's, above the diff in
    # `report`), then each leak, new ones first, marked when there is a baseline.
    def leak_lines(leaks, baseline, options, heading)
      fresh = baseline ? baseline.new_leaks(leaks) : leaks
      known = baseline ? " (#{fresh.size} new, #{leaks.size - fresh.size} known in #{baseline.path})" : ""
      @out.puts "#{heading}: #{leaks.size}#{known}"
      ordered = fresh + (leaks - fresh)
      ordered.first(options[:top]).each do |leak|
        mark = baseline && (fresh.include?(leak) ? "new " : "known ")
        @out.puts "  #{mark}#{leak.to_s(sites: 3).gsub("\n", "\n  ")}"
      end
      more = leaks.size - options[:top]
      @out.puts "  (#{more} more leak#{"s" unless more == 1})" if more.positive?
    end

    # Every leak of the report (--only/--ignore choose what is shown, not what is
    # known), found as the check with --baseline finds them: with --no-class-edges too.
    def write_baseline(report, options)
      path = options[:write_baseline]
      baseline = Baseline.write(path, report.leaks(class_edges: options[:class_edges]))
      @err.puts "heapdiff: wrote #{path}: #{baseline.size} leak#{"s" unless baseline.size == 1}"
    end

    # With a baseline: exit 1 for any new leak, or with --fail-over N when the new
    # leaks hold more than N objects.
    def fail_over_new(leaks, baseline, options)
      fresh = baseline.new_leaks(leaks)
      count = fresh.sum(&:count)
      limit = options[:fail_over] || -1
      return 0 if fresh.empty? || count <= limit

      objects = "#{count} object#{"s" unless count == 1}"
      @err.puts "heapdiff: #{fresh.size} new leak#{"s" unless fresh.size == 1} (#{objects}) not in #{baseline.path}" \
                "#{", more than --fail-over #{limit}" if options[:fail_over]}: " \
                "#{fresh.first(3).map { |l| "#{l.signature} #{l.title}" }.join("; ")}"
      1
    end

    def pattern(text)
      SiteFilter.parse(text)
    rescue ArgumentError
      raise OptionParser::InvalidArgument, text
    end

    def filter(options)
      SiteFilter.new(only: options[:only], ignore: options[:ignore], attribution: @attribution)
    end

    def report_h(report, options)
      h = report.to_h
      h[:memory_verdict] = options[:memory].to_h if options[:memory]
      h[:survivors] = options[:survivors] if options[:survivors]
      h[:group_count] = report.size
      kept = filter(options).select(report)
      h[:left_out_groups] = report.size - kept.size
      h[:groups] = kept.first(options[:top]).map do |g|
        g.to_h.merge(gem: g.file && @attribution.name_for(g.file), addresses: g.sample(SAMPLE_ADDRESSES).map(&:address))
      end
      if options[:by]
        h[:by] = options[:by]
        h[:rows] = regroup(kept, options[:by]).first(options[:top]).map do |k, c, m|
          { key: Printable.utf8(k), count: c, memsize: m }
        end
      end
      h
    end

    # [key, count, memsize] rows of +groups+, largest count first.
    def regroup(groups, by)
      rows = Hash.new { |h, k| h[k] = [0, 0] }
      groups.each do |group|
        row = rows[group_key(group, by)]
        row[0] += group.count
        row[1] += group.memsize
      end
      rows.map { |k, (c, m)| [k, c, m] }.sort_by { |k, c, m| [-c, -m, k] }
    end

    def group_key(group, by)
      case by
      when "location" then group.location
      when "file" then group.file || "(no allocation site)"
      when "gem" then group.file ? (@attribution.name_for(group.file) || "(unknown)") : "(no allocation site)"
      when "class" then group.class_name || group.label
      when "type" then group.type
      end
    end

    # With --only/--ignore, only the groups shown count.
    def fail_over(report, options)
      limit = options[:fail_over]
      return 0 if limit.nil?

      count = filter(options).select(report).sum(&:count)
      return 0 if count <= limit

      @err.puts "heapdiff: #{count} objects #{report.verb.downcase}, more than --fail-over #{limit}"
      1
    end
  end
end
