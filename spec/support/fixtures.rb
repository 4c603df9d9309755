# frozen_string_literal: true

require "json"
require "zlib"

# Paths to the shared real dumps (../shared/fixtures beside the project, or
# HEAPDIFF_SHARED), and independent ways to count what a dump holds.
module Fixtures
  RUBIES = %w[3.1 3.3 3.4 4.0].freeze

  module_function

  def shared
    ENV.fetch("HEAPDIFF_SHARED") { File.expand_path("../../../shared", __dir__) }
  end

  def dump(ruby)
    File.join(shared, "fixtures/dumps/ruby-#{ruby}.jsonl")
  end

  def leak3(ruby, n)
    File.join(shared, "fixtures/leak3/ruby-#{ruby}/#{n}.jsonl.gz")
  end

  def read(path)
    path.end_with?(".gz") ? Zlib::GzipReader.open(path, &:read) : File.binread(path)
  end

  # Counts records by kind with Ruby's JSON parser (the lines it can parse).
  def count_records(path)
    counts = Hash.new(0)
    read(path).each_line do |line|
      next if line.strip.empty?

      type = JSON.parse(line)["type"]
      counts[%w[ROOT SHAPE].include?(type) ? type : "objects"] += 1
    rescue JSON::ParserError
      counts["unparseable"] += 1
    end
    counts
  end
end
