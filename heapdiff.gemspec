# frozen_string_literal: true

require_relative "lib/heapdiff/version"

Gem::Specification.new do |spec|
  spec.name = "heapdiff"
  spec.version = Heapdiff::VERSION
  spec.authors = ["heapdiff authors"]
  spec.summary = "Find memory leaks in Ruby processes: exact heap dump diffs, with a Rust core"
  spec.description = "heapdiff loads ObjectSpace.dump_all heap dumps in Rust, without holding the " \
                     "GVL, and reports the objects a process retained, grouped by allocation " \
                     "site and matched exactly across slot reuse and compaction."
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  # Only what building and loading need: Ruby code, the Rust sources and manifests, docs.
  packaged = lambda do |path|
    case path
    when %r{/target/}, %r{\Alib/.*\.(so|bundle|dll)\z} then false
    when %r{\A(lib|exe)/} then true
    when %r{\Aext/} then path.match?(/\.(rs|toml|rb)\z/) || File.basename(path) == "Cargo.lock"
    else %w[Cargo.toml Cargo.lock README.md CHANGELOG.md LICENSE].include?(path)
    end
  end
  candidates = Dir.chdir(__dir__) do
    tracked = begin
      IO.popen(%w[git ls-files -z], err: File::NULL, &:read).split("\0")
    rescue SystemCallError
      []
    end
    # Outside a git checkout (or before anything is tracked), fall back to the tree.
    tracked = Dir.glob("**/*") if tracked.empty?
    tracked.select { |f| File.file?(f) }
  end
  spec.files = candidates.select(&packaged).sort

  spec.bindir = "exe"
  spec.executables = spec.files.grep(%r{\Aexe/}) { |f| File.basename(f) }
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/heapdiff/extconf.rb"]
  # extconf.rb writes its Makefile with rb_sys's create_rust_makefile.
  spec.add_dependency "rb_sys", "~> 0.9"
  spec.metadata["rubygems_mfa_required"] = "true"
end
