# frozen_string_literal: true

# A Sidekiq app for sidekiq_watch_spec.rb, loaded with `sidekiq -r`: LeakyJob keeps
# every instance of itself in a class-level registry (callbacks registered and never
# run), CleanJob keeps nothing. heapdiff's middleware watches every finished job
# (Heapdiff::Sidekiq.install(watch: true)) and snapshots the server after every
# HEAPDIFF_WATCH_EVERY_JOBS jobs into HEAPDIFF_WATCH_DIR. Each job counts its runs;
# WatchCountsJob writes those counts: the app's truth.
require "json"
require "sidekiq"
require "heapdiff/sidekiq"

# Integer counters: updating them allocates nothing.
module SidekiqWatch
  RUNS = Hash.new(0) # job class name => runs

  # Writes the runs per class and the registry's size to +path+, atomically.
  def self.write_counts(path)
    File.write("#{path}.part", JSON.generate("pid" => Process.pid, "runs" => RUNS, "registry" => LeakyJob::REGISTRY.size))
    File.rename("#{path}.part", path)
  end
end

# An order's work, the same in both job classes below; counts its runs per class.
class OrderJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(index)
    @order = "order #{index}"
    SidekiqWatch::RUNS[self.class.name] += 1
  end
end

# Keeps nothing.
class CleanJob < OrderJob; end

# Registers itself for a callback that never comes: its instances outlive it.
class LeakyJob < OrderJob
  REGISTRY = [] # rubocop:disable Style/MutableConstant -- the leak

  def perform(index)
    super
    REGISTRY << self
  end
end

# Writes the counts (SidekiqWatch.write_counts) to PATH.
class WatchCountsJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(path)
    SidekiqWatch.write_counts(path)
  end
end

Sidekiq.configure_server do
  # Every finished job watched (watch_every: 1); no snapshot of the survivors' own
  # (watch_check_every beyond the run): the per-job snapshots record them.
  Heapdiff::Sidekiq.install(dir: ENV.fetch("HEAPDIFF_WATCH_DIR"), every_jobs: Integer(ENV.fetch("HEAPDIFF_WATCH_EVERY_JOBS")),
                            keep: 10, watch: true, watch_every: 1, watch_check_every: 1_000_000)
end
