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

    module_function

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
