# frozen_string_literal: true

require "json"

module Heapdiff
  # One object of a heap dump, built on demand from the index. The string value and
  # the rarely used members are read back from the dump file when first asked for.
  class Object
    # The layout of Heap#_row, defined once in the extension (ext/heapdiff/src/heap.rs).
    FIELDS = Heap::ROW_FIELDS
    private_constant :FIELDS

    attr_reader :heap, :row, :type, :class_name, :file, :line, :generation,
                :memsize, :length, :flags, :shape_id

    # The DATA struct name (e.g. "VM/thread") or the IMEMO type (e.g. "callcache").
    attr_reader :subtype

    # @param heap [Heap]
    # @param row [Integer] the object's row in +heap+
    # @param values [Array] Heap#_row, in the order of Heap::ROW_FIELDS
    def initialize(heap, row, values)
      @heap = heap
      @row = row
      FIELDS.zip(values) { |name, value| instance_variable_set(:"@#{name}", value) }
    end

    # The address in the dump.
    #
    # @return [String] "0x…"
    def address
      format("0x%x", @address_int)
    end

    # The method that allocated the object (from allocation tracing). Called with a
    # name, it is Kernel#method, as everywhere in Ruby.
    #
    # @return [String, nil] without arguments
    # @return [Method] with a name
    def method(*args)
      args.empty? ? @method : super
    end

    # The method that allocated the object, as #method without arguments.
    #
    # @return [String, nil]
    def method_name
      @method
    end

    # "file:line" (escaped for printing: Printable), or nil for objects allocated while
    # tracing was off.
    #
    # @return [String, nil]
    def location
      file && "#{Printable.escape(file)}:#{line}"
    end

    # Addresses this object references, in dump order.
    #
    # @return [Array<String>] "0x…", dangling ones included
    def references
      @references ||= heap._references(row).map { |a| format("0x%x", a) }
    end

    # The objects it references (those the dump has).
    #
    # @return [Array<Heapdiff::Object>]
    # @raise [Heapdiff::Error] the heap is closed
    def referents
      heap.referents(self)
    end

    # Why is it retained: see Heap#path_to_root, #retainers, #dominator, #retained_size.
    #
    # @param class_edges [Boolean]
    # @return [Path, nil] nil when no root reaches it
    # @raise [Heapdiff::Error] the heap is closed
    def path_to_root(class_edges: true)
      heap.path_to_root(self, class_edges: class_edges)
    end

    # The objects that reference this one (Heap#retainers).
    #
    # @param class_edges [Boolean]
    # @return [Array<Heapdiff::Object>]
    # @raise [Heapdiff::Error] the heap is closed
    def retainers(class_edges: true)
      heap.retainers(self, class_edges: class_edges)
    end

    # Bytes freeing it would free (Heap#retained_size).
    #
    # @param class_edges [Boolean]
    # @return [Integer] bytes
    # @raise [Heapdiff::Error] the heap is closed
    def retained_size(class_edges: true)
      heap.retained_size(self, class_edges: class_edges)
    end

    # For a CLASS or MODULE: its own name ("Leak", or "#<Class:0x…>" when anonymous).
    #
    # @return [String, nil] nil for other types
    def name
      %w[CLASS MODULE ICLASS].include?(type) ? heap._own_name(row) : nil
    end

    # "ARRAY 0x7f… (4990 refs)", "DATA VM/thread 0x7f…", "OBJECT Leak 0x7f…": how a
    # path names the object.
    #
    # @return [String]
    def brief
      kind = case type
             when "CLASS", "MODULE", "ICLASS" then [type, name]
             when "OBJECT", "STRUCT" then [type, class_name]
             when "DATA", "IMEMO" then [type, subtype || class_name]
             else [type]
             end
      count = heap._references(row).size
      refs = %w[ARRAY HASH OBJECT STRUCT].include?(type) && count > 1 ? " (#{count} refs)" : ""
      "#{Printable.escape(kind.compact.join(" "))} #{address}#{refs}"
    end

    # "Array of 4060", "Hash of 3", "Thread", "Enumerator": the class, and the length
    # where the dump gives one. For a holder's named description.
    def summary
      what = class_name || subtype || type
      Printable.escape(length ? "#{what} of #{length}" : what)
    end

    # A STRING's or SYMBOL's content (binary when the dump gave no encoding), or a
    # FLOAT's printed value. Nil when the dump left it out (non-ASCII or empty strings).
    #
    # @return [String, nil]
    # @raise [FileError] the dump cannot be read again (moved, changed)
    def value
      return @value if defined?(@value)

      @value = heap._value(row)
    end

    # The members the index does not keep (bytesize, encoding, capacity, name, …),
    # read back from the dump.
    #
    # @return [Hash{Symbol => Object}] only the members the record has
    # @raise [FileError] the dump cannot be read again (moved, changed)
    def details
      @details ||= heap._details(row)
    end

    # A STRING's or SYMBOL's size in bytes (read back from the dump when the index
    # could not hold it).
    #
    # @return [Integer, nil] bytes; nil for other types
    # @raise [FileError] the dump cannot be read again (moved, changed)
    def bytesize
      return @bytesize_column if @bytesize_column
      return nil unless %w[STRING SYMBOL].include?(type)

      details[:bytesize]
    end

    # Was the object frozen when the dump was taken (its flags say)?
    #
    # @return [Boolean]
    def frozen_in_dump?
      flags.include?(:frozen)
    end

    # The same row of the same Heap.
    #
    # @param other [Object]
    # @return [Boolean]
    def ==(other)
      other.is_a?(Object) && other.heap.equal?(heap) && other.row == row
    end
    alias eql? ==

    # @return [Integer]
    def hash
      [heap.object_id, row].hash
    end

    # The object as plain data (what the index keeps, and its references).
    #
    # @return [Hash{Symbol => Object}] sizes in bytes
    def to_h
      {
        address: address, type: type, class_name: Printable.utf8(class_name), file: Printable.utf8(file), line: line,
        method: Printable.utf8(method), generation: generation, memsize: memsize, bytesize: bytesize,
        length: length, subtype: Printable.utf8(subtype), flags: flags, references: references
      }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # @return [String]
    def inspect
      parts = ["#<Heapdiff::Object #{address} #{type}"]
      parts << " #{Printable.escape(class_name)}" if class_name && !%w[STRING ARRAY HASH].include?(type)
      parts << " (#{Printable.escape(subtype)})" if subtype
      parts << " #{location}" if location
      parts << " gen=#{generation}" if generation
      parts << " memsize=#{memsize}"
      parts << " length=#{length}" if length && %w[ARRAY HASH].include?(type)
      parts << " refs=#{heap._references(row).size}"
      if %w[STRING SYMBOL FLOAT].include?(type) && (v = value)
        shown = v.bytesize > 40 ? "#{v.byteslice(0, 40).scrub}…" : v.scrub
        parts << " #{shown.inspect}"
      end
      "#{parts.join}>"
    end
    alias to_s inspect
  end
end
