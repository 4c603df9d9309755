# frozen_string_literal: true

require "heapdiff/rack"
require "logger"
require "rack"
require "rack/lint"
require "rack/mock"
require "stringio"
require "tmpdir"
require_relative "../support/processes"

# The Rack middleware in-process (Rack::MockRequest, through Rack::Lint);
# work_puma_spec.rb runs it in a Puma cluster.
RSpec.describe Heapdiff::Rack do
  before { Heapdiff::Work.reset }
  after { Heapdiff::Work.reset }

  let(:body) { ["ok\n"] }
  let(:inner) do
    response = [200, { "content-type" => "text/plain" }, body]
    ->(_env) { response }
  end

  def request(app, path, method: "GET", **env)
    ::Rack::MockRequest.new(::Rack::Lint.new(app)).request(method, path, env)
  end

  def requests
    Heapdiff::Work.counts["requests"]
  end

  describe ".route" do
    def route(path, method = "GET", **env)
      described_class.route({ "REQUEST_METHOD" => method, "SCRIPT_NAME" => "", "PATH_INFO" => path }.merge(env))
    end

    it "collapses numbers, UUIDs and hex ids to :id, and keeps words and versions" do
      expect(route("/widgets/42")).to eq("GET /widgets/:id")
      expect(route("/widgets/42.json", "PATCH")).to eq("PATCH /widgets/:id.json")
      expect(route("/orgs/7/users/550e8400-e29b-41d4-a716-446655440000/edit")).to eq("GET /orgs/:id/users/:id/edit")
      expect(route("/blobs/5f2b1c9a3e4d5f2b1c9a3e4d")).to eq("GET /blobs/:id")
      expect(route("/commits/0123abcd;raw")).to eq("GET /commits/:id;raw")
      expect(route("/api/v2/deadbeef/feed")).to eq("GET /api/v2/deadbeef/feed")
      expect(route("/widgets/42abc")).to eq("GET /widgets/42abc")
      expect(route("")).to eq("GET /")
      expect(route("/x", "BREW it")).to eq("OTHER /x")
      expect(route("/7", "SCRIPT_NAME" => "/shop")).to eq("GET /shop/:id")
    end

    it "takes Rails' controller#action when the router has set it" do
      params = { controller: "widgets", action: "show", id: "42" }
      expect(route("/widgets/42", "action_dispatch.request.path_parameters" => params)).to eq("widgets#show")
      controller = Struct.new(:action_name).new("index")
      stub_const("WidgetsController", controller.class)
      expect(route("/widgets", "action_controller.instance" => controller)).to eq("WidgetsController#index")
    end
  end

  it "counts each request under its route, and returns the app's response untouched" do
    app = described_class.new(inner)
    expect(app.call({ "REQUEST_METHOD" => "GET", "PATH_INFO" => "/widgets/1" })).to equal(inner.call({}))
    response = request(app, "/widgets/2")
    expect([response.status, response.body]).to eq([200, "ok\n"])
    request(app, "/widgets/3", method: "POST")
    expect(requests).to eq("GET /widgets/:id" => 2, "POST /widgets/:id" => 1)
  end

  it "counts the routes Rails names, read after the app (the router sets them while it runs)" do
    rails = lambda do |env|
      env["action_dispatch.request.path_parameters"] = { controller: "widgets", action: "show" }
      inner.call(env)
    end
    request(described_class.new(rails), "/widgets/9")
    expect(requests).to eq("widgets#show" => 1)
  end

  it "lets the app's exception through unchanged, and counts the request" do
    error = Class.new(StandardError)
    app = described_class.new(->(_env) { raise error, "boom" })
    expect { app.call({ "REQUEST_METHOD" => "GET", "PATH_INFO" => "/boom" }) }.to raise_error(error, "boom")
    expect(requests).to eq("GET /boom" => 1)
  end

  it "never raises into the app when counting fails" do
    allow(Heapdiff::Work).to receive(:count).and_raise(TypeError, "broken")
    response = request(described_class.new(inner), "/widgets/2")
    expect(response.status).to eq(200)
  end

  it "keeps a crawler's paths to MAX_LABELS routes" do
    app = described_class.new(inner)
    300.times { |i| request(app, "/page-#{i}") }
    expect(requests.size).to eq(Heapdiff::Work::MAX_LABELS + 1)
    expect(requests["(other)"]).to eq(300 - Heapdiff::Work::MAX_LABELS)
  end

  it "counts every request of many threads at once" do
    app = described_class.new(inner)
    threads = Array.new(8) do |t|
      Thread.new { 200.times { |i| app.call({ "REQUEST_METHOD" => "GET", "PATH_INFO" => "/t/#{t}/#{i}" }) } }
    end
    threads.each(&:join)
    expect(requests).to eq("GET /t/:id/:id" => 1600)
  end

  it "watches one served env in watch:, and lists the envs an app keeps alive by route" do
    out, status = Processes.ruby(<<~RUBY)
      require "heapdiff/rack"
      require "rack"
      require "rack/mock"
      KEPT = []
      app = ->(env) { KEPT << env if env["PATH_INFO"].start_with?("/leak"); [200, {}, ["ok"]] }
      middleware = Heapdiff::Rack.new(app, watch: 2)
      80.times do |i|
        # MockRequest closes the body, as a server does once the response is sent.
        Rack::MockRequest.new(middleware).get(i % 4 < 2 ? "/leak/\#{i}" : "/ok/\#{i}")
      end
      puts Heapdiff.survivors.transform_values { |s| [s.count, s.watched] }.inspect, KEPT.size
    RUBY
    expect(status).to be_success, out
    survivors, kept = out.lines.last(2)
    # Every second request is watched: 20 of the 40 /leak ones, all kept, and 20 of the
    # /ok ones, all gone.
    expect(Integer(kept)).to eq(40)
    expect(survivors.chomp).to eq('{"Rack env GET /leak/:id"=>[20, 20]}')
    expect { described_class.new(inner, watch: 0) }.to raise_error(ArgumentError, /watch:/)
  end

  describe "with Recorder options" do
    around { |example| Dir.mktmpdir("heapdiff-rack") { |dir| (@dir = dir) && example.run } }

    let(:log) { StringIO.new }

    it "starts the recorder in the process that serves the first request, and its snapshots carry the counts" do
      app = described_class.new(inner, dir: @dir, every: nil, logger: Logger.new(log))
      expect(app.recorder).not_to be_running
      request(app, "/widgets/1")
      expect(app.recorder).to be_running
      snapshot = app.recorder.snapshot_now
      expect(snapshot.meta["work"]).to eq("jobs" => {}, "requests" => { "GET /widgets/:id" => 1 })
      app.recorder.stop
      request(app, "/widgets/2")
      expect(app.recorder).not_to be_running # its owner stopped it
    ensure
      app&.recorder&.stop
    end

    it "refuses a wrong option when it is built, and recorder: with options" do
      expect { described_class.new(inner, dir: @dir, keep: 0) }.to raise_error(ArgumentError, /keep:/)
      recorder = Heapdiff::Recorder.new(dir: @dir)
      expect { described_class.new(inner, recorder: recorder, dir: @dir) }.to raise_error(ArgumentError, /not both/)
      expect(described_class.new(inner, recorder: recorder).recorder).to equal(recorder)
    end
  end
end
