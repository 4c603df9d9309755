# frozen_string_literal: true

# The Rust side on its own. Only heapdiff-core has tests: the binding crate is a
# cdylib whose test harness would have to link libruby.
namespace :cargo do
  desc "Run the Rust core's tests (release profile, shares the build cache with compile)"
  task :test do
    sh "cargo", "test", "--locked", "--release", "-p", "heapdiff-core"
  end

  desc "Run clippy on the whole workspace, warnings as errors"
  task :clippy do
    sh "cargo", "clippy", "--locked", "--workspace", "--all-targets", "--", "-D", "warnings"
  end

  desc "Format the Rust code (FMT_CHECK=1 only checks)"
  task :fmt do
    sh "cargo", "fmt", "--all", *("--check" if ENV["FMT_CHECK"])
  end
end
