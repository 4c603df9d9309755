# frozen_string_literal: true

# One line for a binstub, before the application loads:
#
#   require "heapdiff/auto"
#
# With HEAPDIFF=1 in the environment it turns on allocation tracing and starts a
# Heapdiff::Recorder configured by the HEAPDIFF_* variables (see Heapdiff::Env). With
# HEAPDIFF unset (or 0, false, no, off) it does nothing and loads nothing else: not
# heapdiff, not objspace, no thread.
unless ENV.fetch("HEAPDIFF", "").match?(/\A\s*(?:0|false|no|off)?\s*\z/i)
  require_relative "capture/env"
  Heapdiff::Env.start
end
