# frozen_string_literal: true

module Heapdiff
  VERSION = "0.1.0"
end
