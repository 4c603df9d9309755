# frozen_string_literal: true

# What `expect { … }.not_to leak` costs on top of the block: times the matcher around
# an empty block and a 1 ms block, with LIVE extra live objects in the process.
#
#   ruby -Ilib bench/matcher_overhead.rb            # LIVE=100000 for a bigger heap
require "rspec/expectations"
require "heapdiff/rspec"

include RSpec::Matchers # rubocop:disable Style/MixinUsage -- a script, not a library
include Heapdiff::RSpec::Matchers # rubocop:disable Style/MixinUsage

KEEP = Array.new(Integer(ENV.fetch("LIVE", "0"))) { |i| "s#{i}" }
clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
GC.start
counts = ObjectSpace.count_objects
puts "live objects: #{counts[:TOTAL] - counts[:FREE]}"
[[0, "empty block"], [1, "1 ms block"]].each do |ms, name|
  times = Array.new(5) do
    started = clock.call
    expect { sleep(ms / 1000.0) if ms.positive? }.not_to leak
    clock.call - started
  end.sort
  block = 23 * ms / 1000.0 # warmup 2 + iterations 20 + 1
  puts format("%s: median %.3f s in all, the block alone %.3f s, overhead %.3f s", name, times[2], block, times[2] - block)
end
