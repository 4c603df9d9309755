# frozen_string_literal: true

require "rspec/expectations"
require_relative "leak_check"

module Heapdiff
  # RSpec support: `expect { code }.not_to leak`, with LeakCheck's options:
  #
  #   require "heapdiff/rspec"
  #   expect { cache.fetch(key) }.not_to leak(iterations: 50, only: "app")
  module RSpec
    # The block matcher. Negated, it passes when no allocation site fails LeakCheck's
    # rule (by default: objects retained in each of two windows of iterations); the
    # failure message states the rule and names the sites, their exact counts and where
    # they are held. Composable: `.and`/`.or`, and RSpec::Matchers.define_negated_matcher.
    class LeakMatcher
      include ::RSpec::Matchers::Composable

      def initialize(**options)
        @check = LeakCheck.new(**options)
      end

      def supports_block_expectations?
        true
      end

      def supports_value_expectations?
        false
      end

      def matches?(block)
        @result = @check.run(&block)
        @result.leaked?
      end

      def does_not_match?(block)
        !matches?(block)
      end

      def failure_message
        "expected the block to leak (#{@check.threshold_text}), but no allocation site retained that much"
      end

      def failure_message_when_negated
        @result.message
      end

      def description
        "leak memory (#{@check.threshold_text})"
      end

      # The last run's LeakCheck::Result (its report, its leaks).
      attr_reader :result
    end

    # Included into every example group.
    module Matchers
      def leak(**options)
        LeakMatcher.new(**options)
      end
      alias leak_memory leak
    end
  end
end

::RSpec.configure { |config| config.include(Heapdiff::RSpec::Matchers) } if defined?(::RSpec.configure)
