# frozen_string_literal: true

require "minitest"
require_relative "leak_check"

module Heapdiff
  # minitest support: `assert_no_leak { code }`, with LeakCheck's options:
  #
  #   require "heapdiff/minitest"
  #   assert_no_leak(iterations: 50, ignore: "ruby stdlib") { cache.fetch(key) }
  module Minitest
    # Included into Minitest::Test.
    module Assertions
      # Fails when an allocation site retains objects in proportion to the iterations;
      # returns the LeakCheck::Result.
      def assert_no_leak(message = nil, **options, &)
        result = LeakCheck.new(**options).run(&)
        assert(!result.leaked?, message ? "#{message}.\n#{result.message}" : result.message)
        result
      end
    end
  end
end

Minitest::Test.include(Heapdiff::Minitest::Assertions)
