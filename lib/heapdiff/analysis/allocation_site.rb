# frozen_string_literal: true

require_relative "../printable"

module Heapdiff
  # What a diff's Group and a trend's Site share: an allocation site (type, class,
  # subtype, file, line) and how to name it.
  module AllocationSite
    # "app.rb:12", escaped for printing (Printable).
    #
    # @return [String]
    def location
      file ? "#{Printable.escape(file)}:#{line}" : "(no allocation site: tracing was off)"
    end

    # "STRING", "OBJECT Leak", "DATA VM/thread"…: what a reader needs to know the kind.
    #
    # @return [String]
    def label
      Printable.escape(raw_label)
    end

    private

    def raw_label
      case type
      when "OBJECT", "STRUCT" then [type, class_name].compact.join(" ")
      when "DATA" then [type, class_name || subtype].compact.join(" ")
      when "IMEMO" then [type, subtype].compact.join(" ")
      else type
      end
    end
  end
end
