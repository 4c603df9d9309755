# frozen_string_literal: true

require "objspace"

RSpec.describe "Allocation tracing" do
  def traced_site(obj)
    ObjectSpace.allocation_sourcefile(obj)
  end

  around do |example|
    Heapdiff.stop_tracing!
    example.run
  ensure
    Heapdiff.stop_tracing!
  end

  it "starts with trace_allocations!, and objects then know where they were allocated" do
    expect(Heapdiff.tracing?).to be(false)
    expect(Heapdiff.trace_allocations!).to be(true)
    expect(Heapdiff.tracing?).to be(true)
    expect(traced_site(Object.new)).to eq(__FILE__)
  end

  it "does not nest: one stop_tracing! undoes any number of starts" do
    3.times { Heapdiff.trace_allocations! }
    expect(Heapdiff.stop_tracing!).to be(true)
    expect(Heapdiff.tracing?).to be(false)
  end

  it "frees the tracer's records when it stops" do
    Heapdiff.trace_allocations!
    obj = Object.new
    expect(traced_site(obj)).to eq(__FILE__)
    Heapdiff.stop_tracing!
    expect(traced_site(obj)).to be_nil
  end

  it "is not fooled by the records that tracing stopped without a clear leaves behind" do
    # Freed slots keep their records; new objects that land in them look traced.
    # Where they land depends on the heap, so make garbage until one does.
    stale = 5.times.any? do |round|
      ObjectSpace.trace_object_allocations_start
      Array.new(20_000 << round) { Object.new } # garbage at once, with records
      ObjectSpace.trace_object_allocations_stop
      GC.start
      Array.new(20_000 << round) { ObjectSpace.allocation_sourcefile(Object.new) }.any?
    end
    skip "no object landed in a slot with a stale record in this heap" unless stale
    expect(Heapdiff.tracing?).to be(false)
  ensure
    ObjectSpace.trace_object_allocations_clear
  end

  it "leaves tracing that other code started with ObjectSpace, and its records, alone" do
    ObjectSpace.trace_object_allocations_start
    begin
      obj = Object.new
      Heapdiff.trace_allocations!
      expect(Heapdiff.stop_tracing!).to be(false)
      expect(Heapdiff.tracing?).to be(true)
      expect(traced_site(obj)).to eq(__FILE__)
    ensure
      ObjectSpace.trace_object_allocations_stop
    end
    expect(Heapdiff.tracing?).to be(false)
  end
end
