# frozen_string_literal: true

# app.rb, plus two sites that a trend over many snapshots must tell from the leak, and
# a Recorder that snapshots the server after every N jobs (heapdiff's Sidekiq
# middleware):
#
# - a cache that fills once: one label String per key, CACHE_SIZE keys, all of them
#   made during the first N jobs; afterwards it stays as it is;
# - the last job's receipt: RECEIPT_LINES Strings that the next job replaces, so every
#   snapshot holds as many of them, but never the same ones.
#
# HEAPDIFF_TREND_DIR: where the snapshots go; HEAPDIFF_TREND_EVERY_JOBS: N.
# trend_run.rb (next to this file) runs it.

require_relative "app"
require "heapdiff/sidekiq"

module SidekiqLeak
  CACHE_SIZE = 100
  RECEIPT_LINES = 20
  LABELS = {} # rubocop:disable Style/MutableConstant -- the cache: key => label

  def self.line_of(marker)
    File.readlines(__FILE__).index { |l| l.rstrip.end_with?("# #{marker}") } + 1
  end

  TREND_FILE = File.expand_path(__FILE__)
  CACHE_LINE = line_of("cache-line")
  RECEIPT_LINE = line_of("receipt-line")

  class << self
    attr_accessor :receipt
  end
end

# PlaceOrderJob (which leaks), after using the cache and writing a receipt.
class TrendOrderJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(phase, index)
    key = index % SidekiqLeak::CACHE_SIZE
    SidekiqLeak::LABELS[key] ||= "label #{key}" # cache-line
    SidekiqLeak.receipt = Array.new(SidekiqLeak::RECEIPT_LINES) { |i| "receipt #{index}/#{i}" } # receipt-line
    PlaceOrderJob.new.perform(phase, index)
  end
end

# The in-process truth: app.rb's counts, written last (atomically), after where the
# cache and the receipts are and how large they are.
class TrendCountsJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(meta_path)
    facts = {
      "cache_location" => "#{SidekiqLeak::TREND_FILE}:#{SidekiqLeak::CACHE_LINE}",
      "cache_size" => SidekiqLeak::LABELS.size,
      "receipt_location" => "#{SidekiqLeak::TREND_FILE}:#{SidekiqLeak::RECEIPT_LINE}",
      "receipt_lines" => SidekiqLeak.receipt.size
    }
    File.write("#{meta_path}.trend", JSON.generate(facts))
    SidekiqLeak.write_meta(meta_path)
  end
end

Sidekiq.configure_server do
  Heapdiff::Sidekiq.install(dir: ENV.fetch("HEAPDIFF_TREND_DIR"),
                            every_jobs: Integer(ENV.fetch("HEAPDIFF_TREND_EVERY_JOBS")), keep: 10)
end
