# frozen_string_literal: true

require "json"
require_relative "allocation_site"

module Heapdiff
  # The retained objects of one allocation site: type, class, file and line.
  class Group
    include AllocationSite

    attr_reader :report, :index, :type, :class_name, :subtype, :file, :line, :count, :memsize

    def initialize(report, index, values)
      @report = report
      @index = index
      @type, @class_name, @subtype, @file, @line, @count, @memsize = values
    end

    # Addresses of every object in the group.
    def addresses
      report._group_addresses(index).map { |a| format("0x%x", a) }
    end

    # Up to +n+ of the group's objects, as Heapdiff::Object.
    def sample(n = 1)
      rows(Arguments.count(n, "n")).map { |row| report.after.object(row) }
    end

    def each_object(&block)
      return enum_for(:each_object) { count } unless block

      rows.each { |row| yield report.after.object(row) }
    end

    def to_h
      { type: type, class_name: Printable.utf8(class_name), subtype: Printable.utf8(subtype),
        file: Printable.utf8(file), line: line,
        location: file && location, count: count, memsize: memsize }
    end

    def to_json(*args)
      to_h.to_json(*args)
    end

    # heapy's wording, so that people who know heapy read it at once.
    def to_s
      "#{report.verb} #{label} #{count} objects of size #{memsize}/#{report.total_memsize} (in bytes) at: #{location}"
    end

    def inspect
      "#<Heapdiff::Group #{label} count=#{count} memsize=#{memsize} at #{location}>"
    end

    private

    def rows(limit = nil)
      report._group_rows(index, limit)
    end
  end
end
