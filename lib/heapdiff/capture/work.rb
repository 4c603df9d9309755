# frozen_string_literal: true

require_relative "../arguments"
require_relative "../printable"

module Heapdiff
  # The work this process has done since its last snapshot: finished Sidekiq jobs per
  # job class, served requests per route. The Sidekiq and Rack middlewares count; every
  # snapshot takes the counts into its sidecar ("work") and starts again from zero, so
  # that a trend can relate each site's growth per interval to the work of that
  # interval (Trend::Site#growth_driver).
  #
  #   Heapdiff::Work.count(:jobs, "WidgetJob")
  #   Heapdiff::Work.counts # => {"jobs" => {"WidgetJob" => 1}, "requests" => {}}
  #
  # Process-wide and thread-safe (one Mutex around a Hash update). Bounded: at most
  # MAX_LABELS distinct labels per kind over the life of the process; later labels are
  # counted under OTHER. The set is kept for the whole life rather than per interval so
  # that a label means the same thing in every snapshot (a route counted under its name
  # in one interval and under "(other)" in the next would fit nothing).
  #
  # A forked child (a Puma worker) starts from zero: its parent's counts are not its
  # work.
  module Work
    KINDS = %w[jobs requests].freeze
    MAX_LABELS = 200
    # Labels are cut to this many bytes (a crawler's path can be as long as a server
    # accepts).
    MAX_LABEL_BYTES = 200
    OTHER = "(other)"

    class << self
      # Counts one unit of work: a finished job (+kind+ :jobs, +label+ its class name)
      # or a served request (:requests, its route).
      # @param kind [Symbol, String] :jobs or :requests
      # @param label [String]
      # @return [nil]
      # @raise [ArgumentError] for another kind
      # @raise [TypeError] when +label+ is not a String
      def count(kind, label)
        kind = kind_name(kind)
        raise TypeError, "heapdiff: a work label must be a String, got #{Arguments.kind(label)}" unless String === label

        label = label.byteslice(0, MAX_LABEL_BYTES) if label.bytesize > MAX_LABEL_BYTES
        @lock.synchronize do
          labels = @known[kind]
          label = labels[label] || intern(labels, label)
          counts = @counts[kind]
          counts[label] = counts.fetch(label, 0) + 1
        end
        nil
      end

      # The counts since the last #take (or since counting started), without
      # resetting them.
      # @return [Hash{String => Hash{String => Integer}}] kind => label => count
      def counts
        @lock.synchronize { copy(@counts) }
      end

      # The counts since the last #take, and starts again from zero. A snapshot calls
      # it when it captures the heap (see SnapshotWriter), and gives them back with
      # #add when it fails.
      # @return [Hash{String => Hash{String => Integer}}] kind => label => count
      def take
        @lock.synchronize do
          taken = @counts
          @counts = empty
          taken
        end
      end

      # Adds counts taken with #take back (a snapshot that failed: its work then
      # belongs to the next one). nil does nothing; kinds, labels and counts that #take
      # never gives are skipped.
      # @param taken [Hash{String => Hash{String => Integer}}, nil]
      # @return [nil]
      # @raise [TypeError] when +taken+ is neither a Hash nor nil
      def add(taken)
        return nil if NilClass === taken
        raise TypeError, "heapdiff: expected counts from Work.take, got #{Arguments.kind(taken)}" unless Hash === taken

        @lock.synchronize do
          taken.each do |kind, labels|
            counts = @counts[kind]
            next unless counts && Hash === labels

            labels.each { |label, n| counts[label] = counts.fetch(label, 0) + n if String === label && Integer === n }
          end
        end
        nil
      end

      # +taken+ as a redacted sidecar holds it: a request label made of a path (data: a
      # path can hold an e-mail address or a token that no id rule collapses) becomes
      # its method and a hash of the path, "GET sha256:0123456789abcdef", the same in
      # every snapshot, so fits still work and a guessed route can be confirmed. Rails
      # routes (controller#action) and job classes are code, and stay.
      # @param taken [Hash{String => Hash{String => Integer}}] from #take
      # @return [Hash{String => Hash{String => Integer}}]
      # @raise [TypeError] when +taken+ is not a Hash
      def redact(taken)
        raise TypeError, "heapdiff: expected counts from Work.take, got #{Arguments.kind(taken)}" unless Hash === taken

        require "digest"
        requests = taken.fetch("requests", nil)
        requests = {} unless Hash === requests
        requests = requests.each_with_object({}) do |(label, n), out|
          next unless String === label && Integer === n

          method, path = label.split(" ", 2)
          label = "#{method} sha256:#{Digest::SHA256.hexdigest(path)[0, 16]}" if path
          out[label] = out.fetch(label, 0) + n
        end
        taken.merge("requests" => requests)
      end

      # Forgets every count and label: what a forked child starts from (with a lock of
      # its own), and what the file does when it loads.
      # @return [nil]
      def reset
        @lock = Mutex.new
        @counts = empty
        @known = empty
        nil
      end

      private

      def kind_name(kind)
        name = Symbol === kind ? kind.name : kind
        return name if String === name && KINDS.include?(name)

        raise ArgumentError, "heapdiff: work kind must be :jobs or :requests, got #{Arguments.kind(kind)}"
      end

      # The name a new label is counted under: itself as valid UTF-8 while there is
      # room (Hash#[]= keeps a frozen copy of the key), else OTHER.
      def intern(labels, label)
        return OTHER if labels.size >= MAX_LABELS

        labels[label] = -Printable.utf8(label)
      end

      def empty
        KINDS.to_h { |k| [k, {}] }
      end

      def copy(counts)
        counts.transform_values(&:dup)
      end
    end

    reset

    # Process._fork (fork, Kernel#fork, IO.popen("-")): the child starts from zero.
    module ForkHook
      def _fork
        pid = super
        Work.reset if pid.zero?
        pid
      end
    end
    ::Process.singleton_class.prepend(ForkHook)
  end
end
