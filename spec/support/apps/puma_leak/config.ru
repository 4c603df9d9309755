# frozen_string_literal: true

# A Rack app for puma_cluster_spec.rb, run by a Puma cluster. GET /leak?phase=N&n=K
# leaks K strings (at the line marked leak-line) and counts them per phase; after
# every request the worker writes its own counts to COUNTS_DIR/PID.json: the app's
# truth, per worker.
require "json"

LEAKED = [] # rubocop:disable Style/MutableConstant -- the leak
LEAK_COUNTS = Hash.new(0)
LEAK_FILE = File.expand_path(__FILE__)
LEAK_LINE = File.readlines(__FILE__).index { |l| l.rstrip.end_with?("# leak-line") } + 1

def write_counts
  counts = {
    "pid" => Process.pid, "leak_file" => LEAK_FILE, "leak_line" => LEAK_LINE,
    "leak_counts" => LEAK_COUNTS.transform_keys(&:to_s),
    "recorder_threads" => Thread.list.count { |t| t.name == "heapdiff-recorder" && t.alive? }
  }
  path = File.join(ENV.fetch("COUNTS_DIR"), "#{Process.pid}.json")
  File.write("#{path}.part", JSON.generate(counts))
  File.rename("#{path}.part", path)
end

run(lambda do |env|
  params = Rack::Utils.parse_query(env["QUERY_STRING"])
  if env["PATH_INFO"] == "/leak"
    phase = Integer(params.fetch("phase"))
    Integer(params.fetch("n")).times do |i|
      LEAKED << "phase=#{phase} item #{i}" # leak-line
      LEAK_COUNTS[phase] += 1
    end
  end
  write_counts
  [200, { "content-type" => "text/plain" }, ["#{Process.pid}\n"]]
end)
