# frozen_string_literal: true

require "json"

module Heapdiff
  # Where a group of retained objects is held: the objects their paths from the roots
  # converge on (found on the dominator tree), each with the share of the group it
  # holds and its own path to a root. Made by Report#suspects.
  class Suspect
    # One holder: +object+ is nil when the roots hold these objects directly; +root+
    # then names the roots' category (from the dump's ROOT records: "vm",
    # "finalizers", "end_proc", "global_tbl", "machine_context", …).
    Holder = Struct.new(:object, :count, :share, :path, :root) do
      def to_s
        percent = share < 0.01 ? "<1%" : format("%.0f%%", share * 100)
        return "#{percent} held directly by ROOT #{root || "?"}" unless object

        "#{percent} held by #{path ? path.to_s_from_target : "#{object.brief} (no root reaches it)"}"
      end

      def to_h
        { object: object&.address, description: object&.brief, root: root, count: count, share: share,
          path: path&.to_h }
      end
    end

    attr_reader :group, :holders, :retained_size, :unreachable_count

    # From a native `_suspect` answer ([[row or nil, count], …], retained, unreachable)
    # for +group+'s objects (a Group or a Trend::Site) in +heap+.
    #
    # @param group [Group, Trend::Site]
    # @param heap [Heap] where the rows are
    # @param native [Array] Report#_suspect's answer
    # @param class_edges [Boolean]
    # @return [Suspect]
    def self.from_native(group, heap, native, class_edges:)
      holders, retained, unreachable = native
      holders = holders.map do |row, count, root|
        object = row && heap.object(row)
        path = object && heap.path_to_root(object, class_edges: class_edges)
        Holder.new(object, count, count.fdiv(group.count), path, root)
      end
      new(group, holders, retained, unreachable)
    end

    # @param group [Group, Trend::Site]
    # @param holders [Array<Holder>]
    # @param retained_size [Integer] bytes
    # @param unreachable_count [Integer]
    def initialize(group, holders, retained_size, unreachable_count)
      @group = group
      @holders = holders
      @retained_size = retained_size
      @unreachable_count = unreachable_count
    end

    # The main holder.
    #
    # @return [Holder, nil] nil when no holder was found
    def top
      holders.first
    end

    # The suspect as plain data.
    #
    # @return [Hash{Symbol => Object}] sizes in bytes
    def to_h
      { group: group.to_h, holders: holders.map(&:to_h), retained_size: retained_size,
        unreachable_count: unreachable_count }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # "7000 STRING from app.rb:28 — 100% held by ARRAY 0x… (21006 refs) ← DATA VM/thread 0x… ← ROOT vm"
    #
    # @return [String]
    def to_s
      held = holders.empty? ? "no holder found" : holders.first(3).map(&:to_s).join("; ")
      lines = ["#{group.count} #{group.label} from #{group.location} — #{held}"]
      lines[0] += "; retains #{retained_size} bytes"
      lines[0] += "; #{unreachable_count} not reachable from any root" if unreachable_count.positive?
      lines.join
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Suspect #{self}>"
    end
  end
end
