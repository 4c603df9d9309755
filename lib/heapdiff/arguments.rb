# frozen_string_literal: true

module Heapdiff
  # Checks of what callers pass to the public API, so that a wrong argument raises
  # TypeError or ArgumentError naming it, before it reaches Rust (RangeError,
  # FloatDomainError) or a method it lacks (NoMethodError). Written with Module#===,
  # which works on any object, BasicObject included.
  module Arguments
    # Counts beyond this mean "all" (more rows than any heap has) and still fit the
    # native integers they become.
    LARGEST_COUNT = 1 << 32
    BYTE_SUFFIXES = { "" => 1, "k" => 1 << 10, "m" => 1 << 20, "g" => 1 << 30, "t" => 1 << 40 }.freeze

    module_function

    # +value+ as a path String (a Pathname or anything with #to_path is converted);
    # nil stays nil when +nil_ok+. Raises TypeError otherwise.
    def path(value, name, nil_ok: false)
      return nil if nil_ok && NilClass === value

      value = value.to_path if ::Object === value && value.respond_to?(:to_path)
      return value if String === value

      raise TypeError, "heapdiff: #{name} must be a String or Pathname, got #{kind(value)}"
    end

    # +value+ as a count of things to show or take (0 or more); nil stays nil when
    # +nil_ok+. Counts above LARGEST_COUNT are LARGEST_COUNT. Raises TypeError for a
    # non-Integer, ArgumentError for a negative one.
    def count(value, name, nil_ok: false)
      return nil if nil_ok && NilClass === value
      raise TypeError, "heapdiff: #{name} must be an Integer, got #{kind(value)}" unless Integer === value
      raise ArgumentError, "heapdiff: #{name} must be 0 or more, got #{value}" if value.negative?

      [value, LARGEST_COUNT].min
    end

    # +value+, an Array of +type+ (a Class or Module) only. Raises TypeError naming
    # +name+ and the first item that is not one otherwise.
    def list(value, type, name)
      # rubocop:disable Style/CaseEquality -- Module#=== works on a BasicObject; is_a? does not exist there
      return value if Array === value && value.all? { |item| type === item }

      what = Array === value ? "an Array holding #{kind(value.find { |item| !(type === item) })}" : kind(value)
      # rubocop:enable Style/CaseEquality
      raise TypeError, "heapdiff: #{name} must be an Array of #{type}, got #{what}"
    end

    # +value+ as a number of bytes: an Integer, or a String with an optional binary
    # suffix ("1.5G", "800M", "64k": powers of 1024, as ps and top count). Raises
    # ArgumentError for what is not one, or not positive.
    def bytes(value, name)
      return value if Integer === value && value.positive?

      number, suffix = String === value && value.strip.match(/\A(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\z/i)&.captures
      raise ArgumentError, "heapdiff: #{name} must be a positive number of bytes (1.5G, 800M), got #{kind(value)}" \
        unless number && Float(number).positive?

      (Float(number) * BYTE_SUFFIXES.fetch(suffix.downcase)).round
    end

    # What +value+ is, for a message: its inspect (cut short), or its kind for an
    # object that has no #inspect.
    def kind(value)
      return "an instance of BasicObject" unless ::Object === value

      text = value.inspect
      text.length > 60 ? "#{text[0, 60]}…" : text
    end
  end
end
