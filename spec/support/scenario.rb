# frozen_string_literal: true

require "json"
require "rbconfig"
require "open3"

# A seeded generator of small leaking Ruby programs, each of which counts its own
# truth. A scenario combines kinds of leak (how the leaked objects are held) with the
# conditions that break heap tools (no full GC before a dump, GC.compact, tracing
# off, slots reused by objects of the same class, a forked worker writing into the
# same directory). The program writes three dumps and `truth.json`: for each kind,
# how many of its objects were allocated between dump 0 and dump 1 and are still
# held at dump 2. That count is the right answer for a three-dump diff.
#
# Each kind allocates instances of a class of its own (a String or Object subclass),
# so that its objects form a group of their own even when tracing is off and no
# allocation site is recorded.
class Scenario
  # kind => [marker class, superclass]
  KINDS = {
    global: %w[HdGlobal String],
    constant: %w[HdConstant String],
    class_ivar: %w[HdClassIvar String],
    thread_local: %w[HdThreadLocal String],
    fiber_local: %w[HdFiberLocal String],
    closure: %w[HdClosure String],
    singleton_method: %w[HdSingleton String],
    finalizer: %w[HdFinalized Object],
    at_exit: %w[HdAtExit String],
    cache_once: %w[HdCached String],
    transient: %w[HdTransient String]
  }.freeze

  Kind = Struct.new(:name, :count, :dropped, :extra_garbage, keyword_init: true) do
    def class_name = KINDS.fetch(name)[0]
    def superclass = KINDS.fetch(name)[1]
  end

  attr_reader :seed, :kinds, :full_gc, :compact_before, :tracing, :reuse_slots, :same_values, :forked_worker

  # +seed+ decides everything; the same seed gives the same program.
  def initialize(seed)
    @seed = seed
    rng = Random.new(seed)
    names = KINDS.keys.sample(rng.rand(3..6), random: rng)
    @kinds = names.map do |name|
      count = rng.rand(20..200)
      dropped = %i[global constant class_ivar].include?(name) && rng.rand < 0.4 ? rng.rand(1..count / 2) : 0
      Kind.new(name: name, count: count, dropped: dropped, extra_garbage: rng.rand < 0.5 ? rng.rand(10..300) : 0)
    end
    @forked_worker = rng.rand < 0.15
    # heapdiff's own snapshots (used with a forked worker) always run a full GC.
    @full_gc = Array.new(3) { @forked_worker || rng.rand < 0.6 }
    @compact_before = !@forked_worker && GC.respond_to?(:compact) && rng.rand < 0.3 ? rng.rand(0..2) : nil
    @tracing = rng.rand < 0.6
    @reuse_slots = rng.rand < 0.5
    @same_values = @reuse_slots && rng.rand < 0.5
  end

  def to_s
    conditions = []
    conditions << "full GC before dumps #{full_gc.each_index.select { |i| full_gc[i] }.inspect}"
    conditions << "GC.compact before dump #{compact_before}" if compact_before
    conditions << (tracing ? "tracing" : "no tracing")
    conditions << "slots reused#{" (same values)" if same_values}" if reuse_slots
    conditions << "forked worker" if forked_worker
    kinds_text = kinds.map { |k| "#{k.name}×#{k.count}#{"-#{k.dropped}" if k.dropped.positive?}" }
    "scenario #{seed}: #{kinds_text.join(", ")}; #{conditions.join(", ")}"
  end

  def kind(name) = kinds.find { |k| k.name == name }

  # Writes the program to +dir+, runs it there, and returns the truth it counted:
  # { "kinds" => { "HdGlobal" => n, … }, "dumps" => [paths], … }.
  def run(dir, lib:)
    program = File.join(dir, "scenario_#{seed}.rb")
    File.write(program, source)
    out, status = Open3.capture2e(RbConfig.ruby, "-I", lib, program, dir)
    raise "#{self}: the program failed (#{status}):\n#{out}" unless status.success?

    JSON.parse(File.read(File.join(dir, "truth.json")))
  end

  # The program's text.
  def source
    <<~RUBY
      # #{self}
      require "objspace"
      require "json"
      #{'require "heapdiff"' if forked_worker}
      OUT = ARGV[0]
      #{"ObjectSpace.trace_object_allocations_start" if tracing}
      #{kinds.map { |k| "class #{k.class_name} < #{k.superclass}; end" }.join("\n")}

      # Holders, one per kind of leak.
      $hd_global = []
      HD_CONSTANT = []
      class HdRegistry
        @cache = []
        class << self
          attr_reader :cache
        end
      end
      HD_WORKER_QUEUE = Queue.new
      HD_WORKER_DONE = Queue.new
      HD_WORKER = Thread.new do
        Thread.current[:hd_buffer] = []
        while (job = HD_WORKER_QUEUE.pop)
          job.call(Thread.current[:hd_buffer])
          HD_WORKER_DONE << true
        end
      end
      HD_ROWS = Enumerator.new do |y|
        Thread.current[:hd_rows] = []
        loop { y << Thread.current[:hd_rows] }
      end
      class HdHandlers; end
      class HdSettings; end
      HD_SETTINGS = HdSettings.new
      class HdFinalized
        def initialize(n)
          @n = n
          ObjectSpace.define_finalizer(self, proc { @n }) # the proc holds self
        end
      end
      HD_CACHE = {}
      $hd_transient = nil

      def value(kind, i) = #{same_values ? '"same"' : '"#{kind}-#{i}"'}

      def allocate(kind, klass, count)
        case kind
        when :global then count.times { |i| $hd_global << klass.new(value(kind, i)) }
        when :constant then count.times { |i| HD_CONSTANT << klass.new(value(kind, i)) }
        when :class_ivar then count.times { |i| HdRegistry.cache << klass.new(value(kind, i)) }
        when :thread_local
          HD_WORKER_QUEUE << ->(buffer) { count.times { |i| buffer << klass.new(value(kind, i)) } }
          HD_WORKER_DONE.pop
        when :fiber_local then rows = HD_ROWS.next; count.times { |i| rows << klass.new(value(kind, i)) }
        when :closure
          count.times do |i|
            v = klass.new(value(kind, i))
            HdHandlers.define_method(:"handler_\#{HdHandlers.instance_methods(false).size}") { v }
          end
        when :singleton_method
          count.times do |i|
            v = klass.new(value(kind, i))
            HD_SETTINGS.define_singleton_method(:"key_\#{HD_SETTINGS.singleton_methods.size}") { v }
          end
        when :finalizer then count.times { |i| klass.new(i) }
        when :at_exit
          count.times do |i|
            v = klass.new(value(kind, i))
            at_exit { v }
          end
        when :cache_once then count.times { |i| HD_CACHE[i] ||= klass.new(value(kind, i)) }
        when :transient then $hd_transient = Array.new(count) { |i| klass.new(value(kind, i)) }
        end
      end

      # Objects of a kind's class that nothing holds: garbage until a full GC.
      def garbage(klass, count) = count.times { |i| klass.new(value(:garbage, i)) }

      DUMPS = []
      FORKED_WORKER = #{forked_worker}
      def dump(i, full_gc:, compact:)
        GC.compact if compact
        return DUMPS << Heapdiff.snapshot(dir: OUT).path if FORKED_WORKER # a full GC, always

        GC.start(full_mark: true, immediate_sweep: true) if full_gc
        path = File.join(OUT, "\#{i}.json")
        File.open(path, "w") { |f| ObjectSpace.dump_all(output: f) }
        DUMPS << path
      end

      # Live objects of each kind's class, after a full GC.
      def live(klass)
        GC.start(full_mark: true, immediate_sweep: true)
        ObjectSpace.each_object(klass).count { |o| o.instance_of?(klass) }
      end

      # Dumps without a full GC must keep their garbage: the GC runs only when asked.
      #{"GC.disable" if full_gc.include?(false)}
      KINDS = #{kinds.to_h { |k| [k.name, k.class_name] }.inspect}.transform_values { |c| Object.const_get(c) }
      #{"HD_CACHE.clear; allocate(:cache_once, HdCached, #{kind(:cache_once).count})" if kind(:cache_once)}
      # Slots of each kind's class, held at dump 0 and freed right after it, so that
      # the leak's objects can take the same addresses.
      pool = #{reuse_slots ? "KINDS.values.flat_map { |c| Array.new(200) { |i| c == HdFinalized ? HdFinalized.allocate : c.new(value(:pool, i)) } }" : "[]"}
      dump(0, full_gc: #{full_gc[0]}, compact: #{compact_before == 0})
      pool = nil
      before = KINDS.transform_values { |c| live(c) }

      #{"worker = fork { 3.times { 300.times { $hd_global << 'worker' }; Heapdiff.snapshot(dir: OUT) } }" if forked_worker}
      #{kinds.reject { |k| k.name == :cache_once }.map { |k| "allocate(:#{k.name}, #{k.class_name}, #{k.count})" }.join("\n")}
      #{kinds.select { |k| k.extra_garbage.positive? && k.name != :finalizer }.map { |k| "garbage(#{k.class_name}, #{k.extra_garbage})" }.join("\n")}
      dump(1, full_gc: #{full_gc[1]}, compact: #{compact_before == 1})

      # What the program lets go of before the last dump.
      $hd_transient = nil
      #{kinds.select { |k| k.dropped.positive? }.map { |k| drop(k) }.join("\n")}
      #{"Process.wait(worker)" if forked_worker}
      dump(2, full_gc: #{full_gc[2]}, compact: #{compact_before == 2})

      # The truth, counted by the runtime: what a full GC right after dump 2 keeps of
      # each kind's class, less what was live before the leak's allocations.
      truth = KINDS.to_h { |kind, c| [c.name, live(c) - before.fetch(kind)] }
      GC.enable
      File.write(File.join(OUT, "truth.json"),
                 JSON.generate("kinds" => truth, "expected" => #{expected.inspect}, "dumps" => DUMPS, "pid" => Process.pid))
    RUBY
  end

  # For each kind's class, how many objects the generated program allocates between
  # dump 0 and dump 1 and still holds at dump 2: what the program should count. A
  # spec checks the program's own count against it, so that a generator bug shows.
  def expected
    kinds.to_h do |k|
      held = %i[transient cache_once].include?(k.name) ? 0 : k.count - k.dropped
      [k.class_name, held]
    end
  end

  private

  def drop(kind)
    holder = { global: "$hd_global", constant: "HD_CONSTANT", class_ivar: "HdRegistry.cache" }.fetch(kind.name)
    # Only the kept objects are copied, into a fresh array: `pop(n)` would leave the
    # dropped ones in a temporary (on the machine stack, which the GC scans
    # conservatively), and `take` would share the old buffer, which marks them all.
    "kept = Array.new(#{holder}.size - #{kind.dropped}) { |i| #{holder}[i] }; #{holder}.clear.concat(kept); kept = nil"
  end
end
