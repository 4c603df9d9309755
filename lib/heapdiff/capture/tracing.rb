# frozen_string_literal: true

module Heapdiff
  # Allocation tracing (ObjectSpace.trace_object_allocations_*) is what makes a dump
  # name the file and line that allocated each object. ObjectSpace counts its starts
  # and stops; heapdiff holds at most one of those starts, so a library or binstub can
  # call trace_allocations! as often as it likes without nesting it.
  @tracing_lock = Mutex.new
  @tracing_started = false

  class << self
    # Starts allocation tracing unless it is already on (started by heapdiff or by
    # anyone else). Objects allocated before it starts have no allocation site.
    # Returns true.
    #
    # @return [true]
    def trace_allocations!
      @tracing_lock.synchronize do
        next if @tracing_started || tracing?

        require "objspace"
        ObjectSpace.trace_object_allocations_start
        @tracing_started = true
      end
      true
    end

    # Whether allocation tracing is on in this process, whoever started it: asks
    # ObjectSpace about an object allocated here and now. Its record must be of the
    # current GC epoch: tracing stopped without a clear leaves the records of objects
    # freed since, and a new object in such a slot finds an older record.
    #
    # @return [Boolean]
    def tracing?
      return false unless ObjectSpace.respond_to?(:allocation_generation)

      # Twice, in case another thread's allocation ran a GC between the two calls.
      2.times.any? do
        generation = ObjectSpace.allocation_generation(::Object.new)
        !generation.nil? && generation == GC.count
      end
    end

    # Undoes trace_allocations! and frees the tracer's records (about 134 bytes per
    # traced object). Tracing that other code started with ObjectSpace directly is
    # theirs to stop: it stays on, and its records are kept. Returns whether tracing
    # is off now.
    #
    # @return [Boolean]
    def stop_tracing!
      @tracing_lock.synchronize do
        if @tracing_started
          ObjectSpace.trace_object_allocations_stop
          @tracing_started = false
        end
        next false if tracing?

        ObjectSpace.trace_object_allocations_clear if ObjectSpace.respond_to?(:trace_object_allocations_clear)
        true
      end
    end
  end
end
