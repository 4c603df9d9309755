# frozen_string_literal: true

# Durations, for specs that compare an interrupted call with the measured full one.
module Clock
  module_function

  # Seconds the block took (monotonic clock).
  def elapsed
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  end
end
