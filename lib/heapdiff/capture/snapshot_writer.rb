# frozen_string_literal: true

require "etc"
require "json"
require_relative "../errors"
require_relative "../printable"
require_relative "../safe_file"
require_relative "memory"
require_relative "watch"
require_relative "process_identity"
require_relative "tracing"
require_relative "work"
require_relative "names"
require_relative "../version"

module Heapdiff
  # Writes one snapshot: a full GC, ObjectSpace.dump_all into a hidden temporary file
  # beside the target, fsync, then the sidecar and the dump put in place under their
  # final names. Used by Heapdiff.snapshot; not an API of its own.
  #
  # What a reader of the directory sees, in order:
  #   .heap-0003.json.tmp-PID-RANDOM the dump being written: hidden, and it gets no
  #                                  final name before it is complete and fsynced
  #   heap-0003.meta.json            the sidecar (written and fsynced the same way)
  #   heap-0003.json                 the dump: the last name to appear, so a dump that
  #                                  exists is complete and its sidecar is there
  # A crash leaves at most a hidden temporary (the Recorder deletes those of dead
  # processes) and, between the last two steps, a sidecar without its dump.
  #
  # Numbered names are put in place with link(2), which unlike rename(2) never replaces
  # a file: processes sharing a directory each get their own numbers. A path given by
  # the caller is replaced, like File.write.
  #
  # With fork, the parent runs the full GC's marking (every thread's stack is a root
  # only here: a forked child has the forking thread alone, so marking finished there
  # would free what only other threads' stacks hold, and the dump would miss it), opens
  # the temporary and forks. The child finishes the lazy sweep (GC.disable does) before
  # it dumps, so the dump holds no garbage, and starts no new GC: a new GC would raise
  # the child's GC count, and so the generation of what its dump holds, above the
  # parent's. The parent's next objects would then look older than
  # the dump, and a diff would take them for objects that compaction moved rather than
  # new ones.
  class SnapshotWriter
    MODE = 0o600
    DIR_MODE = 0o700
    NUMBERED = /\Aheap-(\d+)(?:\.json(?:\.gz)?|\.meta\.json)\z/
    # GC.stat members worth keeping: collections, heap size, allocation totals.
    GC_STAT_KEYS = %i[
      count time minor_gc_count major_gc_count compact_count heap_allocated_pages
      heap_available_slots heap_live_slots heap_free_slots heap_final_slots
      total_allocated_objects total_freed_objects old_objects malloc_increase_bytes
      oldmalloc_increase_bytes
    ].freeze
    # Signals whose handlers the dumping child must not run: they belong to the parent
    # (Sidekiq's write to a pipe the parent reads; a Recorder's would ask the parent
    # for another snapshot).
    CHILD_DEFAULT_SIGNALS = %w[INT TERM QUIT HUP USR1 USR2 TTIN TSTP].freeze
    LINK_ATTEMPTS = 100

    # Removes the temporaries of the snapshot whose temporaries end in +suffix+ (a
    # child that died before finishing).
    def self.remove_temps(dir, suffix)
      Dir.glob(File.join(dir, ".*#{suffix}")).each { |t| File.unlink(t) }
    rescue SystemCallError
      nil
    end

    attr_reader :temp_suffix

    # +path+: an absolute path, or nil for the next numbered name in +dir+.
    def initialize(dir:, path:, gzip:, sequence:, redact: false)
      require "objspace"
      require_relative "redactor" if redact
      @dir = dir
      @path = path
      @gzip = gzip
      @redact = redact
      @sequence = sequence
      @temp_suffix = SafeFile.temp_suffix
      @temps = []
    end

    # The Work counts this snapshot took (see #prepare), for a forked snapshot whose
    # child fails to give back.
    attr_reader :work

    # Writes the snapshot in this process. Returns [dump_path, meta_path, meta].
    def write(time)
      prepare(time, forked: false)
      result = complete(time, forked: false)
      @work = nil
      result
    rescue SystemCallError, IOError, FileError, ParseError => e
      raise SnapshotError, "heapdiff: snapshot in #{@dir} failed: #{e.message}"
    ensure
      Work.add(@work) # failed: its work goes to the next snapshot
      close_quietly
      @temps.each { |t| remove(t) }
    end

    # Prepares the snapshot here, then forks a child that dumps, commits and exit!s.
    # Returns [child_pid, reader]: the child sends, as JSON, ["ok", meta] through
    # +reader+ once everything is in place (the parent knows the paths from the
    # directory and meta["dump"]: paths are bytes, which JSON cannot carry when they
    # are not UTF-8), or ["error", message]. Parse it with Snapshot.parse_json, not
    # JSON.parse: the objects the parser makes are then allocated in heapdiff's file,
    # not in json's.
    def fork_write(time)
      prepare(time, forked: true)
      reader, writer = IO.pipe
      child = core_fork
      if child.zero?
        reader.close
        in_child(writer) { complete(time, forked: true) }
      end
      @temps.clear # the child's now
      [child, reader]
    rescue SystemCallError, IOError => e
      reader&.close
      raise SnapshotError, "heapdiff: snapshot in #{@dir} failed: #{e.message}"
    ensure
      Work.add(@work) unless child # no child: failed here (else Snapshot#finish gives it back)
      writer&.close
      close_quietly
      @temps.each { |t| remove(t) }
    end

    private

    # Everything before the dump: the directory, the GC (see the class comment), the
    # meta of an in-process snapshot, the temporary.
    def prepare(time, forked:)
      make_dir
      @pid = Process.pid
      # The work up to the capture of the heap, taken here, in the process that does
      # it (a forked child's copy is not the one to reset). Taken now and given back
      # on failure rather than reset on success: the work done while the dump is
      # written (seconds, on other threads) belongs to the next interval.
      @work = Work.take
      # The parent's, also in a forked snapshot's child, which dumps the parent's heap.
      @process = ProcessIdentity.current
      # A forked child has only the thread that forked, its Thread.main: the names
      # need the parent's.
      @main_thread = Thread.main
      @threads = Thread.list
      @rss = Memory.rss
      # The first use of JSON creates call caches in json/common.rb (generating the
      # sidecar here; parsing the child's report in a forked snapshot's parent): let
      # them be in the first dump rather than new in the second.
      if forked
        Snapshot.parse_json("[]")
        GC.start(full_mark: true, immediate_mark: true, immediate_sweep: false)
        # The parent's memory, after marking (the sweep is lazy: free slots not yet
        # swept count as live); the child's would be a copy-on-write view of it.
        @memory = Memory.breakdown
        @survivors = Watch.survivors(gc: false)
      else
        GC.start(full_mark: true, immediate_sweep: true)
        @memory = Memory.breakdown
        @survivors = Watch.survivors(gc: false)
        @meta = collect_meta(time, forked)
        JSON.generate(@meta)
      end
      # Redacting reads the dump back through the same descriptor.
      @dump_temp, @io = create_temp(dump_name_guess.delete_suffix(".gz"), readable: @redact)
      forget_name(@dump_temp) if @redact
      prime_write_lock(@io)
    end

    # Unlinks an open temporary: the unredacted dump is written into a file without a
    # name, which disappears with its last descriptor, whatever happens to the process.
    def forget_name(temp)
      File.unlink(temp)
      @temps.delete(temp)
    end

    # The dump and everything after it. A forked child collects the meta here, once
    # the dump has finished the GC.
    def complete(time, forked:)
      traced = Heapdiff.tracing?
      gc_count = GC.count
      compact_count = GC.stat(:compact_count)
      ObjectSpace.dump_all(output: @io)
      @names = Names.capture(gc_count, compact_count, traced: traced, main: @main_thread, threads: @threads)
      if @redact
        @io.flush
        dump = write_temp(dump_name_guess) do |out|
          Redactor.redact_io(@io, out, gzip: @gzip, input_name: "heap dump of pid #{@pid}", output_name: out.path)
        end
        @io.close
      else
        @io.fsync
        @io.close
        dump = @gzip ? compress(@dump_temp) : @dump_temp
      end
      @meta ||= collect_meta(time, forked)
      commit(dump)
    end

    # An IO makes its write lock (a Mutex) on its first buffered write. Made by
    # dump_all, it would be an object of objspace.rb in the dump; made here, it is
    # heapdiff's own, which a diff leaves out.
    def prime_write_lock(io)
      io.write("\n")
      io.flush
      io.rewind
      io.truncate(0)
    end

    def in_child(writer)
      status = 1
      begin
        CHILD_DEFAULT_SIGNALS.each do |sig|
          Signal.trap(sig, "DEFAULT")
        rescue ArgumentError
          nil
        end
        # Finishes the parent's GC, and starts no new one (see the class comment).
        GC.disable
        raise SnapshotError, "heapdiff: the GC did not finish before the dump" unless GC.latest_gc_info(:state) == :none

        _, _, meta = yield
        writer.write(JSON.generate(["ok", meta]))
        status = 0
      rescue Exception => e # rubocop:disable Lint/RescueException -- the forked child: whatever it is, the parent gets its message
        @temps.each { |t| remove(t) }
        begin
          writer.write(JSON.generate(["error", Printable.utf8(e.message)]))
        rescue SystemCallError, IOError
          nil
        end
      ensure
        # No at_exit handlers, finalizers or flushing of the parent's buffered output:
        # those are the parent's.
        exit!(status)
      end
    end

    # Process._fork as Ruby itself defines it, skipping the fork hooks that libraries
    # prepend (ActiveSupport's ForkTracker discards database pools in the child): the
    # child only dumps the heap and exit!s, and nothing may run in it before the dump.
    def core_fork
      method = ::Process.method(:_fork)
      method = method.super_method while method.owner != ::Process.singleton_class && method.super_method
      method.call
    end

    # mkdir -p, each directory it makes 0700.
    def make_dir(dir = @dir)
      return if File.directory?(dir)

      parent = File.dirname(dir)
      make_dir(parent) unless parent == dir
      Dir.mkdir(dir, DIR_MODE)
    rescue Errno::EEXIST
      # Made meanwhile by another process, or a file in the way.
      raise Errno::ENOTDIR, dir unless File.directory?(dir)
    end

    def collect_meta(time, forked)
      counts = ObjectSpace.count_objects
      {
        "heapdiff_version" => VERSION,
        # Where heapdiff's own objects were allocated (Heapdiff::OWN_PATH there): a diff
        # made on another machine needs it to leave them out.
        "heapdiff_path" => Printable.utf8(File.expand_path("..", __dir__)),
        # Where the app's files are: paths under it lose this prefix in leak signatures
        # (Leak.normalize_path), so that two checkouts give the same ones.
        "app_root" => app_root,
        "sequence" => @sequence,
        **process_identity,
        "time" => time.getutc.strftime("%Y-%m-%dT%H:%M:%S.%6NZ"),
        "ruby_version" => RUBY_VERSION,
        "ruby_platform" => RUBY_PLATFORM,
        "ruby_description" => RUBY_DESCRIPTION,
        "gc_count" => GC.count,
        "gc_stat" => GC.stat.slice(*GC_STAT_KEYS).transform_keys(&:to_s),
        "rss_bytes" => @rss,
        "memory" => @memory,
        # Watched objects (Heapdiff.watch) alive after this snapshot's GC, by label:
        # {"count", "watched", "addresses"}; a report shows the path of one per label.
        "survivors" => @survivors.transform_values { |s| s.to_h.except(:label).transform_keys(&:to_s) },
        "work" => @redact ? Work.redact(@work) : @work,
        "live_objects" => counts[:TOTAL] - counts[:FREE],
        "tracing" => Heapdiff.tracing?,
        "forked" => forked,
        "gzip" => @gzip,
        "redacted" => @redact
      }
    end

    # The working directory, or nil when it was deleted under the process.
    def app_root
      Printable.utf8(Dir.pwd)
    rescue SystemCallError
      nil
    end

    # The process (ProcessIdentity: host, pid, start time) and the program's name
    # ($PROGRAM_NAME, which servers fill with their command line: "--token=…"). A
    # redacted sidecar holds neither name: the host only as a hash, which still tells
    # snapshots of different hosts apart (Snapshot.processes needs that).
    def process_identity
      meta = @process.to_meta
      return meta.merge("program" => Printable.utf8($PROGRAM_NAME)) unless @redact

      require "digest"
      meta.merge("hostname" => "sha256:#{Digest::SHA256.hexdigest(meta["hostname"])[0, 16]}", "program" => nil)
    end

    # Streams the plain dump into gzip (fast level: dumps are large and compress well
    # anyway). dump_all writes only to an IO, hence the two steps.
    def compress(plain)
      require "zlib"
      gz = write_temp(dump_name_guess) do |io|
        gzip = Zlib::GzipWriter.new(io, Zlib::BEST_SPEED)
        File.open(plain, "rb") { |src| IO.copy_stream(src, gzip) }
        gzip.finish
      end
      remove(plain)
      gz
    end

    # A hidden temporary beside the target (same file system, so that linking and
    # renaming it are atomic), mode 0600, never an existing file nor through a
    # symlink (SafeFile). Returns [path, io].
    def create_temp(name, readable: false)
      temp = File.join(@dir, ".#{name}#{@temp_suffix}")
      io = SafeFile.create(temp, MODE, readable: readable)
      @temps << temp
      [temp, io]
    end

    # Writes a temporary with the block, fsyncs and closes it. Returns its path.
    def write_temp(name)
      temp, io = create_temp(name)
      begin
        yield io
        io.fsync
      ensure
        io.close
      end
      temp
    end

    def commit(dump)
      result = @path ? commit_to_path(dump) : commit_numbered(dump)
      sync_dir
      result
    end

    def commit_to_path(dump)
      meta_path = Snapshot.meta_path_for(@path)
      meta = @meta.merge("dump" => Printable.utf8(File.basename(@path)))
      File.rename(write_temp(File.basename(meta_path)) { |io| io.write(JSON.generate(meta), "\n") }, meta_path)
      place_names(@path)
      begin
        File.rename(dump, @path)
      rescue SystemCallError
        # Sidecars without their dump would describe nothing.
        remove(meta_path)
        remove(Names.path_for(@path))
        raise
      end
      [@path, meta_path, meta]
    end

    def commit_numbered(dump)
      LINK_ATTEMPTS.times do
        path = numbered_path(next_number)
        meta_path = Snapshot.meta_path_for(path)
        meta = @meta.merge("dump" => File.basename(path))
        meta_temp = write_temp(File.basename(meta_path)) { |io| io.write(JSON.generate(meta), "\n") }
        unless place(meta_temp, meta_path)
          remove(meta_temp) # the number was taken meanwhile: try the next
          next
        end
        place_names(path)

        unless place(dump, path)
          remove(meta_path)
          remove(Names.path_for(path))
          raise SnapshotError, "heapdiff: #{path} appeared while the snapshot was being written"
        end
        return [path, meta_path, meta]
      end
      raise SnapshotError, "heapdiff: no free snapshot number in #{@dir} after #{LINK_ATTEMPTS} attempts"
    end

    # The names sidecar (Names) of the dump that will be +dump_path+, once the number
    # is ours (its meta is in place); before the dump, whose name appears last.
    # A failure to write it costs the snapshot its names only (logged).
    def place_names(dump_path)
      path = Names.path_for(dump_path)
      return remove(path) unless @names # a stale file must not name this dump's objects

      File.rename(write_temp(File.basename(path)) { |io| io.write(@names, "\n") }, path)
    rescue SystemCallError, IOError => e
      remove(path)
      warn "heapdiff: snapshot names not written: #{e.message}"
    end

    # Gives +temp+ the name +final+ unless +final+ exists. A hard link, then removing
    # the temporary: rename(2) would silently replace a file another process made.
    def place(temp, final)
      File.link(temp, final)
      File.unlink(temp)
      true
    rescue Errno::EEXIST
      false
    rescue Errno::EPERM, Errno::EOPNOTSUPP
      # A file system without hard links: rename, checking first (racy, but only there).
      return false if File.exist?(final)

      File.rename(temp, final)
      true
    end

    def next_number
      numbers = Dir.children(@dir).filter_map { |name| name.b[NUMBERED, 1]&.to_i }
      (numbers.max || 0) + 1
    end

    def numbered_path(number)
      File.join(@dir, format("heap-%04d.json%s", number, @gzip ? ".gz" : ""))
    end

    def dump_name_guess
      File.basename(@path || numbered_path(next_number))
    end

    # Makes the new names durable (the files' contents already are).
    def sync_dir
      File.open(@dir, File::RDONLY, &:fsync)
    rescue SystemCallError, IOError
      nil
    end

    # Removes a file if it can: called while cleaning up after a failure, it must not
    # replace the error that explains the failure (EPERM, EROFS).
    def remove(path)
      File.unlink(path)
    rescue SystemCallError
      nil
    end

    # Closes the dump's IO after a failure: its buffer may not flush (disk full), and
    # the error that matters was raised already.
    def close_quietly
      @io&.close
    rescue SystemCallError, IOError
      nil
    end
  end
end
