# frozen_string_literal: true

require "open3"
require "tmpdir"

# Opens pages in a real headless Chromium (Debian's chromium, installed by bin/setup):
# the DOM after scripts ran, the console messages, a screenshot. Each call uses a
# fresh profile and no network services.
module Chromium
  FLAGS = %w[
    --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
    --disable-sync --no-first-run --hide-scrollbars --enable-logging=stderr --v=0
    --virtual-time-budget=5000
  ].freeze
  TIMEOUT = 60

  module_function

  def path
    %w[chromium chromium-browser google-chrome].each do |name|
      found = ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |dir| File.join(dir, name) }
                 .find { |file| File.executable?(file) }
      return found if found
    end
    raise "no chromium on PATH: bin/setup installs Debian's chromium package"
  end

  # Loads +url+; returns [stdout, console messages (the "CONSOLE" log lines)].
  def run(url, *flags)
    Dir.mktmpdir("heapdiff-chromium") do |profile|
      out, err, status = Open3.capture3("timeout", TIMEOUT.to_s, path, *FLAGS, "--user-data-dir=#{profile}", *flags, url)
      raise "chromium failed (#{status}): #{err.lines.last(5).join}" unless status.success?

      [out, err.lines.grep(/:CONSOLE/)]
    end
  end

  # The DOM once the page's scripts ran, and the console messages.
  def dump_dom(url)
    run(url, "--dump-dom")
  end

  # Writes a PNG of the page at +width+ x +height+ pixels; returns the console messages.
  def screenshot(url, file, width: 1400, height: 1400)
    run(url, "--screenshot=#{file}", "--window-size=#{width},#{height}").last
  end
end
