# frozen_string_literal: true

require "json"

module Heapdiff
  # One object of a heap dump, built on demand from the index. The string value and
  # the rarely used members are read back from the dump file when first asked for.
  class Object
    FIELDS = %i[address_int type class_name file line method generation memsize bytesize_column
                length subtype flags shape_id].freeze
    private_constant :FIELDS

    attr_reader :heap, :row, :type, :class_name, :file, :line, :method, :generation,
                :memsize, :length, :flags, :shape_id

    # The DATA struct name (e.g. "VM/thread") or the IMEMO type (e.g. "callcache").
    attr_reader :subtype

    def initialize(heap, row, values)
      @heap = heap
      @row = row
      FIELDS.zip(values) { |name, value| instance_variable_set(:"@#{name}", value) }
    end

    def address
      format("0x%x", @address_int)
    end

    # "file:line", or nil for objects allocated while tracing was off.
    def location
      file && "#{file}:#{line}"
    end

    # Addresses this object references, in dump order.
    def references
      @references ||= heap._references(row).map { |a| format("0x%x", a) }
    end

    # The objects it references (those the dump has).
    def referents
      references.filter_map { |address| heap.at(address) }
    end

    # A STRING's or SYMBOL's content (binary when the dump gave no encoding), or a
    # FLOAT's printed value. Nil when the dump left it out (non-ASCII or empty strings).
    def value
      return @value if defined?(@value)

      @value = heap._value(row)
    end

    # The members the index does not keep (bytesize, encoding, capacity, name, …),
    # read back from the dump.
    def details
      @details ||= heap._details(row)
    end

    # A STRING's or SYMBOL's size in bytes (read back from the dump when the index
    # could not hold it).
    def bytesize
      @bytesize_column || details[:bytesize]
    end

    def frozen_in_dump?
      flags.include?(:frozen)
    end

    def ==(other)
      other.is_a?(Object) && other.heap.equal?(heap) && other.row == row
    end
    alias eql? ==

    def hash
      [heap.object_id, row].hash
    end

    def to_h
      {
        address: address, type: type, class_name: class_name, file: file, line: line,
        method: method, generation: generation, memsize: memsize, bytesize: bytesize,
        length: length, subtype: subtype, flags: flags, references: references
      }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    def inspect
      parts = ["#<Heapdiff::Object #{address} #{type}"]
      parts << " #{class_name}" if class_name && !%w[STRING ARRAY HASH].include?(type)
      parts << " (#{subtype})" if subtype
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
