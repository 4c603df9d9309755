# frozen_string_literal: true

require "json"
require_relative "allocation_site"

module Heapdiff
  # The retained objects of one allocation site: type, class, file and line.
  class Group
    include AllocationSite

    # +count+: objects known to be retained here. +uncertain+: objects that may also
    # be (the dumps cannot tell whether they are new: no allocation info, or erased by
    # compaction; Report#warnings says which). The true count is in #count_range.
    attr_reader :report, :index, :type, :class_name, :subtype, :file, :line, :count, :memsize, :uncertain

    # @param report [Report]
    # @param index [Integer] the group's place in the report (0 for the largest)
    # @param fields [Hash{Symbol => Object}] Report#_group's record (named in
    #   ext/heapdiff/src/report.rs)
    def initialize(report, index, fields)
      @report = report
      @index = index
      @type, @class_name, @subtype, @file, @line, @count, @memsize, @uncertain =
        fields.fetch_values(:type, :class_name, :subtype, :file, :line, :count, :memsize, :uncertain)
    end

    # The range that holds the true count: count..count for an exact one.
    #
    # @return [Range<Integer>]
    def count_range
      count..(count + uncertain)
    end

    # Is the count an estimate (see #uncertain)?
    #
    # @return [Boolean]
    def estimated?
      uncertain.positive?
    end

    # "1000", or "652–1000" for an estimate.
    #
    # @return [String]
    def count_text
      estimated? ? "#{count}–#{count + uncertain}" : count.to_s
    end

    # Addresses of every object in the group.
    #
    # @return [Array<String>] "0x…", in the last dump
    # @raise [Heapdiff::Error] the report is closed
    def addresses
      report._group_addresses(index).map { |a| format("0x%x", a) }
    end

    # Up to +n+ of the group's objects, as Heapdiff::Object.
    #
    # @param n [Integer]
    # @return [Array<Heapdiff::Object>] at most +n+, in the last dump
    # @raise [ArgumentError] +n+ is not a count
    # @raise [Heapdiff::Error] the report is closed
    def sample(n = 1)
      rows(Arguments.count(n, "n")).map { |row| report.last_heap.object(row) }
    end

    # Each of the group's objects, in the last dump.
    #
    # @yieldparam object [Heapdiff::Object]
    # @return [Array, Enumerator] an Enumerator without a block
    # @raise [Heapdiff::Error] the report is closed
    def each_object(&block)
      return enum_for(:each_object) { count } unless block

      rows.each { |row| yield report.last_heap.object(row) }
    end

    # The group as plain data; +count_max+ is the top of #count_range.
    #
    # @return [Hash{Symbol => Object}] memsize in bytes
    def to_h
      { type: type, class_name: Printable.utf8(class_name), subtype: Printable.utf8(subtype),
        file: Printable.utf8(file), line: line, location: file && location, count: count,
        count_max: count + uncertain, estimated: estimated?, memsize: memsize }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # heapy's wording, so that people who know heapy read it at once, with sizes
    # scaled ("of size 40.0 kB/556.2 kB"; #to_h has the bytes).
    #
    # @return [String]
    def to_s
      size = "#{Printable.bytes(memsize)}/#{Printable.bytes(report.total_memsize)}"
      "#{report.verb} #{label} #{count_text} objects#{" (estimate)" if estimated?} of size #{size} at: #{location}"
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Group #{label} count=#{count_text} memsize=#{memsize} at #{location}>"
    end

    private

    def rows(limit = nil)
      report._group_rows(index, limit)
    end
  end
end
