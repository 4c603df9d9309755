# frozen_string_literal: true

require "json"
require "net/http"
require "open3"
require "tmpdir"
require_relative "../support/processes"

# rbtrace, from outside a running Puma server (single mode, Debian's puma and
# ruby-rbtrace) that loaded rbtrace and heapdiff in config/puma.rb: the README's
# command writes a complete snapshot, and the server goes on serving. The app
# counted the strings it leaked; the snapshot holds exactly those.
RSpec.describe "A snapshot taken with rbtrace from outside a running server" do
  app = File.expand_path("../support/apps/puma_leak/config.ru", __dir__)
  lib = File.expand_path("../../lib", __dir__)
  rbtrace = ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "rbtrace") }.find { |p| File.executable?(p) }

  before(:all) do
    skip "rbtrace is not installed (Debian's ruby-rbtrace; bin/setup installs it)" unless rbtrace

    @tmp = Dir.mktmpdir("heapdiff-rbtrace")
    counts = File.join(@tmp, "counts")
    Dir.mkdir(counts)
    port = Processes.free_port
    config = File.join(@tmp, "puma.rb")
    File.write(config, <<~RUBY)
      require "rbtrace"
      require "heapdiff"
      threads 1, 1
      bind "tcp://127.0.0.1:#{port}"
      rackup #{app.dump}
      environment "production"
    RUBY
    log = File.join(@tmp, "puma.log")
    env = { "COUNTS_DIR" => counts, "RUBYOPT" => nil, "BUNDLE_GEMFILE" => nil }
    puma = %w[/usr/bin/puma /usr/local/bin/puma].find { |p| File.file?(p) } || Gem.bin_path("puma", "puma")
    @server = Process.spawn(env, RbConfig.ruby, "-I", lib, puma, "-C", config, chdir: @tmp, in: File::NULL,
                                                                               out: log, err: %i[child out], pgroup: true)
    begin
      Processes.wait_for("the server", timeout: 60) { Processes.http_get(port, "/") }
      3.times { Processes.http_get(port, "/leak?phase=1&n=100") }
      @rbtrace_out, @rbtrace_status = Open3.capture2e(rbtrace, "-p", @server.to_s, "-e", "Heapdiff.snapshot(fork: true)")
      @dir = File.join(@tmp, "tmp", "heapdiff")
      Processes.wait_for("the snapshot", timeout: 60) { Heapdiff::Snapshot.list(@dir).first&.complete? }
      @snapshot = Heapdiff::Snapshot.list(@dir).first
      @after = Processes.http_get(port, "/")
      @counts = JSON.parse(File.read(File.join(counts, "#{@server}.json")))
    rescue StandardError
      warn File.read(log)
      raise
    ensure
      Process.kill("TERM", -@server)
      Process.wait(@server)
    end
  end
  after(:all) { FileUtils.rm_rf(@tmp) if @tmp }

  it "writes a complete snapshot of the server, which goes on serving" do
    expect(@rbtrace_status).to be_success, @rbtrace_out
    expect(@rbtrace_out).to include(">> Heapdiff.snapshot(fork: true)")
    expect(@snapshot.meta).to include("pid" => @server, "forked" => true)
    expect(File.stat(@snapshot.path).mode & 0o777).to eq(0o600)
    expect(@after).to be_a(Net::HTTPOK)
  end

  it "holds exactly the strings the server counted" do
    leaked = @counts["leak_counts"]["1"]
    expect(leaked).to eq(300)
    heap = Heapdiff.load(@snapshot.path)
    in_dump = heap.each.count { |o| o.type == "STRING" && o.value.to_s.start_with?("phase=1 item ") }
    expect(in_dump).to eq(leaked)
  end
end
