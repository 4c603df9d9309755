# frozen_string_literal: true

# A Rack app for compare_spec.rb, run by a Puma cluster behind Heapdiff::Rack, with
# two leaks. GET /shared?phase=N leaks PER_REQUEST strings (at shared-leak) in
# whichever worker serves it; so does GET /only?phase=N (at only-leak), which the spec
# has one worker serve. The body says which worker served the request. After every
# request the worker writes its own counts to COUNTS_DIR/PID.json: what each leak
# kept, per phase. The app's truth, per worker.
require "json"
require "heapdiff/rack"

use Heapdiff::Rack

PER_REQUEST = 20
SHARED = [] # rubocop:disable Style/MutableConstant -- the leak of every worker
ONLY = [] # rubocop:disable Style/MutableConstant -- the leak of one
LEAK_COUNTS = { "shared" => Hash.new(0), "only" => Hash.new(0) }.freeze
LINES = File.readlines(__FILE__).each_with_index.filter_map { |l, i| (mark = l[/# (\w+-leak)$/, 1]) && [mark, i + 1] }.to_h

def write_counts
  counts = { "pid" => Process.pid, "file" => File.expand_path(__FILE__), "lines" => LINES, "leak_counts" => LEAK_COUNTS }
  path = File.join(ENV.fetch("COUNTS_DIR"), "#{Process.pid}.json")
  File.write("#{path}.part", JSON.generate(counts))
  File.rename("#{path}.part", path)
end

run(lambda do |env|
  params = Rack::Utils.parse_query(env["QUERY_STRING"])
  phase = params["phase"]
  case env["PATH_INFO"]
  when "/shared"
    PER_REQUEST.times do |i|
      SHARED << "shared phase=#{phase} item #{i}" # shared-leak
      LEAK_COUNTS["shared"][phase] += 1
    end
  when "/only"
    PER_REQUEST.times do |i|
      ONLY << "only phase=#{phase} item #{i}" # only-leak
      LEAK_COUNTS["only"][phase] += 1
    end
  end
  write_counts
  [200, { "content-type" => "text/plain" }, ["#{Process.pid}\n"]]
end)
