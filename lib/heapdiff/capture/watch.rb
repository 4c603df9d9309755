# frozen_string_literal: true

require "objspace"
require_relative "../arguments"

module Heapdiff
  class << self
    # Watches +object+, which should die soon: a finished job, a served request's env.
    # Heapdiff.survivors, after a full GC, lists the watched objects still alive, by
    # +label+. Holds +object+ weakly: watching never keeps it alive. Immediates (nil,
    # Integers, Floats, Symbols, true, false) are not watched: they are never garbage.
    #
    # @param object [Object]
    # @param label [String] how survivors are grouped (default: the object's class name)
    # @return [Object] +object+
    # @raise [TypeError] when +label+ is not a String
    def watch(object, label = nil)
      Watch.add(object, label)
      object
    end

    # The watched objects still alive after a full GC (+gc: false+ when one just ran).
    #
    # @param gc [Boolean] run GC.start(full_mark: true) first
    # @param sample [Integer] how many addresses (as dumps write them) to give per label
    # @return [Hash{String => Watch::Survivors}] by label, most survivors first
    def survivors(gc: true, sample: 3)
      Watch.survivors(gc: gc, sample: sample)
    end
  end

  # The registry behind Heapdiff.watch: an ObjectSpace::WeakMap from each watched
  # object to its label. Labels are held here (a WeakMap holds its values weakly too),
  # at most LABELS of them: more go under "(other)", so that watching cannot grow
  # memory by itself.
  module Watch
    LABELS = 200
    OTHER = "(other)"
    # Never garbage, or not objects of their own (Bignums and heap Floats are left out
    # too: nobody watches a number).
    IMMEDIATE = [NilClass, TrueClass, FalseClass, Integer, Float, Symbol].freeze

    # Watched objects of one label that are still alive: +count+ of +watched+ ever
    # watched, and up to +sample+ +addresses+ ("0x…", as in a dump of this moment),
    # whose paths a report can show.
    Survivors = Struct.new(:label, :count, :watched, :addresses, keyword_init: true) do
      def to_s
        "#{label}: #{count} of #{watched} watched still alive"
      end
    end

    @map = ObjectSpace::WeakMap.new
    @labels = {}
    @watched = Hash.new(0)
    @lock = Mutex.new

    class << self
      # See Heapdiff.watch.
      def add(object, label)
        case object
        when *IMMEDIATE then return
        end
        raise TypeError, "heapdiff: label must be a String, got #{Arguments.kind(label)}" unless label.nil? || String === label

        label = class_label(object) if label.nil?
        @lock.synchronize do
          label = @labels[label] ||= (@labels.size < LABELS ? label.dup.freeze : @labels[OTHER] ||= OTHER)
          @map[object] = label
          @watched[label] += 1
        end
      end

      # See Heapdiff.survivors.
      def survivors(gc: true, sample: 3)
        GC.start(full_mark: true, immediate_sweep: true) if gc
        alive = Hash.new { |h, k| h[k] = [] }
        @lock.synchronize { @map.each { |object, label| alive[label] << object } }
        found = alive.map do |label, objects|
          Survivors.new(label: label, count: objects.size, watched: @watched[label],
                        addresses: objects.first(sample).map { |o| address(o) })
        end
        found.sort_by { |s| [-s.count, s.label] }.to_h { |s| [s.label, s] }
      end

      # Forgets every watched object (for tests and a fresh start).
      def clear
        @lock.synchronize do
          @map = ObjectSpace::WeakMap.new
          @labels.clear
          @watched.clear
        end
      end

      private

      def class_label(object)
        klass = ::Kernel.instance_method(:class).bind_call(object)
        (klass.name || klass.inspect).to_s
      end

      # The object's address as ObjectSpace.dump writes it: what a dump of this
      # moment calls it (object_id is not an address on Ruby 2.7+).
      def address(object)
        ObjectSpace.dump(object)[/"address":"(0x\h+)"/, 1]
      end
    end
  end
end
