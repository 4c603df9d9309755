# frozen_string_literal: true

require "rbconfig"

module Heapdiff
  # Names the gem a source file belongs to, from its path alone (the dump holds no
  # more): "rspec-core" for ".../gems/rspec-core-3.12.0/lib/...", "ruby stdlib" for
  # Ruby's own library, "app" for files under the application's root or given by a
  # relative path, nil otherwise.
  class GemAttribution
    STDLIB = "ruby stdlib"
    APP = "app"

    # NAME-VERSION directories, as RubyGems, Bundler and Debian's rubygems-integration
    # lay them out (a platform may follow the version: nokogiri-1.15.4-x86_64-linux),
    # and NAME-REVISION, a gem Bundler checked out from git (bundler/gems/NAME-<the
    # commit's first 12 hex digits>, which need not begin with a digit). Captures the
    # name. Leak.normalize_path keeps what follows "/gems/" with it.
    GEM_DIR = %r{/gems/([^/]+?)-(?:\d[^/-]*(?:-[^/]+)?|\h{12})/}
    # Debian installs some packaged gems' files straight into vendor_ruby, where only
    # the first path component is left to name them (vendor_ruby/rake/task.rb).
    VENDOR_RUBY = %r{/vendor_ruby/(?:\d+\.\d+\.\d+/)?([^/]+?)(?:\.rb|\.so)?(?:/|\z)}

    attr_reader :app_root, :stdlib_dirs

    # @param app_root [String, nil] files under it are "app"
    # @param stdlib_dirs [Array<String>, nil] files under them are "ruby stdlib" (default: this Ruby's)
    def initialize(app_root: Dir.pwd, stdlib_dirs: nil)
      @app_root = app_root && "#{File.expand_path(app_root).chomp("/")}/"
      @stdlib_dirs = (stdlib_dirs || RbConfig::CONFIG.values_at("rubylibdir", "rubyarchdir"))
                     .compact.map { |d| "#{d.chomp("/")}/" }
      @cache = {}
    end

    # The attribution for this process's directory and Ruby.
    #
    # @return [GemAttribution]
    def self.default
      @default ||= new
    end

    # #name_for with the default attribution.
    #
    # @param path [String, nil]
    # @return [String, nil]
    def self.name_for(path)
      default.name_for(path)
    end

    # Paths Ruby records as written, relative to the working directory of the dumped
    # process: `ruby app.rb` gives "app.rb", `require "./lib/x"` "./lib/x.rb". Gems,
    # Ruby's library and require_relative always give absolute paths, so a relative
    # one is the application's own. Not "(eval …)", "(irb)", "-e" or "<internal:…>".
    RELATIVE = %r{\A(?:\.{1,2}/|[^/(<-])}

    # The gem name, "ruby stdlib", "app", or nil when the path says nothing.
    #
    # @param path [String, nil] a file name from the dump
    # @return [String, nil]
    def name_for(path)
      return nil if path.nil? || path.empty?

      @cache.fetch(path) { @cache[path] = attribute(path) }
    end

    private

    # Compares bytes: paths in a dump, the app root and Ruby's own directories need not
    # be valid UTF-8, nor in one encoding (a non-ASCII directory under LANG=C).
    def attribute(path)
      path = path.b
      if (m = GEM_DIR.match(path) || VENDOR_RUBY.match(path)) then m[1].force_encoding(Encoding::UTF_8).scrub
      elsif path.start_with?("<internal:") || stdlib_dirs.any? { |d| path.start_with?(d.b) } then STDLIB
      elsif (app_root && path.start_with?(app_root.b)) || RELATIVE.match?(path) then APP
      end
    end
  end
end
