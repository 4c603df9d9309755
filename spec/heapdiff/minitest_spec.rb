# frozen_string_literal: true

require "tmpdir"
require "heapdiff/minitest"

RSpec.describe "The minitest assertion" do
  # Runs one test method of a minitest class in this process; its failures.
  def run_test(&)
    klass = Class.new(Minitest::Test) { define_method(:test_it, &) }
    klass.new("test_it").run.failures
  end

  it "fails for a leaky block, naming the site and the exact count" do
    kept = []
    line = __LINE__ + 1
    failures = run_test { assert_no_leak(iterations: 12) { kept << ("leaked" * 2) } }
    expect(failures.size).to eq(1)
    expect(failures.first.message).to include("12 STRING (").and include("at #{__FILE__}:#{line}")
  end

  it "passes for a lazy cache and for code that retains nothing" do
    cache = {}
    failures = run_test do
      assert_no_leak { cache[:key] ||= "computed once" * 2 }
      assert_no_leak { Array.new(50) { |i| i.to_s * 3 } }
    end
    expect(failures).to be_empty
  end

  it "takes the leak check's options and a message" do
    kept = []
    failures = run_test { assert_no_leak("the cache", iterations: 4, max: 3) { kept << ("x" * 2) } }
    expect(failures.first.message).to start_with("the cache.\n").and include("more than max: 3 objects")
    expect(run_test { assert_no_leak(iterations: 4, max: 4) { kept << ("x" * 2) } }).to be_empty
  end

  it "takes baseline:: a leak the baseline knows passes" do
    holder = Module.new
    Object.const_set(:MinitestBaselineHolder, holder) unless Object.const_defined?(:MinitestBaselineHolder)
    MinitestBaselineHolder.const_set(:KEPT, []) unless MinitestBaselineHolder.const_defined?(:KEPT)
    keep = -> { MinitestBaselineHolder::KEPT << ("kept" * 2) }
    Dir.mktmpdir("heapdiff-baseline") do |dir|
      path = File.join(dir, "heapdiff_baseline.json")
      expect(run_test { assert_no_leak(iterations: 6, &keep) }.size).to eq(1)
      result = Heapdiff::LeakCheck.new(iterations: 6).run(&keep)
      expect(result.leaks.map(&:count)).to eq([6])
      Heapdiff::Baseline.write(path, result.report.leaks)
      expect(run_test { assert_no_leak(iterations: 6, baseline: path, &keep) }).to be_empty
    end
  end
end
