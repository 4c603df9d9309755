# frozen_string_literal: true

# One leak of each kind a names sidecar or the dump can name, for names_spec.rb:
#
#   ruby -I lib named_leaks.rb DIR [fork]
#
# takes three snapshots with Heapdiff.snapshot (fork: true with "fork"), and between
# the first two makes COUNT objects at each leak's line. It prints, as JSON, its own
# truth: for each leak, the line, how many it made and the address of the object that
# holds them (read with ObjectSpace.dump, never from heapdiff's output).
require "objspace"
require "json"
require "heapdiff"

COUNT = 40
Heapdiff.trace_allocations!
$VERBOSE = nil # "finalizer references object to be finalized"

module Registry
  ENTRIES = [] # rubocop:disable Style/MutableConstant -- the leak under test
end

class Sessions
  @cache = []
  class << self
    attr_reader :cache
  end
end

class Settings
  def remember(key, value)
    define_singleton_method(key) { value }
  end
end
SETTINGS = Settings.new

class Image
  def initialize(name)
    @name = name
    ObjectSpace.define_finalizer(self, proc { @name.size }) # captures self
  end
end

$audit_log = [] # rubocop:disable Style/GlobalVars -- the leak under test
lines = {}
queue = Queue.new
jobs = Queue.new
worker = Thread.new do
  Thread.current.name = "worker"
  while (n = jobs.pop)
    (Thread.current[:buffer] ||= []) << "job #{n} logged" # THREAD LOCAL
    queue << n
  end
end
lines[:thread_local] = __LINE__ - 4

def address(object)
  ObjectSpace.dump(object)[/"address":"(0x\h+)"/, 1]
end

def add_exit(n)
  s = "at exit #{n}"
  at_exit { s.size }
end

# Each leak's line is where its objects are made.
def leak(lines)
  here = __LINE__
  COUNT.times do |i|
    Registry::ENTRIES << "entry #{i}"
    $audit_log << "audit #{i}" # rubocop:disable Style/GlobalVars -- the leak under test
    Sessions.cache << "session #{i}"
    key = :"key_#{i}" # (the symbol table holds its string)
    SETTINGS.remember(key, "setting #{i}")
    Image.new("image #{i}")
    add_exit(i)
  end
  lines.merge!(constant: here + 2, global: here + 3, class_ivar: here + 4, singleton: here + 6, finalizer: here + 7,
               at_exit: method(:add_exit).source_location.last + 1)
end

fork = ARGV[1] == "fork"
dir = ARGV[0]
jobs << 0
queue.pop # the worker's buffer exists before the first snapshot
snapshots = [Heapdiff.snapshot(dir: dir, fork: fork).wait]
leak(lines)
COUNT.times { |i| jobs << (i + 1) }
COUNT.times { queue.pop }
snapshots << Heapdiff.snapshot(dir: dir, fork: fork).wait
snapshots << Heapdiff.snapshot(dir: dir, fork: fork).wait

holders = {
  constant: address(Registry::ENTRIES), global: address($audit_log), # rubocop:disable Style/GlobalVars
  class_ivar: address(Sessions.cache),
  singleton: address(SETTINGS.singleton_class), settings: address(SETTINGS),
  thread_local: address(worker[:buffer]), worker: address(worker)
}
puts JSON.generate(count: COUNT, lines: lines, holders: holders, dumps: snapshots.map(&:path),
                   ruby: RUBY_VERSION)
jobs << nil
worker.join
