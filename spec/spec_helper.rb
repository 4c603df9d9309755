# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "heapdiff"

RSpec.configure do |config|
  config.disable_monkey_patching!
  config.expect_with(:rspec) { |c| c.syntax = :expect }

  # Specs that build Debian chroots (root, debootstrap, minutes): bin/matrix runs them
  # with `rspec --tag chroot`, which lifts this exclusion.
  config.filter_run_excluding :chroot

  # GC_STRESS=1 runs every example under GC.stress, which collects at every allocation
  # and so turns a missing mark or a Ruby value kept across an allocation into a crash.
  if ENV.fetch("GC_STRESS", "") !~ /\A(|0|false)\z/
    # RSpec autoloads its matchers on first use, and loading Ruby code under GC.stress
    # costs a full GC per allocation: load them all before the first example.
    config.before(:suite) do
      RSpec::Matchers::BuiltIn.constants.each { |name| RSpec::Matchers::BuiltIn.const_get(name) }
    end

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
