# frozen_string_literal: true

require "English"
require "fileutils"
require "rubygems/package"
require "tmpdir"

# heapdiff-VERSION-x86_64-linux.gem: the extension built in advance for each Ruby that
# Debian packages, at lib/heapdiff/MAJOR.MINOR/heapdiff.so, which lib/heapdiff/native.rb
# loads by RUBY_VERSION. Installs with no Rust toolchain and no libclang.
module PrecompiledGem
  PLATFORM = "x86_64-linux"
  # The Rubies built for, besides the host's: Debian suites whose chroot builds one
  # (bin/chroot; needs root and debootstrap).
  SUITES = %w[trixie].freeze

  module_function

  # The host's build: [ruby "MAJOR.MINOR", path of the library].
  def host_build
    [RUBY_VERSION[/\A\d+\.\d+/], File.expand_path("../lib/heapdiff/heapdiff.so", __dir__)]
  end

  # Builds in the suite's chroot. The command's stdout is the Ruby's "MAJOR.MINOR" on
  # one line, then the library (rake's output goes to stderr). Returns [minor, bytes].
  def chroot_build(suite)
    script = 'rake compile >&2 && ruby -e "puts RUBY_VERSION[/\\A\\d+\\.\\d+/]" && cat lib/heapdiff/heapdiff.so'
    out = IO.popen([File.expand_path("../bin/chroot", __dir__), suite, "--", "sh", "-c", script], binmode: true, &:read)
    raise "bin/chroot #{suite}: building the extension failed (#{$CHILD_STATUS})" unless $CHILD_STATUS.success?

    minor, bytes = out.split("\n", 2)
    [minor, bytes]
  end

  # Writes the gem into +dir+ from the gemspec's Ruby files and +libraries+, a hash of
  # "MAJOR.MINOR" => library bytes. Returns the gem's path.
  def build(gemspec, libraries, dir)
    spec = gemspec.dup
    spec.platform = Gem::Platform.new(PLATFORM)
    spec.extensions = []
    spec.dependencies.clear # rb_sys is for building from source
    # From the oldest Ruby built for to before the minor after the newest (3.1 and 3.3:
    # ">= 3.1", "< 3.4.dev"). 3.2 has no library here: it loads heapdiff/heapdiff.so,
    # which does not exist, and raises LoadError.
    minors = libraries.keys.map { |minor| Gem::Version.new(minor) }.sort
    spec.required_ruby_version = [">= #{minors.first}", "< #{Gem::Version.new("#{minors.last}.0").bump}.dev"]
    sos = libraries.keys.map { |minor| "lib/heapdiff/#{minor}/heapdiff.so" }
    spec.files = spec.files.grep_v(%r{\Aext/|\ACargo\.}) + sos

    Dir.mktmpdir("heapdiff-precompiled") do |stage|
      spec.files.each do |file|
        target = File.join(stage, file)
        FileUtils.mkdir_p(File.dirname(target))
        FileUtils.cp(File.expand_path("../#{file}", __dir__), target) unless sos.include?(file)
      end
      libraries.each { |minor, bytes| File.binwrite(File.join(stage, "lib/heapdiff/#{minor}/heapdiff.so"), bytes) }
      Dir.chdir(stage) do
        FileUtils.mkdir_p(dir)
        FileUtils.mv(Gem::Package.build(spec), dir)
      end
    end
    File.join(dir, spec.file_name)
  end
end

namespace :gem do
  desc "Build pkg/heapdiff-VERSION-x86_64-linux.gem, prebuilt for Ruby 3.1 (host) and 3.3 (trixie chroot)"
  task precompiled: :compile do
    minor, path = PrecompiledGem.host_build
    libraries = { minor => File.binread(path) }
    PrecompiledGem::SUITES.each do |suite|
      suite_minor, bytes = PrecompiledGem.chroot_build(suite)
      libraries[suite_minor] = bytes
    end
    puts PrecompiledGem.build(GEMSPEC, libraries, File.expand_path("../pkg", __dir__))
  end
end
