# frozen_string_literal: true

require "json"
require "objspace"
require_relative "../printable"
require_relative "tracing"

module Heapdiff
  # The code's names for the objects of this process, written beside a snapshot's dump
  # (heap-0001.names.json): heap dumps name almost no edge, but the process can say
  # which object is +Registry::ENTRIES+, +$cache+, +@cache of Foo+ or a thread's
  # +Thread.current[:buffer]+. Names and addresses only, never values.
  #
  # Collected right after ObjectSpace.dump_all, in the process that dumped (the forked
  # child for +fork: true+), with the GC off: an address is only reused once the GC has
  # freed its object, so when no GC ran between the start of the dump and the end of
  # the collection, an address in the names that is in the dump is the same object.
  # When one did (an in-process snapshot while other threads allocate), an object that
  # already existed when the dump started still held its address throughout, unless
  # compaction moved it; one allocated since may sit where the dump saw another. So
  # only names of objects older than the dump are kept, as allocation tracing tells
  # (their generation, or none for objects older than the tracing); none without
  # tracing, none after a compaction: never a wrong name.
  #
  # The file: {"format" => 1, "entries" => [[address, owner address or nil, kind,
  # expression, context or nil, class name or nil], …], "truncated" => Boolean,
  # "dropped" => names left out for a GC during the dump, "microseconds" => collection
  # time}. Kinds: "constant", "class_ivar", "global",
  # "thread", "fiber_local", "thread_variable".
  class Names
    FORMAT = 1
    # Bounds the memory the names take (a Rails app has some 30,000 constants).
    LIMIT = 250_000
    # Ruby's own methods, bound where used: classes may override #name, #class, #[]…
    MODULE_NAME = Module.instance_method(:name)
    CONSTANTS = Module.instance_method(:constants)
    CONST_GET = Module.instance_method(:const_get)
    AUTOLOAD = Module.instance_method(:autoload?)
    SINGLETON = Module.instance_method(:singleton_class?)
    IVARS = Kernel.instance_method(:instance_variables)
    IVAR_GET = Kernel.instance_method(:instance_variable_get)
    CLASS_OF = Kernel.instance_method(:class)
    KERNEL_TO_S = Kernel.instance_method(:to_s)
    THREAD_NAME = Thread.instance_method(:name)
    THREAD_INSPECT = Thread.instance_method(:inspect)
    THREAD_KEYS = Thread.instance_method(:keys)
    THREAD_AREF = Thread.instance_method(:[])
    THREAD_VARIABLES = Thread.instance_method(:thread_variables)
    THREAD_VARIABLE_GET = Thread.instance_method(:thread_variable_get)
    GLOBAL = /\A\$[A-Za-z_]\w*\z/
    # Kernel#to_s ends with the object's address as dump_all writes it ("%p" of the
    # VALUE): "#<Array:0x00007f…>".
    ADDRESS = /0x(\h+)>\z/
    # Globals whose reading does something: $FILENAME opens ARGF's next file (and
    # shifts ARGV).
    ACTIVE_GLOBALS = %i[$FILENAME].freeze
    private_constant :MODULE_NAME, :CONSTANTS, :CONST_GET, :AUTOLOAD, :SINGLETON, :IVARS, :IVAR_GET, :CLASS_OF, :KERNEL_TO_S,
                     :THREAD_NAME, :THREAD_INSPECT, :THREAD_KEYS, :THREAD_AREF, :THREAD_VARIABLES,
                     :THREAD_VARIABLE_GET, :GLOBAL, :ACTIVE_GLOBALS, :ADDRESS

    class << self
      # "dir/heap-0003.json" => "dir/heap-0003.names.json" (also for .json.gz).
      #
      # @param dump_path [String]
      # @return [String]
      def path_for(dump_path)
        "#{dump_path.sub(/\.json(?:\.gz)?\z/, "")}.names.json"
      end

      # Collects the names now, for a dump that started when GC.count was +gc_count+
      # (and GC.stat(:compact_count) +compact_count+, and allocation tracing was
      # +traced+: Heapdiff.tracing?).
      # +main+ is the process's main thread and +threads+ its threads: a forked child
      # has only the thread that forked (its Thread.main), so a forked snapshot passes
      # the parent's, whose objects the child still has. Never raises: a failure is
      # logged on stderr and gives nil, and the snapshot is kept without names.
      #
      # @param gc_count [Integer] GC.count when the dump started
      # @param compact_count [Integer] GC.stat(:compact_count) then
      # @param traced [Boolean] whether allocation tracing was on then
      # @param main [Thread]
      # @param threads [Array<Thread>]
      # @return [String, nil] the names file's JSON
      def capture(gc_count, compact_count, traced:, main: Thread.main, threads: Thread.list)
        names = collect([gc_count, compact_count, traced], main, threads)
        names && JSON.generate(names)
      rescue StandardError, NoMemoryError, SystemStackError => e
        warn "heapdiff: snapshot names skipped: #{e.class}: #{Printable.utf8(e.message)[0, 200]}"
        nil
      end

      # The entries of the names file at +path+ (as #capture writes them), or nil when
      # there is none; a damaged file gives nil and a warning, never an error.
      #
      # @param path [String]
      # @return [Array<Array>, nil]
      def read(path)
        return nil unless File.file?(path)

        names = JSON.parse(File.read(path, encoding: Encoding::UTF_8)) # as Snapshot.read_meta
        entries = names.is_a?(Hash) && names["format"] == FORMAT && names["entries"]
        raise TypeError, "not a heapdiff names file" unless entries.is_a?(Array)

        entries
      rescue JSON::ParserError, TypeError, EncodingError, SystemCallError, IOError => e
        warn "heapdiff: ignoring the damaged names file #{Printable.escape(path)}: #{e.class}: #{e.message[0, 200]}"
        nil
      end

      private

      # With the GC off (see the class comment); puts it back as it was.
      # +dump+: [gc_count, compact_count, traced] when the dump started.
      def collect(dump, main, threads)
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC, :microsecond)
        was_disabled = GC.disable
        deprecated = Warning[:deprecated]
        Warning[:deprecated] = false # const_get of a deprecate_constant warns
        names = new(main, threads)
        names.collect
        entries = names.entries_true_for(*dump)
        { "format" => FORMAT, "entries" => entries, "truncated" => names.truncated?,
          "dropped" => names.entries.size - entries.size,
          # An Integer: generating a Float would make json's first Float#to_s call cache, a
          # new object in the next dump (see the snapshot spec of an idle process).
          "microseconds" => Process.clock_gettime(Process::CLOCK_MONOTONIC, :microsecond) - started }
      ensure
        Warning[:deprecated] = deprecated unless deprecated.nil?
        GC.enable unless was_disabled || was_disabled.nil?
      end
    end

    attr_reader :entries

    def initialize(main, threads)
      @main = main
      @threads = threads
      @entries = []
      # Per entry, the later allocation generation of the value and its owner: see
      # #entries_true_for.
      @generations = []
      @truncated = false
      @visited = {}.compare_by_identity # (a class's own #hash may be anything)
    end

    def truncated?
      @truncated
    end

    # The entries that name the dump's objects, for a dump that started at GC.count
    # +gc_count+ (see the class comment): all of them when no GC ran since; else, if
    # allocation tracing was on throughout and nothing was compacted, those whose value
    # and owner are older than the dump.
    #
    # @return [Array<Array>]
    def entries_true_for(gc_count, compact_count, traced)
      return @entries if GC.count == gc_count
      return [] unless traced && Heapdiff.tracing? && GC.stat(:compact_count) == compact_count

      @entries.zip(@generations).filter_map { |entry, generation| entry if generation <= gc_count }
    end

    # Fills #entries: modules' constants and class-level ivars, globals, threads.
    # Modules are found through the constants that name them, from Object down: no
    # walk of the whole heap (ObjectSpace.each_object takes some 40 ms a million
    # objects), and a named module is a constant's value by definition.
    def collect
      catch(:full) do
        module_names(::Object, "Object")
        globals
        @threads.each { |thread| thread_names(thread) }
      end
      self
    end

    private

    def add(value, owner, kind, expr, context = nil)
      address = address(value) or return
      if @entries.size >= LIMIT
        @truncated = true
        throw :full
      end
      # Valid UTF-8 for JSON: a thread's name, a constant's, may be any bytes.
      @entries << [address, owner && address(owner), kind, Printable.utf8(expr), Printable.utf8(context),
                   Printable.utf8(class_name(value))]
      @generations << generation(value, owner)
    end

    # The later allocation generation of +value+ and +owner+ (a global's owner is nil).
    # An object that tracing did not see is older than the tracing: 0.
    def generation(value, owner)
      [value, owner].compact.map { |object| ObjectSpace.allocation_generation(object) || 0 }.max
    end

    # The address of a heap object as the dump writes it; nil for values that are no
    # heap object (nil, Integers, Floats, Symbols) and for a BasicObject. Not
    # object_id: on Ruby 3.x that is a counter. Measured against ObjectSpace.dump
    # (which writes the whole record) and Fiddle (a library to load into someone
    # else's process), Kernel#to_s is the cheap one that needs nothing loaded.
    def address(value)
      case value
      when nil, true, false, Integer, Float, Symbol then nil
      else KERNEL_TO_S.bind_call(value)[ADDRESS, 1]&.to_i(16)
      end
    rescue TypeError
      nil
    end

    # The value's class name, which loading checks against the dump's; nil for an
    # anonymous class or a BasicObject (Kernel#class does not bind to those).
    def class_name(value)
      MODULE_NAME.bind_call(CLASS_OF.bind_call(value))
    rescue TypeError
      nil
    end

    def module_names(mod, name)
      return if @visited.key?(mod) || SINGLETON.bind_call(mod)

      @visited[mod] = true
      CONSTANTS.bind_call(mod, false).each { |constant| constant_name(mod, name, constant) }
      IVARS.bind_call(mod).each do |ivar|
        add(IVAR_GET.bind_call(mod, ivar), mod, "class_ivar", "#{ivar} of #{name}")
      end
    end

    def constant_name(mod, name, constant)
      return if AUTOLOAD.bind_call(mod, constant) # reading it would load a file

      value = CONST_GET.bind_call(mod, constant, false)
      expr = mod.equal?(::Object) ? constant.name : "#{name}::#{constant}"
      # A class or module the constant names has that name in the dump already: its
      # own constants are next.
      return module_names(value, expr) if Module === value && MODULE_NAME.bind_call(value) == expr

      add(value, mod, "constant", expr)
    rescue StandardError, LoadError
      nil # a constant that cannot be read has no name here
    end

    # $name → its value. Globals are read with eval (Ruby has no other reader); the
    # special ones ($~, $_, $1, $-w…) are frame-local or flags, and left out, as are
    # those whose reading has an effect.
    def globals
      global_variables.each do |global|
        next if !GLOBAL.match?(global) || ACTIVE_GLOBALS.include?(global)

        value = begin
          eval(global.name, TOPLEVEL_BINDING, __FILE__, __LINE__) # rubocop:disable Security/Eval -- a global's name from global_variables
        rescue StandardError
          next
        end
        add(value, nil, "global", global.name)
      end
    end

    # A thread that cannot be read (it raises) has no names here.
    def thread_names(thread)
      main = thread.equal?(@main)
      name = THREAD_NAME.bind_call(thread)
      label = if main then "Thread.main"
              elsif name then "Thread #{name.inspect}"
              else
                "Thread (#{THREAD_INSPECT.bind_call(thread)[/ (\S+:\d+)/, 1] || "unnamed"})"
              end
      add(thread, nil, "thread", label)
      context = main ? nil : "thread #{label.delete_prefix("Thread ")}"
      THREAD_KEYS.bind_call(thread).each do |key|
        expr = main ? "Thread.main[#{key.inspect}]" : "Thread.current[#{key.inspect}]"
        add(THREAD_AREF.bind_call(thread, key), thread, "fiber_local", expr, ["fiber-local", context].compact.join(", "))
      end
      THREAD_VARIABLES.bind_call(thread).each do |key|
        expr = main ? "Thread.main.thread_variable_get(#{key.inspect})" : "Thread#thread_variable_get(#{key.inspect})"
        add(THREAD_VARIABLE_GET.bind_call(thread, key), thread, "thread_variable", expr, context)
      end
    rescue StandardError
      nil
    end
  end
end
