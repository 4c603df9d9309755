# frozen_string_literal: true

# Generates three heap dumps of a real Ruby process for benchmarking diff tools.
#
#   ruby bench/generate.rb OUTDIR [--objects 1_000_000] [--seed 42] [--force]
#
# The process turns allocation tracing on, loads the library set of a Rails app from
# Debian's gems (ActiveSupport, ActiveRecord, ActionPack, ActionView, ActiveJob,
# ActionMailer, Railties), Sidekiq and stdlib (many classes and IMEMOs), uses
# an in-memory sqlite database through ActiveRecord, then builds a seeded,
# application-like object population (strings of many sizes, arrays, hashes,
# objects with ivars, structs, sets, times, floats, bignums, ranges, procs)
# until the heap holds at least --objects live objects. Between dumps it
# churns part of that population (freed slots get reused) and leaks a known
# number of objects. Before each dump: GC.start(full_mark: true,
# immediate_sweep: true). Each dump is checked to have at least --objects
# lines; if not, the population is topped up and the dump retaken.
#
# Writes OUTDIR/0.json, 1.json, 2.json and OUTDIR/params.json (objects, seed,
# ruby version, generator digest, line counts, leak sites and counts). If
# params.json matches and the dumps exist, nothing is regenerated.

require "digest"
require "fileutils"
require "json"
require "optparse"

module HeapdiffBench
  GENERATOR_DIGEST = Digest::SHA256.file(__FILE__).hexdigest[0, 16]
  PHASES = 3
  LEAK_FRACTION = 0.02   # of --objects, leaked per phase (in objects)
  CHURN_FRACTION = 0.05  # of the population's units, rebuilt per phase

  module_function

  def parse_args(argv)
    opts = { objects: 1_000_000, seed: 42, force: false }
    parser = OptionParser.new do |o|
      o.banner = "usage: ruby bench/generate.rb OUTDIR [--objects N] [--seed S] [--force]"
      o.on("--objects N", Integer, "live objects per dump, at least (default 1_000_000)") { |v| opts[:objects] = v }
      o.on("--seed S", Integer, "random seed (default 42)") { |v| opts[:seed] = v }
      o.on("--force", "regenerate even if up to date") { opts[:force] = true }
    end
    rest = parser.parse(argv)
    abort(parser.banner) unless rest.size == 1 && opts[:objects].positive?
    [rest[0], opts]
  end

  def params_for(opts)
    { "objects" => opts[:objects], "seed" => opts[:seed], "ruby_version" => RUBY_VERSION,
      "ruby_platform" => RUBY_PLATFORM, "generator" => GENERATOR_DIGEST }
  end

  def up_to_date?(outdir, params)
    path = File.join(outdir, "params.json")
    return false unless File.exist?(path)

    old = JSON.parse(File.read(path))
    params.all? { |k, v| old[k] == v } &&
      Array.new(PHASES) { |i| File.join(outdir, "#{i}.json") }.all? { |f| File.exist?(f) }
  rescue JSON::ParserError
    false
  end

  def count_lines(path)
    n = 0
    File.open(path, "rb") do |f|
      buf = +""
      n += buf.count("\n") while f.read(1 << 20, buf)
    end
    n
  end

  def live_objects
    c = ObjectSpace.count_objects
    c[:TOTAL] - c[:FREE]
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

outdir, opts = HeapdiffBench.parse_args(ARGV)
outdir = File.expand_path(outdir)
params = HeapdiffBench.params_for(opts)
if !opts[:force] && HeapdiffBench.up_to_date?(outdir, params)
  puts "generate: #{outdir} is up to date (objects=#{opts[:objects]} seed=#{opts[:seed]})"
  exit 0
end
FileUtils.mkdir_p(outdir)
FileUtils.rm_f(File.join(outdir, "params.json"))
started = HeapdiffBench.monotonic

# ---------------------------------------------------------------------------
# A traced process with real libraries loaded.

require "objspace"
ObjectSpace.trace_object_allocations_start

%w[
  set yaml date time bigdecimal securerandom openssl uri net/http erb logger
  active_support/all active_record rails action_controller/railtie action_view active_job
  action_mailer sidekiq sidekiq/api
].each do |lib|
  require lib
rescue LoadError => e
  warn "generate: skipping #{lib}: #{e.message}"
end
# Load every constant, as a production Rails process does (config.eager_load).
# A framework that was not installed is not there to name (bench/suite.rb refuses to
# run without them; run alone, this makes smaller, non-Rails dumps).
%i[ActiveRecord ActionController ActionView ActiveJob ActionMailer].each do |name|
  Object.const_get(name).eager_load! if Object.const_defined?(name)
rescue NameError, LoadError => e
  warn "generate: eager load skipped: #{e.message}"
end

if defined?(ActiveRecord)
  ActiveRecord::Base.logger = nil
  ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
  ActiveRecord::Schema.verbose = false
  ActiveRecord::Schema.define do
    create_table :accounts do |t|
      t.string :name
      t.string :plan
      t.integer :seats
      t.timestamps
    end
  end
  class Account < ActiveRecord::Base; end
end

# ---------------------------------------------------------------------------
# The application-like population. Each builder makes one "unit": a small
# object graph allocated at its own lines, so diffs group by file:line.

module HeapdiffBench
  Address = Struct.new(:street, :city, :zip, :country)
  Money = Struct.new(:cents, :currency)

  class User
    def initialize(rng, id)
      @id = id
      @name = "user-#{id}-#{rng.rand(1_000_000)}"
      @email = "u#{id}@example.test"
      @roles = %w[admin editor viewer guest].sample(1 + rng.rand(3), random: rng)
      @address = Address.new("#{rng.rand(999)} Main St", "City #{rng.rand(500)}", format("%05d", rng.rand(99_999)), "US")
      @settings = { "theme" => (rng.rand < 0.5 ? "dark" : "light"), "tz" => "UTC", "n" => rng.rand(100) }
      @created_at = Time.at(1_600_000_000 + rng.rand(100_000_000))
    end
  end

  class Product
    def initialize(rng, id)
      @id = id
      @sku = "SKU-#{id.to_s(36).upcase}"
      @title = "Product #{id} " + ("x" * rng.rand(10..80))
      @price = Money.new(rng.rand(100..100_000), "USD")
      @tags = Array.new(rng.rand(0..6)) { |i| "tag#{i}-#{rng.rand(50)}" }
      @weight = rng.rand * (10.0**rng.rand(-300..300)) # mostly heap Floats
      @description = "Lorem ipsum dolor sit amet " * rng.rand(1..12)
      @variants = Array.new(rng.rand(0..3)) { |i| { "size" => %w[S M L XL][i], "stock" => rng.rand(100) } }
      @rating = nil
      @flags = 0
    end
  end

  class Session
    def initialize(rng, id)
      @id = rng.bytes(16).unpack1("H*")
      @user_id = id
      @data = { "cart" => Array.new(rng.rand(0..4)) { rng.rand(10_000) }, "csrf" => [rng.bytes(18)].pack("m0") }
      @expires = Time.at(1_700_000_000 + rng.rand(3600))
      @ip = "10.#{rng.rand(256)}.#{rng.rand(256)}.#{rng.rand(256)}"
    end
  end

  class CacheEntry
    def initialize(key, value, rng)
      @key = key
      @value = value
      @hits = rng.rand(1000)
      @expires_at = rng.rand(1.0e9..2.0e9)
      @compressed = false
    end
  end

  UNICODE = %w[café naïve Zürich 東京 Ελλάδα żółć ☃].freeze

  module Builders
    module_function

    def user(rng, id)
      User.new(rng, id)
    end

    def product(rng, id)
      Product.new(rng, id)
    end

    def session(rng, id)
      Session.new(rng, id)
    end

    def log_lines(rng, id)
      Array.new(rng.rand(1..8)) do |i|
        "I, [2024-01-01T00:00:#{format("%02d", i)}] INFO -- : request #{id} completed 200 in #{rng.rand(900)}ms"
      end
    end

    def text_blob(rng, _id)
      case rng.rand(4)
      when 0 then "#{UNICODE.sample(random: rng)} #{rng.rand(1_000_000)}" # non-ASCII: no value in dumps
      when 1 then rng.bytes(rng.rand(8..64)) # binary
      when 2 then "payload:" + ("abcdefghij" * rng.rand(10..120)) # large, heap-allocated
      else "short#{rng.rand(100)}"
      end
    end

    def cache_entry(rng, id)
      CacheEntry.new("views/#{id}/#{rng.rand(100_000)}", Array.new(rng.rand(1..6)) { |i| "frag #{i} #{id}" }, rng)
    end

    def lookup_table(rng, id)
      h = {}
      rng.rand(2..30).times { |i| h["k#{id}_#{i}"] = i.even? ? "v#{i}" : [i, i * 2] }
      h
    end

    def numbers(rng, _id)
      [2**(64 + rng.rand(64)), rng.rand * 1e300, (1..rng.rand(1000)), rng.rand(1000).to_r / 7, Complex(rng.rand, 1)]
    end

    def misc(rng, id)
      [Set.new(Array.new(rng.rand(1..5)) { |i| "s#{i}-#{id}" }),
       :"dyn_sym_#{id}",
       Regexp.new("item-#{id}-\\d+"),
       ->(x) { x + id }]
    end

    def record(_rng, id)
      Account.new(name: "Account #{id}", plan: "pro", seats: id % 50) if defined?(Account)
    end

    # name => weight (units drawn in proportion)
    WEIGHTS = {
      user: 10, product: 8, session: 8, log_lines: 14, text_blob: 20, cache_entry: 12,
      lookup_table: 6, numbers: 4, misc: 4, record: 1
    }.freeze
    TABLE = WEIGHTS.flat_map { |name, w| [name] * w }.freeze

    def build(rng, id)
      public_send(TABLE[rng.rand(TABLE.size)], rng, id)
    end
  end

  # The leak: per-request events appended to a global that is never trimmed.
  # One String, one Hash and one Array per event, each on its own line.
  LEAKED = [] # rubocop:disable Style/MutableConstant -- the leak itself

  def leak(phase, count, rng)
    count.times do |i|
      line = "phase=#{phase} GET /api/items/#{i}?q=#{rng.rand(1_000_000)} 200" # leak: STRING
      event = { "phase" => phase, "n" => i, "line" => line }                 # leak: HASH
      LEAKED << [event, line]                                                # leak: ARRAY
    end
  end
  module_function :leak

  LEAK_SITES = File.readlines(__FILE__).each_with_index.filter_map do |l, i|
    type = l[/# leak: (\w+)\s*\z/, 1]
    ["#{File.expand_path(__FILE__)}:#{i + 1}", type] if type
  end.to_h
end

rng = Random.new(opts[:seed])
target = opts[:objects]
population = []
next_id = 0

grow = lambda do |goal|
  loop do
    GC.start(full_mark: true, immediate_sweep: true)
    live = HeapdiffBench.live_objects
    break if live >= goal

    # a unit averages ~8 objects; overshoot a little less than the gap
    (((goal - live) / 8) + 100).times do
      population << HeapdiffBench::Builders.build(rng, next_id)
      next_id += 1
    end
  end
end

dump = lambda do |phase|
  path = File.join(outdir, "#{phase}.json")
  loop do
    GC.start(full_mark: true, immediate_sweep: true)
    File.open("#{path}.part", "w") { |io| ObjectSpace.dump_all(output: io) }
    lines = HeapdiffBench.count_lines("#{path}.part")
    if lines >= target
      File.rename("#{path}.part", path)
      break lines
    end
    warn "generate: #{phase}.json has #{lines} lines < #{target}, topping up"
    grow.call(HeapdiffBench.live_objects + (target - lines) + 1000)
  end
end

leak_units = (target * HeapdiffBench::LEAK_FRACTION / 3).ceil # 3 objects per event
lines = []
grow.call(target + 1000)
HeapdiffBench::PHASES.times do |phase|
  t = HeapdiffBench.monotonic
  if phase.positive?
    (population.size * HeapdiffBench::CHURN_FRACTION).to_i.times do
      i = rng.rand(population.size)
      population[i] = HeapdiffBench::Builders.build(rng, next_id)
      next_id += 1
    end
    HeapdiffBench.leak(phase, leak_units, rng)
  end
  lines << dump.call(phase)
  puts format("generate: %d.json %d lines, %.1f MB (%.1f s)", phase, lines.last,
              File.size(File.join(outdir, "#{phase}.json")) / 1e6, HeapdiffBench.monotonic - t)
end

summary = params.merge(
  "lines" => lines,
  "bytes" => Array.new(HeapdiffBench::PHASES) { |i| File.size(File.join(outdir, "#{i}.json")) },
  "leak_per_phase" => { "events" => leak_units, "phases" => (1...HeapdiffBench::PHASES).to_a,
                        "sites" => HeapdiffBench::LEAK_SITES },
  "churn_fraction" => HeapdiffBench::CHURN_FRACTION
)
File.write(File.join(outdir, "params.json"), "#{JSON.pretty_generate(summary)}\n")
puts format("generate: done in %.1f s -> %s", HeapdiffBench.monotonic - started, outdir)
