# frozen_string_literal: true

require "json"

module Heapdiff
  # A path from a GC root to an object: the root category, then each object on the way,
  # with the edge into it where it is known: the code's name from the snapshot's names
  # sidecar (+Registry::ENTRIES+, +Thread.current[:key]+, …), an ivar from the
  # object's shape on Ruby 3.2+, an array index, or what the dump tells (a singleton
  # class, the finalizer table). Enumerable over the objects.
  class Path
    include Enumerable

    # +label+: the edge as printed ("Foo::BAR", "@name", "[3]"), or nil; +name+: a
    # Heapdiff::Name where the label is a code name (not for an array index).
    Step = Struct.new(:object, :label, :name) do
      def named?
        !name.nil?
      end

      # How the step reads in a holder chain: its name, else the object and what the
      # edge is where that is known ("ARRAY 0x… (fiber-local or stack of the fiber)").
      def to_s
        return name.to_s if name
        return object.brief if label.nil? || label.start_with?("[")

        "#{object.brief} (#{Printable.escape(label)})"
      end
    end

    # The root category of the machine stacks (gc.c's mark_current_machine_context).
    CONSERVATIVE_ROOT = "machine_context"

    # The root category: "vm", "global_tbl", "machine_context"…
    attr_reader :root, :steps

    # @param heap [Heap]
    # @param root [String] the root category
    # @param steps [Array<Array(Integer, String)>] rows and edge labels (nil: unnamed)
    def initialize(heap, root, steps)
      @root = root
      @steps = steps.map { |row, label, name| Step.new(heap.object(row), label, Name.from_native(name)) }.freeze
    end

    # @yieldparam object [Heapdiff::Object]
    # @return [self, Enumerator] an Enumerator without a block
    def each(&block)
      return enum_for(:each) { size } unless block

      steps.each { |step| yield step.object }
      self
    end

    # Objects on the path, the target included.
    #
    # @return [Integer]
    def size
      steps.size
    end
    alias length size

    # Whether the path starts at the dumping thread's machine stack
    # ("machine_context"), which the GC scans conservatively: any word that looks like
    # an object's address keeps it, such as a stale slot of a call that has returned.
    # The search tries every precise root first, so such a path means no precise root
    # reaches the target. Other threads' machine stacks are in their Thread's
    # references (Ruby's rb_execution_context_mark), indistinguishable in the dump
    # from their Ruby frames': a path through a Thread is not conservative here.
    #
    # @return [Boolean]
    def conservative?
      root == CONSERVATIVE_ROOT
    end

    # The object the path leads to.
    #
    # @return [Heapdiff::Object]
    def target
      steps.last.object
    end

    # @return [Array<Heapdiff::Object>] from the root's first object to the target
    def to_a
      steps.map(&:object)
    end

    # The path as plain data.
    #
    # @return [Hash{Symbol => Object}]
    def to_h
      steps = self.steps.map do |s|
        { label: s.label, name: s.name&.to_h }.merge(s.object.to_h.slice(:address, :type, :class_name, :subtype, :location))
      end
      { root: root, steps: steps }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # "ROOT vm → DATA ractor 0x… → DATA VM/thread 0x… → HASH 0x… → ARRAY 0x… (4990 refs) → STRING 0x…"
    #
    # @return [String]
    def to_s
      (["ROOT #{root}"] + steps.map { |s| [Printable.escape(s.label), s.object.brief].compact.join(" ") }).join(" → ")
    end

    # The step nearest the target that has a code name, or nil.
    #
    # @return [Heapdiff::Path::Step, nil]
    def closest_named
      steps.reverse_each.find(&:named?)
    end

    # The same, from the object back to the root, named steps by their names:
    # "Thread.main.thread_variable_get(:audit) ← HASH 0x… ← Thread.main ← DATA ractor 0x… ← ROOT vm".
    # +from+ leaves out the steps after that one.
    #
    # @param from [Heapdiff::Path::Step] the last step shown
    # @return [String]
    def to_s_from_target(from: steps.last)
      upto = steps.index(from) || (steps.size - 1)
      [steps.first(upto + 1).map(&:to_s).reverse, "ROOT #{root}"].flatten.join(" ← ")
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Path #{self}>"
    end
  end
end
