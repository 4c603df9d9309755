# frozen_string_literal: true

require "json"
require_relative "processes"

# Memory of a child process, from /proc/self/status (Linux): measured in a fresh
# process, so that neither the rest of the suite nor GC timing in it blur the figures.
module Memory
  # Ruby source that defines rss_mb and peak_mb (VmRSS, VmHWM) in the child.
  PROBES = <<~RUBY
    def status_mb(key) = File.read("/proc/self/status")[/^\#{key}:\\s*(\\d+) kB/, 1].to_i / 1024.0
    def rss_mb = status_mb("VmRSS")
    def peak_mb = status_mb("VmHWM")
  RUBY

  # glibc gives threads arenas of their own (up to 8 per core) and keeps the free
  # memory at the top of each, which even malloc_trim cannot return: after loads on
  # worker threads, RSS holds tens to a hundred and more megabytes that are free (the
  # next load reuses them), and wanders with which thread got which arena. With one
  # arena RSS is a measure of what is live, which a leak check needs.
  ONE_ARENA = { "MALLOC_ARENA_MAX" => "1" }.freeze

  module_function

  # Runs +code+ (which ends by printing one JSON document) in a child with heapdiff
  # loaded and the probes defined; returns the parsed JSON.
  def child(code, *args, env: {})
    out, status = Processes.ruby("require 'heapdiff'; require 'json'\n#{PROBES}\n#{code}", *args, env: env)
    raise "child failed (#{status.inspect}):\n#{out}" unless status.success?

    JSON.parse(out.lines.last)
  end
end
