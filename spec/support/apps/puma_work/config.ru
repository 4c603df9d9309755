# frozen_string_literal: true

# A Rack app for work_puma_spec.rb, run by a Puma cluster behind Heapdiff::Rack.
# GET /leak/ID?phase=N leaks PER_REQUEST strings (at the line marked leak-line); GET
# /clean/ID?phase=N makes as many and drops them. After every request the worker
# writes its own counts to COUNTS_DIR/PID.json: requests per handler and strings
# leaked, per phase. The app's truth, per worker.
require "json"
require "heapdiff/rack"

use Heapdiff::Rack

PER_REQUEST = 50
LEAKED = [] # rubocop:disable Style/MutableConstant -- the leak
LEAK_COUNTS = Hash.new(0)
REQUESTS = Hash.new { |h, phase| h[phase] = Hash.new(0) }
LEAK_FILE = File.expand_path(__FILE__)
LEAK_LINE = File.readlines(__FILE__).index { |l| l.rstrip.end_with?("# leak-line") } + 1

def write_counts
  counts = { "pid" => Process.pid, "leak_file" => LEAK_FILE, "leak_line" => LEAK_LINE, "per_request" => PER_REQUEST,
             "leak_counts" => LEAK_COUNTS, "requests" => REQUESTS }
  path = File.join(ENV.fetch("COUNTS_DIR"), "#{Process.pid}.json")
  File.write("#{path}.part", JSON.generate(counts))
  File.rename("#{path}.part", path)
end

run(lambda do |env|
  phase = Rack::Utils.parse_query(env["QUERY_STRING"])["phase"]
  case env["PATH_INFO"]
  when %r{\A/leak/\d+\z}
    PER_REQUEST.times do |i|
      LEAKED << "phase=#{phase} item #{i}" # leak-line
      LEAK_COUNTS[phase] += 1
    end
    REQUESTS[phase]["leak"] += 1
  when %r{\A/clean/\d+\z}
    Array.new(PER_REQUEST) { |i| "phase=#{phase} item #{i}" }
    REQUESTS[phase]["clean"] += 1
  end
  write_counts
  [200, { "content-type" => "text/plain" }, ["#{Process.pid}\n"]]
end)
