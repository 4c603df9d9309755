# frozen_string_literal: true

# A worker process for rbtrace_spec.rb whose main thread runs Ruby all the time (a
# job loop polling for work, as a queue consumer does), with rbtrace and heapdiff
# loaded. It keeps LEAK strings "phase=1 item N" and writes its count to COUNTS_DIR/PID.json,
# then prints its pid on stdout.
require "json"
require "rbtrace"
require "heapdiff"

LEAKED = Array.new(Integer(ENV.fetch("LEAK"))) { |i| "phase=1 item #{i}" }
counts = { "pid" => Process.pid, "leak_counts" => { "1" => LEAKED.size } }
File.write(File.join(ENV.fetch("COUNTS_DIR"), "#{Process.pid}.json"), JSON.generate(counts))
$stdout.puts(Process.pid)
$stdout.flush
loop { sleep 0.05 }
