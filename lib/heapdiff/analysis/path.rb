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

    def initialize(heap, root, steps)
      @root = root
      @steps = steps.map { |row, label| Step.new(heap.object(row), label) }.freeze
    end

    def each(&block)
      return enum_for(:each) { size } unless block

      steps.each { |step| yield step.object }
      self
    end

    def size
      steps.size
    end
    alias length size

    # The object the path leads to.
    def target
      steps.last.object
    end

    def to_a
      steps.map(&:object)
    end

    def to_h
      steps = self.steps.map do |s|
        { label: s.label }.merge(s.object.to_h.slice(:address, :type, :class_name, :subtype, :location))
      end
      { root: root, steps: steps }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    # "ROOT vm → DATA ractor 0x… → DATA VM/thread 0x… → HASH 0x… → ARRAY 0x… (4990 refs) → STRING 0x…"
    def to_s
      (["ROOT #{root}"] + steps.map { |s| [Printable.escape(s.label), s.object.brief].compact.join(" ") }).join(" → ")
    end

    # The same, from the object back to the root: "ARRAY 0x… ← DATA VM/thread 0x… ← ROOT vm".
    def to_s_from_target
      [steps.map { |s| s.object.brief }.reverse, "ROOT #{root}"].flatten.join(" ← ")
    end

    def inspect
      "#<Heapdiff::Path #{self}>"
    end
  end
end
