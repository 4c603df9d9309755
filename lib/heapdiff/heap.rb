# frozen_string_literal: true

module Heapdiff
  # One loaded heap dump. Made by Heapdiff.load. Enumerable over its objects, built
  # lazily: iterating a million objects builds a million Ruby objects, so prefer #at,
  # #count_by and the diff where you can.
  class Heap
    include Enumerable

    ADDRESS = /\A0x\h+\z/.freeze
    private_constant :ADDRESS

    # The object at +address+ ("0x7f…" or an Integer), or nil.
    def at(address)
      row = _row_of(address_int(address))
      row && object(row)
    end
    alias [] at

    # The object in row +row+ (dump order, 0-based).
    def object(row)
      Object.new(self, row, _row(row))
    end

    def each
      return enum_for(:each) { size } unless block_given?

      size.times { |row| yield object(row) }
      self
    end

    # { "vm" => ["0x…", …], … }: the root categories and the addresses each marks.
    def roots
      @roots ||= _roots.to_h { |name, addresses| [name, addresses.map { |a| format("0x%x", a) }] }
    end

    # What loading counted: lines, objects, recovered lines, dangling references…
    def stats
      @stats ||= _stats
    end

    def recovered_lines
      stats[:recovered_lines]
    end

    def inspect
      extra = warnings.empty? ? "" : " warnings=#{warnings.size}"
      "#<Heapdiff::Heap #{File.basename(path)} objects=#{size} roots=#{roots.size}#{extra}>"
    end
    alias to_s inspect

    private

    def address_int(address)
      case address
      when Integer then address
      when ADDRESS then address.to_i(16)
      when Heapdiff::Object then address.address.to_i(16)
      else raise ArgumentError, "expected an address like \"0x7f3a…\", got #{address.inspect}"
      end
    end
  end
end
