# frozen_string_literal: true

# Loads the compiled extension: a per-Ruby-version copy first (precompiled gems ship one
# per Ruby, beside this file), else the one built for this Ruby. `require` rather than
# `require_relative` so that an installed gem's library in sitearchdir is found too.
# The per-version copy is looked for on disk rather than tried with `require`: a
# failed require searches every installed gem first, a fixed cost of every `heapdiff`
# command (7 ms on this project's machine).
versioned = "heapdiff/#{RUBY_VERSION[/\d+\.\d+/]}/heapdiff"
if File.exist?(File.join(__dir__, "..", "#{versioned}.#{RbConfig::CONFIG["DLEXT"]}"))
  require versioned
else
  require "heapdiff/heapdiff"
end
