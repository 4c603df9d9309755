# frozen_string_literal: true

# A small Sidekiq 6.4 + ActiveRecord (sqlite3) application with the memory leak
# from heapdiff's story: an "sql.active_record" subscriber appends a String for
# every query to a thread-local buffer that nothing ever clears.
#
# Loaded by the Sidekiq server, with heapdiff's lib on the load path:
#
#   REDIS_URL=redis://127.0.0.1:PORT/0 HEAPDIFF_LEAK_DB=/tmp/x/leak.sqlite3 \
#     ruby -I /abs/path/to/heapdiff/lib /usr/bin/sidekiq -r /abs/path/to/app.rb -c 1 -q default
#
# run.rb (next to this file) does all of that, takes three snapshots with
# Heapdiff.snapshot (DumpJob) and writes expected.json. Each leaked String is allocated on the one line marked
# "leak-line" below and starts with "phase=N " (N = the job's phase), so the
# exact number of leaked strings per phase is known (LEAK_COUNTS).

# As in the story's binstub: allocation tracing from boot on. Sidekiq itself is
# already loaded by the CLI at this point (unless a binstub with heapdiff/auto
# turned tracing on earlier); everything loaded below is traced.
require "heapdiff"
Heapdiff.trace_allocations!

require "json"
require "logger"
require "sidekiq"
require "active_record"

module SidekiqLeak
  DB_PATH = ENV.fetch("HEAPDIFF_LEAK_DB") { File.join(Dir.pwd, "sidekiq_leak.sqlite3") }

  # Line number of the leaking allocation, found from its marker comment so that
  # editing this file cannot make expected.json lie.
  LEAK_FILE = File.expand_path(__FILE__)
  LEAK_LINE = File.readlines(__FILE__).index { |l| l.rstrip.end_with?("# leak-line") } + 1

  # Integer-keyed counters: updating them allocates nothing.
  LEAK_COUNTS = Hash.new(0) # phase => strings appended to a thread-local buffer
  JOBS_DONE = Hash.new(0)   # phase => jobs that completed
  JOBS_FAILED = Hash.new(0) # phase => jobs that raised

  # The in-process truth, written atomically to +path+ as JSON: leaked strings per
  # phase, jobs per phase, and the leak site.
  def self.write_meta(path)
    meta = {
      "pid" => Process.pid,
      "ruby_version" => RUBY_VERSION,
      "leak_file" => LEAK_FILE,
      "leak_line" => LEAK_LINE,
      "leak_counts" => LEAK_COUNTS.transform_keys(&:to_s), "leak_bytes" => LEAK_BYTES.transform_keys(&:to_s),
      "jobs_done" => JOBS_DONE.transform_keys(&:to_s),
      "jobs_failed" => JOBS_FAILED.transform_keys(&:to_s)
    }
    File.write("#{path}.part", JSON.generate(meta))
    File.rename("#{path}.part", path)
  end
end

ActiveRecord::Base.logger = nil
ActiveRecord::Base.establish_connection(
  adapter: "sqlite3",
  database: SidekiqLeak::DB_PATH,
  pool: 5,
  timeout: 5000
)

# Schema set-up runs in the main thread, before the leaky subscriber exists.
ActiveRecord::Base.connection.tap do |c|
  c.execute("PRAGMA journal_mode = WAL")
  c.create_table(:customers, force: true) do |t|
    t.string :name, null: false
    t.string :email, null: false
    t.timestamps
  end
  c.create_table(:orders, force: true) do |t|
    t.references :customer, null: false, index: true
    t.integer :phase, null: false
    t.integer :total_cents, null: false, default: 0
    t.string :state, null: false, default: "new"
    t.timestamps
  end
  c.add_index :orders, %i[phase state]
end
ActiveRecord::Base.connection_pool.release_connection

class Customer < ActiveRecord::Base
  has_many :orders
end

class Order < ActiveRecord::Base
  belongs_to :customer
end

# The leak. In the story this is an SQL-log subscriber whose buffer only the
# web request hook clears; in Sidekiq jobs nothing clears it. Thread.current[]
# is fiber-local, so the buffer hangs off the processor thread's root fiber.
ActiveSupport::Notifications.subscribe("sql.active_record") do |_name, _start, _finish, _id, payload|
  phase = Thread.current[:heapdiff_phase]
  buffer = (Thread.current[:sql_log] ||= [])
  buffer << "phase=#{phase || "none"} #{payload[:sql]}#{SidekiqLeak.trace}" # leak-line
  SidekiqLeak.leaked(phase, buffer.last)
end

module SidekiqLeak
  # HEAPDIFF_LEAK_TRACE=1: each line also keeps the backtrace of its query, as
  # query-trace loggers do to tell where a query comes from: kilobytes a line, so
  # that the leak moves RSS (work_sidekiq_spec.rb). Made here, not on the leak line:
  # the backtrace's own strings are garbage.
  TRACE = ENV["HEAPDIFF_LEAK_TRACE"] == "1"
  LEAK_BYTES = Hash.new(0) # phase => bytes of the leaked strings (ObjectSpace.memsize_of)

  def self.trace
    TRACE ? "\n#{caller(2).join("\n")}" : ""
  end

  # Counts a leaked line: one more string, and its bytes as Ruby counts them.
  def self.leaked(phase, line)
    LEAK_COUNTS[phase] += 1
    LEAK_BYTES[phase] += ObjectSpace.memsize_of(line)
  end
end

# A job doing ordinary ActiveRecord work: a few reads, an insert, an update.
class PlaceOrderJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(phase, index)
    # Speed only: no fsync per commit. Goes to the raw sqlite3 handle, so it is
    # not an instrumented query (the same on every job, on whichever connection).
    ActiveRecord::Base.connection.raw_connection.execute("PRAGMA synchronous = OFF")
    Thread.current[:heapdiff_phase] = phase
    customer = Customer.find_or_create_by!(email: "customer#{index % 17}@example.test") do |c|
      c.name = "Customer #{index % 17}"
    end
    order = customer.orders.create!(phase: phase, total_cents: 100 + (index * 7))
    open_orders = Order.where(phase: phase, state: "new").count
    order.update!(state: "paid", total_cents: order.total_cents + open_orders)
    SidekiqLeak::JOBS_DONE[phase] += 1
  rescue StandardError
    SidekiqLeak::JOBS_FAILED[phase] += 1
    raise
  ensure
    Thread.current[:heapdiff_phase] = nil
  end
end

# Takes a heap snapshot of this (live) server process with Heapdiff.snapshot, then
# writes the in-process truth. With concurrency 1 and one FIFO queue it runs after
# every job pushed before it.
class DumpJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(dump_path, meta_path)
    Heapdiff.snapshot(dump_path)
    SidekiqLeak.write_meta(meta_path)
  end
end

# Writes the in-process truth only: for runs whose snapshots heapdiff takes by
# itself (the Sidekiq middleware of heapdiff/sidekiq, a Recorder).
class CountsJob
  include Sidekiq::Worker
  sidekiq_options queue: "default", retry: false

  def perform(meta_path)
    SidekiqLeak.write_meta(meta_path)
  end
end
