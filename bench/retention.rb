# frozen_string_literal: true

# Times the retention analyses on one ~1M-object dump from bench/generate.rb:
#
#   ruby -Ilib bench/retention.rb [DUMP]      (default: bench/out/2.json)
#
# Prints load time, the first path query (which builds the breadth-first tree from
# the roots), later path queries, the reverse graph (retainers) and the dominator tree
# (retained sizes), and checks the targets: a path query after load under 50 ms, the
# dominator tree faster than the load. A benchmark, not a test: it always exits 0.

require "heapdiff"

dump = ARGV.fetch(0, File.expand_path("out/2.json", __dir__))
abort "no dump at #{dump}: run ruby bench/diff.rb first (it generates bench/out)" unless File.exist?(dump)

def clock
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  yield
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
end

heap = nil
load_s = clock { heap = Heapdiff.load(dump) }
rng = Random.new(42)
targets = Array.new(1001) { heap.object(rng.rand(heap.size)) }
first_s = clock { heap.path_to_root(targets.first) }
next_s = clock { targets.drop(1).each { |o| heap.path_to_root(o) } } / 1000
retainers_s = clock { heap.retainers(targets.first) }
dominators_s = clock { heap.retained_size(targets.first) }

puts format("dump: %s, %.1f MB, %d objects", File.basename(dump), File.size(dump) / 1e6, heap.size)
puts format("%-40s %9.1f ms", "load", load_s * 1e3)
puts format("%-40s %9.1f ms", "first path query (builds the BFS tree)", first_s * 1e3)
puts format("%-40s %9.3f ms", "later path queries (mean of 1000)", next_s * 1e3)
puts format("%-40s %9.1f ms", "first retainers (builds the reverse)", retainers_s * 1e3)
puts format("%-40s %9.1f ms", "dominator tree + retained sizes", dominators_s * 1e3)
puts
puts "#{first_s < 0.05 ? 'PASS' : 'MISS'} path query after load #{format('%.1f', first_s * 1e3)} ms (target < 50 ms)"
puts "#{dominators_s < load_s ? 'PASS' : 'MISS'} dominators #{format('%.0f', dominators_s * 1e3)} ms vs load #{format('%.0f', load_s * 1e3)} ms (target: less than the load)"
