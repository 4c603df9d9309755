# frozen_string_literal: true

# examples/sidekiq_leak/app.rb (PlaceOrderJob leaks its SQL log lines into a
# thread-local buffer) with a second job class that leaks nothing, MailJob, for
# work_sidekiq_spec.rb. heapdiff's middleware snapshots the server after every
# HEAPDIFF_WORK_EVERY_JOBS jobs into HEAPDIFF_WORK_DIR. Each job counts its runs per
# phase; WorkCountsJob writes those counts: the app's truth.
require_relative "../../../examples/sidekiq_leak/app"
require "heapdiff/sidekiq"

module SidekiqWork
  MAIL_DONE = Hash.new(0) # phase => MailJob runs
end

# Builds a message and drops it: garbage, nothing retained, no SQL.
class MailJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(phase, index)
    Array.new(20) { |i| "mail #{index} line #{i}" }.join("\n")
    SidekiqWork::MAIL_DONE[phase] += 1
  end
end

# Writes MailJob's runs per phase to PATH.mail, then app.rb's counts (PlaceOrderJob's
# runs and leaked strings per phase) to PATH, atomically: the spec waits for PATH.
class WorkCountsJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(path)
    File.write("#{path}.mail", JSON.generate(SidekiqWork::MAIL_DONE.transform_keys(&:to_s)))
    SidekiqLeak.write_meta(path)
  end
end

Sidekiq.configure_server do
  Heapdiff::Sidekiq.install(dir: ENV.fetch("HEAPDIFF_WORK_DIR"), every_jobs: Integer(ENV.fetch("HEAPDIFF_WORK_EVERY_JOBS")),
                            keep: 10)
end
