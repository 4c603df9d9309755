# frozen_string_literal: true

# Reads the examples of a Markdown file that are marked to be run (spec/readme_spec.rb
# runs them). A fenced block after an HTML comment marker is one:
#
#   <!-- doctest -->              ```console: each "$ command" line runs in bash, and
#                                 the lines up to the next one are its expected output
#                                 (stdout and stderr); ```ruby: the code runs and must
#                                 exit 0
#   <!-- doctest: output -->      the expected stdout of the ruby block before it
#   <!-- doctest: file NAME -->   the block is written to NAME before anything runs
#
# In expected output a line "..." stands for any lines, and addresses, durations,
# sizes in KB/MB/GB and clock times are placeholders: they differ from run to run.
module Doctest
  Block = Struct.new(:kind, :name, :lang, :text, :line)

  MARKER = /\A\s*<!-- doctest(?::\s*(\w+)(?:\s+(\S+))?)?\s*-->\s*\z/
  FENCE = /\A(\s*)```(\w*)\s*\z/

  # What differs between two runs of the same command.
  PLACEHOLDERS = {
    /0x\h+/ => "0x…",
    /\b\d+(?:\.\d+)? (?:KB|MB|GB)\b/ => "N MB",
    /\b\d+(?:\.\d+)? s\b/ => "N s",
    /\b\d\d:\d\d:\d\d(?:\.\d+)?\b/ => "HH:MM:SS"
  }.freeze

  module_function

  # The marked blocks of the file at +path+, in order: [Block]. Raises for a marker
  # that no fence follows (a typo would silently drop an example).
  def blocks(path)
    lines = File.readlines(path)
    lines.each_index.filter_map do |i|
      marker = lines[i].match(MARKER) or next
      fence = lines[i + 1]&.match(FENCE) or raise "#{path}:#{i + 1}: a doctest marker without a fence after it"
      body = lines[(i + 2)..].take_while { |l| l.strip != "```" }.map { |l| l.delete_prefix(fence[1]) }
      Block.new(marker[1] || "run", marker[2], fence[2], body.join, i + 2)
    end
  end

  def normalize(text)
    PLACEHOLDERS.reduce(text) { |t, (pattern, placeholder)| t.gsub(pattern, placeholder) }
  end

  # A Regexp that matches normalized output as +expected+ describes it.
  def pattern(expected)
    body = normalize(expected).lines.map do |line|
      line.strip == "..." ? "(?:[^\\n]*\\n)*?" : "#{Regexp.escape(line.chomp)}\\n"
    end
    /\A#{body.join}\z/
  end

  # [[command, expected output]] of a console block.
  def transcript(text)
    text.lines.slice_before { |l| l.start_with?("$ ") }.map do |command, *output|
      [command.delete_prefix("$ ").chomp, output.join]
    end
  end
end
