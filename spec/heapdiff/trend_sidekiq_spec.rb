# frozen_string_literal: true

require "cgi"
require "json"
require "open3"
require "timeout"
require "tmpdir"
require_relative "../../examples/sidekiq_leak/trend_run"
require_relative "../support/chromium"

# A real Sidekiq server, 6.4 to 8.1 (examples/sidekiq_leak with trend_app.rb)
# against its own redis-server, snapshotted by heapdiff's middleware after every 100
# jobs: six snapshots. Its jobs leak SQL log lines (app.rb's leak-line), fill a 100-entry cache
# during the first 100 jobs, and replace a 20-line receipt on every job. The process
# counted what it leaked; the trend must find exactly that.
RSpec.describe "The trend of a real leaking Sidekiq server over six snapshots" do
  before(:all) do
    @tmp = Dir.mktmpdir("heapdiff-sidekiq-trend")
    @expected = SidekiqLeak::TrendRunner.new(@tmp).run
    @dir = File.join(@tmp, "snapshots")
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    @trend = Heapdiff.trend(@dir)
    @seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    @html = File.join(@tmp, "report.html")
    @cli = Open3.capture3(RbConfig.ruby, "-I#{File.expand_path("../../lib", __dir__)}",
                          File.expand_path("../../exe/heapdiff", __dir__), "report", @dir, "--html", @html,
                          "--format", "json")
  end
  after(:all) { FileUtils.rm_rf(@tmp) }

  let(:trend) { @trend }
  let(:expected) { @expected }
  let(:leaked) { expected["leak_per_snapshot"] }

  def site(location, type)
    trend.find { |s| s.location == location && s.type == type } or raise "no #{type} site at #{location}"
  end

  it "ran every job, and has six snapshots of one process" do
    expect(expected["jobs_done"]).to eq((0..5).to_h { |p| [p.to_s, 100] })
    expect(expected["jobs_failed"]).to eq({})
    expect(trend.snapshots.map { |s| File.basename(s.path) }).to eq((1..6).map { |n| "heap-000#{n}.json" })
    expect(trend.snapshots.map { |s| s.meta["pid"] }.uniq).to eq([expected["pid"]])
    expect(@seconds).to be < 30
  end

  it "ranks the leaking line first, growing by exactly what the process leaked, all of it retained" do
    top = trend.first
    expect(top).to have_attributes(rank: 1, verdict: :growing, type: "STRING", location: expected["leak_location"],
                                   counts: leaked, survived: [0] + leaked[0...-1])
    expect(leaked.each_cons(2).map { |a, b| b - a }).to all(be > 500)
    expect(trend.growing.map(&:location)).to eq([expected["leak_location"]])
    # Per hour only from a span of a minute or more (the run takes seconds).
    if trend.hours * 3600 >= Heapdiff::Trend::RATE_SPAN
      expect(top.growth_per_hour).to be_within(1e-6).of(top.growth / trend.hours)
    else
      expect(top.growth_per_hour).to be_nil
      expect(trend.warnings.grep(/growth is given per snapshot only \(per hour needs 60 s\)/).size).to eq(1)
    end
  end

  it "gathers the growing buffer into one leak under Thread.current[:sql_log], counted at each snapshot" do
    expect(trend.leaks.size).to eq(1)
    found = trend.leaks.first
    expect(found.holder_chain.first).to start_with("Thread.current[:sql_log] (fiber-local, thread ")
    expect(found.counts).to eq(leaked)
    expect(found.sites.map { |s| s.site.location }).to eq([expected["leak_location"]])
  end

  it "marks the cache that filled once as stable" do
    cache = site(expected["cache_location"], "STRING")
    expect(expected["cache_size"]).to eq(100)
    expect(cache).to have_attributes(verdict: :stable, counts: [100] * 6, survived: [0] + ([100] * 5), growth: 0)
  end

  it "tells the receipts, as many in every snapshot but never the same, as transient" do
    receipts = site(expected["receipt_location"], "STRING")
    expect(expected["receipt_lines"]).to eq(20)
    expect(receipts).to have_attributes(verdict: :transient, counts: [20] * 6, survived: [0] * 6)
    expect(site(expected["receipt_location"], "ARRAY")).to have_attributes(verdict: :transient, counts: [1] * 6)
  end

  it "names the thread-local buffer as the suspect, by its key and thread, with a path from a root" do
    suspect = trend.first.suspect
    expect(suspect.top.object.type).to eq("ARRAY")
    expect(suspect.top.count).to eq(leaked.last)
    expect(suspect.top.share).to eq(1.0)
    # Sidekiq 6 names its processor threads "processor", 7 and later "sidekiq.default/processor".
    thread = '"[\w./]*processor"'
    expect(suspect.to_s).to match(/100% held by Thread.current\[:sql_log\] \(fiber-local, thread #{thread}, Array of #{leaked.last}\)/)
    # Ruby 3.3 dumps the thread's root fiber (which holds Thread.current[]) as an
    # object of its own; 3.1 folds it into the thread.
    buffer = "Thread.current\\[:sql_log\\] ARRAY 0x\\h+ \\(#{leaked.last} refs\\)"
    expect(trend.first.path.to_s).to match(
      %r{\AROOT \w+ → .*Thread #{thread} DATA VM/thread 0x\h+ → (?:DATA fiber 0x\h+ → )?#{buffer} → \[\d+\] STRING 0x\h+\z}
    )
  end

  it "lets other threads run while it walks the snapshots, and stops on Timeout" do
    ticks = 0
    ticker = Thread.new do
      loop do
        ticks += 1
        sleep 0.01
      end
    end
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Heapdiff.trend(@dir)
    seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    ticker.kill
    expect(ticks).to be >= (seconds / 0.01 / 4).floor

    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { Timeout.timeout(0.1) { Heapdiff.trend(@dir) } }.to raise_error(Timeout::Error)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < [1.0, seconds].min
  end

  it "reports memory over time from the sidecars" do
    expect(trend).to be_timed
    expect(trend.memory.size).to eq(6)
    expect(trend.memory.map(&:rss_bytes)).to all(be > 10_000_000)
    expect(trend.memory.map(&:live_slots)).to all(be > 50_000)
    expect(trend.memory.map(&:gc_count).each_cons(2)).to all(satisfy { |a, b| b > a })
    # The dump's live objects, each counted in exactly one site.
    expect(trend.memory.map(&:objects)).to eq(trend.map(&:counts).transpose.map(&:sum))
  end

  it "writes JSON with the same figures" do
    data = JSON.parse(trend.to_json)
    expect(data).to include("timed" => true, "site_count" => trend.size, "warnings" => trend.warnings)
    expect(data["verdicts"]["growing"]).to eq(1)
    expect(data["snapshots"].map { |s| s["time"] }).to all(match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/))
    top = data["sites"].first
    expect(top).to include("rank" => 1, "verdict" => "growing", "location" => expected["leak_location"],
                           "counts" => leaked, "new" => [leaked[0]] + leaked.each_cons(2).map { |a, b| b - a },
                           "growth" => leaked.last - leaked.first)
    expect(top["suspect"]["holders"].first).to include("count" => leaked.last, "share" => 1.0)
    expect(top["path"]["steps"].last).to include("type" => "STRING", "address" => trend.first.sample.first.address)
  end

  describe "heapdiff report DIR --html" do
    let(:url) { "file://#{@html}" }

    it "keeps printing the diff of the latest three snapshots, and writes the page" do
      out, err, status = @cli
      expect(status.exitstatus).to eq(0)
      diff = JSON.parse(out)
      expect(diff["dumps"].map { |p| File.basename(p) }).to eq(%w[heap-0004.json heap-0005.json heap-0006.json])
      expect(diff["groups"].first).to include("location" => expected["leak_location"], "count" => leaked[4] - leaked[3])
      expect(err).to include("heapdiff: wrote #{@html}: trend over 6 snapshots, 1 growing site\n")
    end

    it "opens in Chromium without console errors, with the chart and the tables drawn" do
      dom, console = Chromium.dump_dom(url)
      expect(console).to eq([])
      expect(dom).to include('<body data-ready="true">')
      chart = dom[%r{<div id="chart" class="chart">(.*?)</div>}m, 1]
      expect(chart.scan(/<polyline class="(rss|objects)"/).flatten).to eq(%w[rss objects])
      expect(chart.scan(/<circle class="(?:rss|objects)-dot"/).size).to eq(12)
      expect(dom).to include("<h2>Growing sites (1)</h2>")
      # The page leads with the leak: the buffer under its thread-local, counted at each snapshot.
      expect(dom.index("<h2>Leaks (1)</h2>")).to be < dom.index("<h2>Memory over time</h2>")
      card = dom[%r{<article class="leak" id="leak-\h{12}">.*?</article>}m]
      expect(card).to include("Thread.current[:sql_log]", "#{leaked.join(" → ")} objects", CGI.escapeHTML(expected["leak_location"]))
      # Ruby 3.1's six dumps all have recovered records: one warning says so, not six.
      recovered = dom.scan(/<li>[^<]*were not valid JSON and were recovered/)
      expect(recovered.size).to eq(RUBY_VERSION < "3.2" ? 1 : 0)
      expect(recovered.first).to include("in 6 dumps") if RUBY_VERSION < "3.2"
      expect(dom[%r{<article class="site" id="site-1">.*?</article>}m]).to include(expected["leak_location"], "Suspect", "DATA VM/thread")
      sited = trend.count(&:file)
      unsited_verdicts = trend.reject(&:file).map(&:verdict).uniq.size
      expect(rows(dom, "sites-table").size).to eq([200, sited].min + unsited_verdicts)
      expect(rows(dom, "snapshots-table").size).to eq(6)
      expect(dom.scan(/<th scope="col" class="sortable-header"/).size).to eq(11 + 11)
    end

    it "draws time to scale, objects and RSS from zero, and exact figures in tooltips" do
      dom, = Chromium.dump_dom(url)
      chart = dom[%r{<div id="chart" class="chart">(.*?)</div>}m, 1]
      # The points sit where their sidecars' times put them (plot from x=70 to x=920).
      # The page gets each snapshot's seconds from the first to the millisecond (a
      # millisecond is 0.1-0.3 px on these spans), and writes positions to 0.1 px.
      times = trend.memory.map(&:time)
      seconds = times.map { |t| (t - times.first).round(3) }
      span = seconds.last
      xs = chart.scan(/<circle class="objects-dot" cx="([\d.]+)"/).flatten.map(&:to_f)
      expected_xs = seconds.map { |s| 70 + (s * 850 / span) }
      xs.zip(expected_xs).each { |x, e| expect(x).to be_within(0.051).of(e) }
      # Ticks at round times, each where its time is, labels distinct.
      ticks = chart.scan(/<text class="time" x="([\d.]+)"[^>]*>([\d.]+) s</).map { |x, v| [x.to_f, v.to_f] }
      expect(ticks.size).to be_between(3, 6)
      expect(ticks.map(&:last).uniq.size).to eq(ticks.size)
      ticks.each { |x, v| expect(x).to be_within(0.051).of(70 + (v * 850 / span)) }
      expect(chart).to include("time since the first snapshot (#{times.first.getutc.strftime("%Y-%m-%d %H:%M:%S")} UTC)")
      # Both value axes start at zero.
      expect(chart).to match(%r{>0 MB</text>}).and match(%r{>0</text>})
      first = trend.memory.first
      grouped = ->(n) { n.to_s.reverse.scan(/\d{1,3}/).join(",").reverse }
      expect(chart).to include("<title>snapshot #1, #{first.time.getutc.strftime("%H:%M:%S.%L")} UTC (+0 s)\n" \
                               "RSS #{(first.rss_bytes / 1e6).round(2)} MB (#{grouped[first.rss_bytes]} bytes)\n" \
                               "#{grouped[first.objects]} live objects in the dump</title>")
      # Sparklines and scaled sizes carry the exact figures.
      expect(dom).to include("<title>#{leaked.join(" → ")}</title>")
      top = trend.first
      expect(dom).to include("<span title=\"#{top.memsize} bytes\">#{Heapdiff::Printable.bytes(top.memsize)}</span>")
      # The sites without an allocation site are one row per verdict.
      unsited = trend.reject(&:file).map(&:verdict).uniq.size
      expect(dom.scan("<code>(no allocation site: tracing was off)</code>").size).to eq(unsited)
    end

    it "sorts a table when a header is clicked, and the other way on a second click" do
      memsizes = ->(dom) { rows(dom, "sites-table").map { |cells| cells[10].to_i } }
      ascending, = Chromium.dump_dom("#{url}#click=sites-table:10")
      expect(ascending).to include('aria-sort="ascending">Last memsize')
      expect(memsizes[ascending]).to eq(memsizes[ascending].sort)
      expect(memsizes[ascending]).not_to eq(trend.first(200).map(&:memsize))
      descending, = Chromium.dump_dom("#{url}#click=sites-table:10,sites-table:10")
      expect(memsizes[descending]).to eq(memsizes[ascending].sort.reverse)
    end

    it "takes a screenshot" do
      shot = File.expand_path("../../tmp/trend-report.png", __dir__)
      FileUtils.mkdir_p(File.dirname(shot))
      FileUtils.rm_f(shot)
      expect(Chromium.screenshot(url, shot, width: 1400, height: 1400)).to eq([])
      png = File.binread(shot)
      expect(png[0, 8]).to eq("\x89PNG\r\n\x1A\n".b)
      expect(png[16, 8].unpack("NN")).to eq([1400, 1400])
      expect(png.bytesize).to be > 50_000 # a blank page is a few kB
    end
  end

  # The data-sort values of each row of table +id+ in a DOM dump.
  def rows(dom, id)
    body = dom[%r{<table id="#{id}"[^>]*>.*?<tbody>(.*?)</tbody>}m, 1]
    body.scan(%r{<tr[^>]*>(.*?)</tr>}m).map { |(row)| row.scan(/<td data-sort="([^"]*)"/).flatten }
  end
end
