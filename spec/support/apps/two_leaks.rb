# frozen_string_literal: true

# A program with two unrelated leaks, for verify_spec.rb: jobs that each leak
# SESSIONS_PER_JOB session strings (SESSIONS, at the line marked session-leak) and
# EVENTS_PER_JOB event hashes with their keys (EVENTS, at event-leak). With FIXED=1 the session leak
# is fixed; the lines stay where they are, so that the event leak keeps its site.
#
# ruby two_leaks.rb DIR COUNTS JOBS… : a Heapdiff::Recorder in DIR takes a snapshot,
# then after each phase of JOBS jobs another (Heapdiff::Work counts each job); the
# program appends what it leaked and the jobs it ran in each phase to COUNTS (one JSON
# line per phase, written out rather than kept, which would be a third growing site):
# its truth.
require "heapdiff"
require "json"

FIXED = ENV["FIXED"] == "1"
# SESSIONS_PER_JOB=N in the environment: a partial fix (fewer) or a worse leak (more).
SESSIONS_PER_JOB = Integer(ENV.fetch("SESSIONS_PER_JOB", "3"))
EVENTS_PER_JOB = 2
SESSIONS = [] # rubocop:disable Style/MutableConstant -- the first leak
EVENTS = {} # rubocop:disable Style/MutableConstant -- the second
LINES = File.readlines(__FILE__).each_with_index.filter_map { |l, i| (mark = l[/# (\w+-leak)$/, 1]) && [mark, i + 1] }.to_h

def run_job(id, leaked)
  SESSIONS_PER_JOB.times do |i|
    next if FIXED

    SESSIONS << "session #{id}.#{i}" # session-leak
    leaked["sessions"] += 1
  end
  EVENTS_PER_JOB.times do |i|
    EVENTS["event #{id}.#{i}"] = { job: id } # event-leak
    # Two objects: the Hash, and the interned copy of its key that Hash#[]= keeps (a
    # key no other String has: "1.0" could be interned already, and cost nothing).
    leaked["events"] += 2
  end
  Heapdiff::Work.count(:jobs, "ImportJob")
end

dir, counts, *jobs = ARGV
# Exact counts: every object allocated from here on has its site.
Heapdiff.trace_allocations!
recorder = Heapdiff::Recorder.new(dir: dir, every: nil)
File.write(counts, "#{JSON.generate("file" => File.expand_path(__FILE__), "lines" => LINES)}\n")
id = 0
recorder.snapshot_now
jobs.map(&:to_i).each do |n|
  leaked = Hash.new(0)
  n.times { run_job(id += 1, leaked) }
  File.write(counts, "#{JSON.generate("jobs" => n, "leaked" => leaked)}\n", mode: "a")
  recorder.snapshot_now
end
