# frozen_string_literal: true

require "open3"
require "tmpdir"
require "fileutils"
require_relative "support/doctest"
require_relative "support/fixtures"

# The README's examples that are marked to run (see spec/support/doctest.rb), run in
# a scratch directory that holds the leak3 dumps (`ruby-3.4/0.jsonl.gz` …; the script
# that made them counts what it leaks) and the same three as snapshots in
# `tmp/heapdiff`, with `heapdiff` and `require "heapdiff"` from this checkout.
RSpec.describe "README.md" do
  root = File.expand_path("..", __dir__)
  blocks = Doctest.blocks(File.join(root, "README.md"))

  before(:all) do
    @scratch = Dir.mktmpdir("heapdiff-readme")
    bin = File.join(@scratch, ".bin")
    FileUtils.mkdir_p(bin)
    File.write(File.join(bin, "heapdiff"), "#!/bin/sh\nexec #{RbConfig.ruby} #{root}/exe/heapdiff \"$@\"\n")
    File.chmod(0o755, File.join(bin, "heapdiff"))
    @env = { "PATH" => "#{bin}:#{ENV.fetch("PATH")}", "RUBYLIB" => File.join(root, "lib"), "HEAPDIFF" => nil }
    Fixtures::RUBIES.each do |ruby|
      FileUtils.ln_s(File.dirname(Fixtures.leak3(ruby, 0)), File.join(@scratch, "ruby-#{ruby}"))
    end
    snapshots = File.join(@scratch, "tmp/heapdiff")
    FileUtils.mkdir_p(snapshots)
    3.times { |n| FileUtils.cp(Fixtures.leak3("3.4", n), File.join(snapshots, format("heap-%04d.json.gz", n + 1))) }
    blocks.select { |b| b.kind == "file" }.each { |b| File.write(File.join(@scratch, b.name), b.text) }
  end

  after(:all) { FileUtils.rm_rf(@scratch) }

  def run_in_scratch(*command)
    Open3.capture3(@env, *command, chdir: @scratch)
  end

  it "marks its examples to run" do
    expect(blocks.count { |b| b.kind == "run" }).to be >= 5
  end

  # Without the gem in the Gemfile, `require "bundler/setup"` hides it and the
  # binstub dies with LoadError before the server boots.
  it "has the Sidekiq recipe add the gem to the Gemfile before the binstub line" do
    text = File.read(File.join(root, "README.md"))
    recipe = text[/### Recipe: find a leak in a Sidekiq server\n(.*?)\n### /m, 1]
    gemfile = recipe.index('gem "heapdiff"')
    expect(gemfile).not_to be_nil
    expect(gemfile).to be < recipe.index('require "heapdiff/auto"')
  end

  blocks.each_with_index do |block, i|
    next unless block.kind == "run"

    output = blocks[i + 1] if blocks[i + 1]&.kind == "output"
    it "runs the #{block.lang} block at README.md:#{block.line}" do
      case block.lang
      when "console"
        Doctest.transcript(block.text).each do |command, expected|
          out, err, = run_in_scratch("bash", "-c", command)
          expect(Doctest.normalize(out + err)).to match(Doctest.pattern(expected)), "$ #{command}\n#{out}#{err}"
        end
      when "ruby"
        out, err, status = run_in_scratch(RbConfig.ruby, "-e", block.text)
        expect(status).to be_success, "README.md:#{block.line} exited #{status.exitstatus}:\n#{err}"
        expect(Doctest.normalize(out)).to match(Doctest.pattern(output.text)), out if output
      else
        raise "README.md:#{block.line}: a doctest block is console or ruby, not #{block.lang.inspect}"
      end
    end
  end
end
