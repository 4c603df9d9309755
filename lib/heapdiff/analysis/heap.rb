# frozen_string_literal: true

module Heapdiff
  # One loaded heap dump. Made by Heapdiff.load. Enumerable over its objects, built
  # lazily: iterating a million objects builds a million Ruby objects, so prefer #at,
  # #count_by and the diff where you can.
  class Heap
    include Enumerable

    ADDRESS = /\A0x\h+\z/
    private_constant :ADDRESS

    # The object at +address+ ("0x7f…" or an Integer), or nil.
    #
    # @param address [String, Integer, Heapdiff::Object]
    # @return [Heapdiff::Object, nil]
    # @raise [ArgumentError] +address+ is not an address
    def at(address)
      row = _row_of(address_int(address))
      row && object(row)
    end
    alias [] at

    # The object in row +row+ (dump order, 0-based).
    #
    # @param row [Integer]
    # @return [Heapdiff::Object]
    # @raise [ArgumentError] no such row
    # @raise [TypeError] +row+ is not an Integer
    def object(row)
      raise TypeError, "heapdiff: a row is an Integer, got #{Arguments.kind(row)}" unless Integer === row
      raise ArgumentError, "heapdiff: no row #{row} in #{File.basename(path)} (0...#{size})" unless row >= 0 && row < size

      Object.new(self, row, _row(row))
    end

    # Each object, in dump order, built as it is yielded (no Ruby object is kept per
    # heap object).
    #
    # @yieldparam object [Heapdiff::Object]
    # @return [self, Enumerator] an Enumerator without a block
    # @raise [Heapdiff::Error] the heap is closed
    def each
      return enum_for(:each) { size } unless block_given?

      size.times { |row| yield object(row) }
      self
    end

    # { "vm" => ["0x…", …], … }: the root categories and the addresses each marks.
    #
    # @return [Hash{String => Array<String>}]
    # @raise [Heapdiff::Error] the heap is closed
    def roots
      # _roots is [[name, addresses], …], pairs rather than a Hash (hence to_h first).
      @roots ||= _roots.to_h.transform_values { |addresses| addresses.map { |a| format("0x%x", a) } }
    end

    # The shortest path from a GC root to +object+ (a Heapdiff::Object or an address),
    # or nil when no root reaches it. Precise roots are tried before the conservatively
    # scanned machine stack. Object → class edges, which dumps leave out of
    # `references`, are followed where nothing else holds an object (a singleton
    # class's closures, say); +class_edges: false+ leaves them out.
    #
    # @param object [Heapdiff::Object, String, Integer] the object or its address
    # @param class_edges [Boolean]
    # @return [Heapdiff::Path, nil]
    # @raise [ArgumentError] no object at that address in this heap
    def path_to_root(object, class_edges: true)
      path = _path(row_of!(object), class_edges)
      path && Path.new(self, *path)
    end

    # Up to +limit+ shortest paths that reach +object+ through different retainers.
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @param limit [Integer]
    # @param class_edges [Boolean]
    # @return [Array<Heapdiff::Path>] shortest first
    # @raise [ArgumentError] no object at that address in this heap
    def paths_to_root(object, limit: 5, class_edges: true)
      _paths(row_of!(object), Arguments.count(limit, "limit:"), class_edges).map { |root, steps| Path.new(self, root, steps) }
    end

    # The objects that reference +object+.
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @param class_edges [Boolean]
    # @return [Array<Heapdiff::Object>]
    # @raise [ArgumentError] no object at that address in this heap
    def retainers(object, class_edges: true)
      _retainers(row_of!(object), class_edges).map { |row| object(row) }
    end

    # The objects +object+ references (those the dump has).
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @return [Array<Heapdiff::Object>] in dump order
    # @raise [ArgumentError] no object at that address in this heap
    def referents(object)
      _referent_rows(row_of!(object)).map { |row| object(row) }
    end

    # The closest object that every path from the roots to +object+ passes through;
    # nil when only the roots themselves do (or nothing reaches it).
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @param class_edges [Boolean]
    # @return [Heapdiff::Object, nil]
    # @raise [ArgumentError] no object at that address in this heap
    def dominator(object, class_edges: true)
      row = _dominator(row_of!(object), class_edges)
      row && object(row)
    end

    # Bytes that freeing +object+ would free: its memsize and that of everything it
    # dominates. 0 for objects no root reaches.
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @param class_edges [Boolean]
    # @return [Integer] bytes (memsizes as the dump gives them)
    # @raise [ArgumentError] no object at that address in this heap
    def retained_size(object, class_edges: true)
      _retained_size(row_of!(object), class_edges)
    end

    # The code's best name for +object+, from the snapshot's names sidecar
    # (heap-0001.names.json), whatever path leads to it; nil when it has none or the
    # dump has no names sidecar. Names on a path are in Path#steps.
    #
    # @param object [Heapdiff::Object, String, Integer]
    # @return [Heapdiff::Name, nil]
    # @raise [ArgumentError] no object at that address in this heap
    def name_of(object)
      Name.from_native(_name_of(row_of!(object)))
    end

    # How many objects the names sidecar named (0 without one).
    #
    # @return [Integer]
    def names_count
      _names_count
    end

    # Gives the heap the entries of its names sidecar (Names.read), as Heapdiff.load
    # does. Returns how many name an object of the dump; nil when +entries+ is nil or
    # the heap has names already.
    #
    # @param entries [Array<Array>, nil]
    # @return [Integer, nil]
    def _attach_names(entries)
      entries && _set_names(entries)
    rescue TypeError, RangeError => e
      warn "heapdiff: ignoring the damaged names of #{Printable.escape(File.basename(path))}: #{e.message[0, 200]}"
      nil
    end

    # What loading counted: lines, objects, recovered lines, dangling references…
    #
    # @return [Hash{Symbol => Integer, Boolean, nil}]
    def stats
      @stats ||= _stats
    end

    # Lines of broken JSON that loading recovered (see #warnings for which).
    #
    # @return [Integer]
    def recovered_lines
      stats[:recovered_lines]
    end

    # close: frees the index now rather than when the GC collects this Heap (a Report
    # made from it keeps it until the Report goes). Every later call but #path,
    # #closed? and #inspect raises Heapdiff::Error. Returns nil; closing twice is fine.
    # (Defined in Rust, like closed?.)

    # @return [String]
    def inspect
      return "#<Heapdiff::Heap #{Printable.escape(File.basename(path))} closed>" if closed?

      extra = warnings.empty? ? "" : " warnings=#{warnings.size}"
      "#<Heapdiff::Heap #{Printable.escape(File.basename(path))} objects=#{size} roots=#{roots.size}#{extra}>"
    end
    alias to_s inspect

    private

    def row_of!(object)
      return object.row if Heapdiff::Object === object && object.heap.equal?(self)

      _row_of(address_int(object)) or
        raise ArgumentError, "no object at #{Arguments.kind(object)} in #{File.basename(path)}"
    end

    # Addresses are 64-bit: anything else is no object's.
    def address_int(address)
      int = case address
            when Integer then address
            when ADDRESS then address.to_i(16)
            when Heapdiff::Object then address.address.to_i(16)
            else raise ArgumentError, "expected an address like \"0x7f3a…\", got #{Arguments.kind(address)}"
            end
      raise ArgumentError, "not a 64-bit address: #{Arguments.kind(address)}" unless int >= 0 && int < (1 << 64)

      int
    end
  end
end
