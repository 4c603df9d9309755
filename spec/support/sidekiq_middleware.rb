# frozen_string_literal: true

require "sidekiq/version"

# Sidekiq 7 removed Sidekiq.server_middleware, which Heapdiff::Sidekiq.install calls.
# Registering the middleware on Sidekiq 7 and 8 is done on branch `servers` (issue 12,
# item 3); until that is merged, the specs that need it on Sidekiq >= 7 (trixie, sid)
# are marked with this reason, and run on Sidekiq 6 (the host) as before.
module SidekiqMiddleware
  MISSING_ON_THIS_SIDEKIQ =
    if Gem::Version.new(Sidekiq::VERSION) >= Gem::Version.new("7")
      "Sidekiq #{Sidekiq::VERSION} has no Sidekiq.server_middleware: fixed on branch servers (issue 12, item 3)"
    end
end
