# frozen_string_literal: true

require "json"
require "open3"
require "rubygems/package"
require "tmpdir"
require_relative "support/fixtures"

# The precompiled gem where there is no Rust: built by `rake gem:precompiled` (the 3.3
# library in the trixie chroot), installed in a trixie chroot that has Ruby and nothing
# else (bin/chroot --bare), and run there on real Ruby 3.3 dumps. Needs root and
# debootstrap, so plain `rspec` skips it; bin/matrix runs it (`rspec --tag chroot`).
RSpec.describe "The precompiled x86_64-linux gem", :chroot do
  # What leak3.rb kept between its first and third dump, as it counts it
  # (../shared/fixtures/README.md): 1000 of each.
  leaked = [["leak3.rb:28", "OBJECT", 1000], ["leak3.rb:27", "STRING", 1000], ["leak3.rb:17", "STRING", 1000]]

  before(:all) do
    out, status = Open3.capture2e("rake", "gem:precompiled", chdir: root)
    raise "rake gem:precompiled failed:\n#{out}" unless status.success?

    @gem = out.lines.last.strip
  end

  def root = File.expand_path("..", __dir__)

  # Runs +script+ with sh in a Ruby-only trixie chroot, the gem on its stdin.
  # Returns [stdout, stderr, exit status].
  def in_bare_trixie(script)
    out, err, status = Open3.capture3("#{root}/bin/chroot", "--bare", "trixie", "--",
                                      "sh", "-c", script, stdin_data: File.binread(@gem), binmode: true)
    [out, err, status.exitstatus]
  end

  def leak_groups(json)
    JSON.parse(json)["groups"].map { |g| [g["location"], g["type"], g["count"]] }
  end

  it "is named for its platform and holds a library for Ruby 3.1 and 3.3, no sources" do
    expect(File.basename(@gem)).to eq("heapdiff-#{Heapdiff::VERSION}-x86_64-linux.gem")
    spec = Gem::Package.new(@gem).spec
    expect(spec.files).to include("lib/heapdiff/3.1/heapdiff.so", "lib/heapdiff/3.3/heapdiff.so")
    expect(spec.files.grep(%r{\Aext/})).to eq([])
    expect(spec.extensions).to eq([])
    expect(spec.dependencies).to eq([])
  end

  it "installs and diffs Ruby 3.3 dumps in a trixie that has no cargo and no libclang" do
    dumps = (0..2).map { |n| Fixtures.leak3("3.3", n).sub(Fixtures.shared, "/hd/shared") }
    out, err, status = in_bare_trixie(<<~SH)
      set -e
      for tool in cargo rustc clang; do
        if command -v "$tool"; then echo "this chroot has $tool" >&2; exit 3; fi
      done
      if ls -d /root/.cargo /usr/lib/*/libclang* /usr/lib/llvm* 2>/dev/null; then
        echo "this chroot has a Rust toolchain or libclang" >&2; exit 3
      fi
      gems=$(mktemp -d)
      trap 'rm -rf "$gems"' EXIT
      cat >"$gems/heapdiff.gem"
      gem install --local --no-document --install-dir "$gems" "$gems/heapdiff.gem" >&2
      export GEM_HOME="$gems" GEM_PATH="$gems"
      ruby -e 'require "heapdiff"; warn $LOADED_FEATURES.grep(/heapdiff\\.so/)'
      "$gems/bin/heapdiff" diff #{dumps.join(" ")} --format json
    SH
    expect(status).to eq(0), err
    expect(err).to match(%r{/lib/heapdiff/3\.3/heapdiff\.so$})
    expect(leak_groups(out)).to include(*leaked)
  end

  it "installs and diffs Ruby 3.1 dumps on this host without building" do
    Dir.mktmpdir("heapdiff-precompiled") do |gems|
      env = { "GEM_HOME" => gems, "GEM_PATH" => gems, "PATH" => "/usr/bin:/bin", "RUBYLIB" => nil, "RUBYOPT" => nil }
      out, status = Open3.capture2e(env, "gem", "install", "--local", "--no-document", "--install-dir", gems, @gem)
      expect(status).to be_success, out
      expect(Dir.glob("#{gems}/gems/*/ext")).to eq([])

      loaded, status = Open3.capture2e(env, "ruby", "-e", 'require "heapdiff"; puts $LOADED_FEATURES.grep(/heapdiff\.so/)',
                                       chdir: gems)
      expect(status).to be_success, loaded
      expect(loaded).to start_with(gems).and end_with("/lib/heapdiff/3.1/heapdiff.so\n")

      dumps = (0..2).map { |n| Fixtures.leak3("3.1", n) }
      out, err, status = Open3.capture3(env, "#{gems}/bin/heapdiff", "diff", *dumps, "--format", "json", chdir: gems)
      expect(status).to be_success, err
      expect(leak_groups(out)).to include(*leaked)
    end
  end
end
