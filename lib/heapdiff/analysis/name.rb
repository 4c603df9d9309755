# frozen_string_literal: true

require "json"

module Heapdiff
  # The code's name of an object or of the edge into it: +expr+ is the Ruby expression
  # ("Registry::ENTRIES", "$cache", "@cache of Foo", "Thread.current[:buffer]",
  # "singleton class of #<Settings 0x…>", "at_exit block"), +context+ what it needs to
  # be read right ("fiber-local, thread \"worker\""), +kind+ where it comes from:
  # a snapshot's names sidecar ("constant", "global", "class_ivar", "fiber_local",
  # "thread_variable", "thread") or the dump itself ("ivar" from a SHAPE record on
  # Ruby 3.2+, "singleton_class", "finalizer", "at_exit").
  Name = Struct.new(:kind, :expr, :context) do
    # From the extension's [kind, expr, context], or nil.
    def self.from_native(triple)
      triple && new(*triple)
    end

    def to_s
      Printable.escape(expr)
    end

    def to_h
      { kind: kind, expr: expr, context: context }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    def inspect
      "#<Heapdiff::Name #{kind} #{self}#{" (#{Printable.escape(context)})" if context}>"
    end
  end
end
