# frozen_string_literal: true

# The fit rule alone, on growth and counts written out here. The real processes are in
# work_sidekiq_spec.rb and work_puma_spec.rb.
RSpec.describe Heapdiff::Trend::WorkFit do
  def jobs(**by_class)
    { "jobs" => by_class.transform_keys(&:to_s), "requests" => {} }
  end

  # Per interval: [leaking WidgetJob runs, clean MailJob runs].
  let(:mix) { [[6, 24], [24, 6], [0, 30], [15, 15], [30, 0], [9, 21]] }
  let(:work) { mix.map { |widget, mail| jobs(WidgetJob: widget, MailJob: mail) } }

  it "names the label whose counts the growth follows, with its rate and how many intervals fit" do
    driver = described_class.fit(mix.map { |widget, _| 2 * widget }, work, site_label: "STRING")
    expect(driver).to have_attributes(status: :fitted, kind: "jobs", label: "WidgetJob", rate: 2.0, fits: 6,
                                      intervals: 6, runner_up: nil)
    expect(driver.to_s).to eq("+2.0 STRING per WidgetJob run (fits 6 of 6 intervals)")
    expect(driver.to_h).to include(status: :fitted, label: "WidgetJob", rate: 2.0, fits: 6, intervals: 6,
                                   text: driver.to_s)
  end

  it "tolerates one interval off by more than the tolerance, and counts it as not fitting" do
    growth = mix.map { |widget, _| 2 * widget }
    growth[3] += 20 # an interval where something else grew the site too
    driver = described_class.fit(growth, work, site_label: "STRING")
    expect(driver).to have_attributes(status: :fitted, label: "WidgetJob", rate: 2.0, fits: 5, intervals: 6, needed: 5)
  end

  it "says when no single label explains the growth (two labels leak)" do
    growth = mix.map { |widget, mail| (2 * widget) + (5 * mail) }
    driver = described_class.fit(growth, work, site_label: "STRING")
    expect(driver.status).to eq(:unexplained)
    expect(driver.fits).to be < 5
    expect(driver.to_s).to start_with("no single job class or route explains the growth (closest: ")
  end

  it "says when two labels whose counts always go together fit as well as each other" do
    together = mix.map { |widget, _| jobs(WidgetJob: widget, AuditJob: widget) }
    driver = described_class.fit(mix.map { |widget, _| 2 * widget }, together, site_label: "STRING")
    expect(driver.status).to eq(:ambiguous)
    expect([driver.label, driver.runner_up.label].sort).to eq(%w[AuditJob WidgetJob])
    expect(driver.to_s).to match(/\A(Audit|Widget)Job and (Audit|Widget)Job both fit 6 of 6 intervals: cannot tell/)
  end

  it "does not claim a label whose counts never vary: steady growth would fit them as well" do
    steady = Array.new(6) { jobs(WidgetJob: 100) }
    driver = described_class.fit([200] * 6, steady, site_label: "STRING")
    expect(driver).to have_attributes(status: :steady, label: "WidgetJob", rate: 2.0, fits: 6)
    expect(driver.to_s).to include("cannot tell")
  end

  it "says when there are too few intervals to tell" do
    driver = described_class.fit([12, 48], work.first(2), site_label: "STRING")
    expect(driver).to have_attributes(status: :too_few_intervals, intervals: 2, needed: 3, label: nil)
    expect(driver.to_s).to eq("too few intervals to tell (2 with work counts, 3 needed)")
  end

  it "counts only the intervals whose sidecar has counts" do
    driver = described_class.fit([12, 48, 0, 30], [nil, nil, *work.values_at(2, 3)], site_label: "STRING")
    expect(driver).to have_attributes(status: :too_few_intervals, intervals: 2)
  end

  it "says when nothing was counted" do
    driver = described_class.fit([10, 10, 10], [nil, jobs, jobs], site_label: "STRING")
    expect(driver.status).to eq(:no_work)
    expect(driver.to_s).to start_with("no jobs or requests counted")
  end

  it "tells routes from jobs in the text" do
    work = [3, 9, 1, 6].map { |n| { "jobs" => {}, "requests" => { "GET /widgets/:id" => n, "GET /" => 10 - n } } }
    driver = described_class.fit([150, 450, 50, 300], work, site_label: "STRING")
    expect(driver.to_s).to eq("+50.0 STRING per GET /widgets/:id request (fits 4 of 4 intervals)")
  end

  it "keeps only well-formed counts of a sidecar" do
    damaged = { "jobs" => { "A" => 2, "B" => "3", "C" => -1, 4 => 1 }, "requests" => [1], 5 => {} }
    expect(described_class.normalize(damaged)).to eq("jobs" => { "A" => 2 })
    expect(described_class.normalize("no")).to be_nil
    driver = described_class.fit([2, 4, 6], [damaged, { "jobs" => { "A" => 4 } }, { "jobs" => { "A" => 6 } }])
    expect(driver).to have_attributes(status: :fitted, label: "A", rate: 1.0)
  end

  it "refuses growth and work that do not match" do
    expect { described_class.fit([1, 2], [nil]) }.to raise_error(ArgumentError, /2 growths for 1 intervals/)
    expect { described_class.fit(nil, []) }.to raise_error(TypeError, /growth must be/)
    expect { described_class.fit([1], [1]) }.to raise_error(TypeError, /work must be/)
  end
end
