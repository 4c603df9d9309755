# frozen_string_literal: true

# The rb_sys gem writes the Makefile: it builds the crate with cargo (release profile),
# installs the library as heapdiff/heapdiff.so, and under RubyGems removes cargo's
# output after installing, so that an installed gem does not keep it. `rake compile`
# points RB_SYS_CARGO_TARGET_DIR at the checkout's shared target dir (see Rakefile).
require "mkmf"
require "rb_sys/mkmf"

create_rust_makefile("heapdiff/heapdiff") do |r|
  # Exactly the dependency versions of Cargo.lock.
  r.extra_cargo_args = ["--locked"]
end
