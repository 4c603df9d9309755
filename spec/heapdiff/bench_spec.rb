# frozen_string_literal: true

require "stringio"
require_relative "../../bench/suite"

# `rake bench` on a machine without `bin/setup --bench`: it says what is missing and
# exits 0, before generating anything.
RSpec.describe "rake bench" do
  it "skips cleanly, naming what bin/setup --bench would install" do
    stub_const("HeapdiffBench::Suite::LIBRARIES", %w[set heapdiff_no_such_library])
    suite = HeapdiffBench::Suite.new([])
    expect(suite).not_to receive(:bench_size)
    expect { expect(suite.run).to eq(0) }.to output(
      %r{\Arake bench: skipped: (?:\S+, )?heapdiff_no_such_library not installed; run bin/setup --bench\n\z}
    ).to_stdout
  end
end
