# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "heapdiff"

RSpec.configure do |config|
  config.disable_monkey_patching!
  config.expect_with(:rspec) { |c| c.syntax = :expect }

  # GC_STRESS=1 runs every example under GC.stress, which collects at every allocation
  # and so turns a missing mark or a Ruby value kept across an allocation into a crash.
  if ENV.fetch("GC_STRESS", "") !~ /\A(|0|false)\z/
    config.around do |example|
      previous = GC.stress
      GC.stress = true
      begin
        example.run
      ensure
        GC.stress = previous
      end
    end
  end
end
