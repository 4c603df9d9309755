# frozen_string_literal: true

# A Sidekiq app for sidekiq_once_spec.rb, loaded with `sidekiq -r`: its jobs append
# their jid to RUNS_FILE, one line each, once their work is done: the app's own count
# of how often each job ran. With HEAPDIFF_SLOW_SNAPSHOT=SECONDS, each of heapdiff's
# snapshots first touches SNAPSHOT_STARTED and sleeps that long: a long snapshot,
# the same on any machine.
require "sidekiq"

RUNS_FILE = ENV.fetch("RUNS_FILE")

# Does its work and says so.
class RunOnceJob
  include Sidekiq::Job
  sidekiq_options queue: "default", retry: false

  def perform(index)
    work = Array.new(1000) { |i| "job #{index} item #{i}" }
    File.open(RUNS_FILE, "a") { |f| f.write("#{jid} #{work.size}\n") }
  end
end

if (slow = ENV.fetch("HEAPDIFF_SLOW_SNAPSHOT", nil))
  require "heapdiff"
  started = ENV.fetch("SNAPSHOT_STARTED")
  Heapdiff.singleton_class.prepend(Module.new do
    def snapshot(...)
      File.write(ENV.fetch("SNAPSHOT_STARTED"), Thread.current.name.to_s)
      sleep Float(ENV.fetch("HEAPDIFF_SLOW_SNAPSHOT"))
      super
    end
  end)
  Sidekiq.logger.info("slow snapshots: #{slow} s, marker #{started}")
end
