# frozen_string_literal: true

module Heapdiff
  # Names and paths from a dump, made safe to print: a dump is written by the process
  # it describes, and whatever that process named a file or a class goes into text
  # that ends on someone's terminal. Control characters (C0, DEL, C1: ESC, BEL, CR…)
  # become Ruby escapes ("\e", "\a", "\u009B"), bytes that are not UTF-8 become "\xFF":
  # the result is valid UTF-8 and prints as what it is.
  module Printable
    CONTROL = /[\x00-\x1f\x7f\u0080-\u009f]/
    private_constant :CONTROL
    # Decimal units, as memory_profiler prints them.
    UNITS = %w[B kB MB GB TB].freeze
    private_constant :UNITS

    module_function

    # A byte count scaled for reading: 120 → "120 B", 40000 → "40.0 kB",
    # 35_800_000 → "35.8 MB". Text only: JSON keeps the exact count.
    # @param count [Integer]
    # @return [String]
    def bytes(count)
      return "#{count} B" if count.abs < 1000

      exp = [(Math.log10(count.abs) / 3).floor, UNITS.size - 1].min
      exp += 1 if count.abs.fdiv(1000**exp).round(1) >= 1000 && exp < UNITS.size - 1
      format("%.1f %s", count.fdiv(1000**exp), UNITS[exp])
    end

    # +text+ (a String of any encoding, or nil) escaped as above; nil stays nil.
    def escape(text)
      utf8(text)&.gsub(CONTROL) { |c| c.dump[1...-1] }
    end

    # +text+ as valid UTF-8, bytes that are not written "\xFF", for JSON (which needs
    # UTF-8, and escapes control characters itself); nil stays nil.
    def utf8(text)
      return text if text.nil?

      utf8 = text.dup.force_encoding(Encoding::UTF_8)
      utf8.valid_encoding? ? utf8 : utf8.scrub { |bytes| bytes.unpack("C*").map { |b| format("\\x%02X", b) }.join }
    end
  end
end
