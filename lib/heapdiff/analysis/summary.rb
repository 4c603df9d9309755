# frozen_string_literal: true

require "json"
require_relative "gem_attribution"
require_relative "../printable"
require_relative "../arguments"

module Heapdiff
  # What one heap dump holds: counts and memsizes by type, class, allocation site,
  # file and gem, and the strings held more than once.
  class Summary
    KEYS = %i[type class location file gem].freeze

    # One row of a table: what, how many objects, how many bytes.
    Row = Struct.new(:key, :count, :memsize) do
      def to_h
        { key: Printable.utf8(key), count: count, memsize: memsize }
      end
    end

    # A string value held by +count+ distinct STRING objects.
    Duplicate = Struct.new(:value, :count, :memsize) do
      def to_h
        # JSON needs UTF-8; a value the dump gave no encoding is read as binary.
        text = value.encoding == Encoding::UTF_8 ? value.scrub : value.dup.force_encoding(Encoding::UTF_8).scrub
        { value: text, count: count, memsize: memsize }
      end
    end

    attr_reader :heap, :object_count, :memsize

    # Counts +heap+ by every key (in Rust: heapdiff-core's summary.rs) and reads the
    # STRING values back from the dump to find duplicates.
    #
    # @param heap [Heap]
    # @param attribution [GemAttribution] names the gem of each file
    # @raise [FileError] the dump cannot be read again (moved, changed)
    # @raise [Heapdiff::Error] the heap is closed
    def initialize(heap, attribution: GemAttribution.default)
      @heap = heap
      @attribution = attribution
      build
    end

    # The rows for +key+ (:type, :class, :location, :file or :gem), sorted by +by+
    # (:count or :memsize), largest first; +limit: nil+ gives them all.
    #
    # @param key [Symbol]
    # @param by [Symbol]
    # @param limit [Integer, nil]
    # @return [Array<Row>] memsizes in bytes
    # @raise [ArgumentError] an unknown +key+ or +by+, or a +limit+ that is no count
    def top(key, by: :count, limit: 10)
      raise ArgumentError, "heapdiff: no summary by #{Arguments.kind(key)} (#{KEYS.join(", ")})" unless KEYS.include?(key)
      unless %i[count memsize].include?(by)
        raise ArgumentError, "heapdiff: by: must be :count or :memsize, got #{Arguments.kind(by)}"
      end

      limit = Arguments.count(limit, "limit:", nil_ok: true)

      rows = @tables.fetch(key).map { |k, (count, memsize)| Row.new(k, count, memsize) }
      rows = rows.sort_by { |row| [-row.public_send(by), row.key.to_s] }
      limit ? rows.first(limit) : rows
    end

    # Strings whose value more than one STRING object holds, most copies first.
    #
    # @param limit [Integer, nil] nil: all
    # @return [Array<Duplicate>] memsizes in bytes
    def duplicate_strings(limit: 10)
      rows = @duplicates.filter_map { |value, (count, memsize)| Duplicate.new(value, count, memsize) if count > 1 }
                        .sort_by { |d| [-d.count, -d.memsize, d.value] }
      limit ? rows.first(limit) : rows
    end

    # The summary as plain data (what `heapdiff summary --format json` prints).
    #
    # @param top [Integer] rows per table
    # @param keys [Array<Symbol>]
    # @return [Hash{Symbol => Object}] memsizes in bytes
    def to_h(top: 10, keys: KEYS)
      tables = keys.to_h do |key|
        [key, { by_count: top(key, limit: top).map(&:to_h), by_memsize: top(key, by: :memsize, limit: top).map(&:to_h) }]
      end
      { dump: Printable.utf8(heap.path), objects: object_count, memsize: memsize, tables: tables,
        duplicate_strings: duplicate_strings(limit: top).map(&:to_h) }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # The tables as text, +top+ rows each, by count and by memsize.
    #
    # @param top [Integer]
    # @param keys [Array<Symbol>]
    # @return [String]
    def to_s(top: 10, keys: KEYS)
      lines = ["#{Printable.escape(heap.path)}: #{object_count} objects, #{Printable.bytes(memsize)}"]
      keys.each do |key|
        %i[count memsize].each do |by|
          lines << "" << "Top #{key} by #{by}:"
          top(key, by: by, limit: top).each do |row|
            lines << format("  %10d  %10s  %s", row.count, Printable.bytes(row.memsize), Printable.escape(row.key))
          end
        end
      end
      lines << "" << "Duplicated strings (copies, memsize):"
      duplicate_strings(limit: top).each do |d|
        lines << format("  %10d  %10s  %s", d.count, Printable.bytes(d.memsize), d.value.inspect[0, 100])
      end
      lines.join("\n")
    end

    private

    NO_SITE = "(no allocation site)"
    UNKNOWN = "(unknown)"
    private_constant :NO_SITE, :UNKNOWN

    # Counted in Rust (Heap#_summary), without a Ruby object per heap object; only the
    # gem table is made here, from the file table.
    def build
      @object_count, @memsize, types, classes, locations, files, duplicates =
        heap._summary.fetch_values(:objects, :memsize, :types, :classes, :locations, :files, :duplicates)
      @tables = {
        type: tally(types),
        class: tally(classes),
        location: tally(locations) { |site| site ? "#{site[0]}:#{site[1]}" : NO_SITE },
        file: tally(files) { |file| file || NO_SITE }
      }
      @tables[:gem] = tally(files) { |file| file ? (@attribution.name_for(file) || UNKNOWN) : NO_SITE }
      @duplicates = tally(duplicates)
    end

    # Rows [key, count, memsize] into a Hash key => [count, memsize], keys mapped by the
    # block (rows whose keys map to the same key add up).
    def tally(rows)
      rows.each_with_object({}) do |(key, count, memsize), table|
        key = yield(key) if block_given?
        row = (table[key] ||= [0, 0])
        row[0] += count
        row[1] += memsize
      end
    end
  end
end
