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
      # "100% held by Registry::ENTRIES (Array of 300) ← CLASS Registry 0x… ← ROOT vm":
      # led by the closest holder with a code name (Path#closest_named), then the
      # chain back to the root; addresses stay in #path, #to_h and #inspect.
      def to_s
        # A share that rounds to 0% or 100% and isn't says so: "1 object (<1%)", ">99%".
        percent = if share < 0.01
                    "#{count} object#{"s" unless count == 1} (<1%)"
                  elsif share < 1 && share > 0.99
                    ">99%"
                  else
                    format("%.0f%%", share * 100)
                  end
        return "#{percent} held directly by #{ROOT_CATEGORIES[root]}ROOT #{root || "?"}" unless object
        return "#{percent} held by #{object.brief} (no root reaches it)" unless path

        lead = path.closest_named
        return "#{percent} held by #{path.to_s_from_target}" unless lead

        described = "#{lead.name} (#{[lead.name.context, lead.object.summary].compact.join(", ")})"
        return "#{percent} held by #{described}, through #{path.to_s_from_target}" unless lead.equal?(path.steps.last)

        rest = path.size > 1 ? path.to_s_from_target(from: path.steps[-2]) : "ROOT #{path.root}"
        "#{percent} held by #{described} ← #{rest}"
      end

      # "holder 0x…, named 0x…": the addresses behind #to_s's names.
      def addresses
        [object && "holder #{object.address}", named && "named #{named.object.address}"].compact.join(", ")
      end

      def inspect
        "#<Heapdiff::Suspect::Holder #{self} (#{addresses})>"
      end

      # The closest holder with a code name (see #to_s), or nil.
      #
      # @return [Heapdiff::Path::Step, nil]
      def named
        path&.closest_named
      end

      def to_h
        lead = named
        { object: object&.address, description: object&.brief, root: root, count: count, share: share,
          name: lead&.name&.to_h, named_object: lead&.object&.address, path: path&.to_h }
      end
    end

    # What the roots of a category are, in the words of the code that makes them.
    ROOT_CATEGORIES = Hash.new("").merge(
      "finalizers" => "the finalizer table (ObjectSpace.define_finalizer): ", "end_proc" => "at_exit blocks: ",
      "global_tbl" => "global variables: ", "machine_context" => "a thread's machine stack: "
    ).freeze

    attr_reader :group, :holders, :retained_size, :unreachable_count

    # From a native `_suspect` answer ([[row or nil, count], …], retained, unreachable)
    # for +group+'s objects (a Group or a Trend::Site) in +heap+.
    #
    # @param group [Group, Trend::Site]
    # @param heap [Heap] where the rows are
    # @param native [Array] Report#_suspect's answer
    # @param class_edges [Boolean]
    # @param paths [Hash{Integer => Path, nil}, nil] holder paths by row, shared between
    #   the suspects of one heap (many groups have the same holders), filled as it goes
    # @return [Suspect]
    def self.from_native(group, heap, native, class_edges:, paths: nil)
      holders, retained, unreachable = native
      holders = holders.map do |row, count, root|
        object = row && heap.object(row)
        find = -> { object && heap.path_to_root(object, class_edges: class_edges) }
        path = paths && object ? paths.fetch(row) { paths[row] = find.call } : find.call
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
      lines[0] += "; retains #{Printable.bytes(retained_size)}"
      lines[0] += "; #{unreachable_count} not reachable from any root" if unreachable_count.positive?
      lines.join
    end

    # The sentence, then the addresses it names by code names: "… (holders 0x…, named 0x…)".
    #
    # @return [String]
    def inspect
      "#<Heapdiff::Suspect #{self} (#{holders.first(3).map(&:addresses).join("; ")})>"
    end
  end
end
