# frozen_string_literal: true

require "json"

module Heapdiff
  # A path from a GC root to an object: the root category, then each object on the way,
  # with the edge into it where the dump names it (an ivar from the object's shape on
  # Ruby 3.2+, or an array index). Enumerable over the objects.
  class Path
    include Enumerable

    Step = Struct.new(:object, :label)

    # The root category: "vm", "global_tbl", "machine_context"…
    attr_reader :root, :steps

    # @param heap [Heap]
    # @param root [String] the root category
    # @param steps [Array<Array(Integer, String)>] rows and edge labels (nil: unnamed)
    def initialize(heap, root, steps)
      @root = root
      @steps = steps.map { |row, label| Step.new(heap.object(row), label) }.freeze
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
        { label: s.label }.merge(s.object.to_h.slice(:address, :type, :class_name, :subtype, :location))
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

    # The same, from the object back to the root: "ARRAY 0x… ← DATA VM/thread 0x… ← ROOT vm".
    #
    # @return [String]
    def to_s_from_target
      [steps.map { |s| s.object.brief }.reverse, "ROOT #{root}"].flatten.join(" ← ")
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Path #{self}>"
    end
  end
end
