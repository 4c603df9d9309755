# frozen_string_literal: true

# Loads the compiled extension: a per-Ruby-version copy first (precompiled gems ship one
# per Ruby), else the one built for this Ruby. `require` rather than `require_relative`
# so that an installed gem's library in sitearchdir is found too.
begin
  require "heapdiff/#{RUBY_VERSION[/\d+\.\d+/]}/heapdiff"
rescue LoadError
  require "heapdiff/heapdiff"
end
