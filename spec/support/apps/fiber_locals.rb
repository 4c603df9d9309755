# frozen_string_literal: true

# The shared case 08-fiber-locals (../shared/cases), its dumps taken by
# Heapdiff.snapshot, for names_spec.rb:
#
#   ruby -I lib fiber_locals.rb DIR
#
# Between the first two snapshots, 300 strings land in a fiber-local buffer inside the
# Enumerator ROWS's fiber and 200 in the main thread's thread variable :audit. Prints
# its own truth as JSON: the lines, the counts, the holders' addresses (ObjectSpace.dump).
require "objspace"
require "json"
require "heapdiff"

Heapdiff.trace_allocations!
Thread.current.thread_variable_set(:audit, [])

ROWS = Enumerator.new do |y|
  n = 0
  loop do
    n += 1
    (Thread.current[:row_log] ||= []) << "row-#{n}-fetched" # FIBER LINE
    y << n
  end
end
FIBER_LINE = __LINE__ - 4

def audit(i)
  Thread.current.thread_variable_get(:audit) << "audit-#{i}" # THREAD LINE
end
THREAD_LINE = __LINE__ - 2

def address(object)
  ObjectSpace.dump(object)[/"address":"(0x\h+)"/, 1]
end

dir = ARGV[0]
10.times { ROWS.next }
snapshots = [Heapdiff.snapshot(dir: dir)]
300.times { ROWS.next }
200.times { |i| audit(i) }
snapshots << Heapdiff.snapshot(dir: dir)
snapshots << Heapdiff.snapshot(dir: dir)

puts JSON.generate(fiber_line: FIBER_LINE, thread_line: THREAD_LINE, fiber_rows: 300, audit_entries: 200,
                   rows: address(ROWS), audit: address(Thread.current.thread_variable_get(:audit)),
                   dumps: snapshots.map(&:path))
