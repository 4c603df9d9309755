# frozen_string_literal: true

require_relative "../support/fixtures"

# The small records the extension hands to Ruby (a group, a trend site, a report's
# totals, a heap's summary) are Hashes: each value travels with its name, so the Rust
# and the Ruby side cannot disagree on an order. Each record must have exactly the
# names its Ruby reader fetches, and the public reader must return the named value.
RSpec.describe "Records across the Rust/Ruby boundary", :gc_stress do
  let(:dumps) { (0..2).map { |n| Fixtures.leak3("3.1", n) } }

  it "Report#_group is a Hash with Group's fields" do
    report = Heapdiff.diff(*dumps)
    fields = report._group(0)
    expect(fields.keys).to eq(%i[type class_name subtype file line count memsize uncertain])
    group = report.groups.first
    fields.each { |name, value| expect(group.public_send(name)).to eq(value) }
  end

  it "Report#_summary is a Hash named as Report's readers" do
    report = Heapdiff.diff(*dumps)
    totals = report._summary
    expect(totals.keys).to eq(%i[total_count total_memsize filtered_count freed_count unreachable_count
                                 uncertain_count])
    totals.each { |name, value| expect(report.public_send(name)).to eq(value) }
  end

  it "Trend#_site is a Hash with Trend::Site's fields" do
    trend = Heapdiff.trend(dumps)
    fields = trend._site(0)
    expect(fields.keys).to eq(%i[type class_name subtype file line counts memsizes survived verdict])
    site = trend.sites.first
    fields.except(:verdict).each { |name, value| expect(site.public_send(name)).to eq(value) }
    expect(site.verdict).to eq(fields[:verdict].to_sym)
  end

  it "Heap#_summary is a Hash of the totals and tables Summary reads" do
    heap = Heapdiff.load(dumps.last)
    fields = heap._summary
    expect(fields.keys).to eq(%i[objects memsize types classes locations files duplicates])
    summary = Heapdiff::Summary.new(heap)
    expect([summary.object_count, summary.memsize]).to eq(fields.values_at(:objects, :memsize))
    expect(fields.values_at(:types, :classes, :locations, :files, :duplicates)).to all(be_an(Array))
  end
end
