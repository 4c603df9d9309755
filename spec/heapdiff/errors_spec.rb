# frozen_string_literal: true

require "tmpdir"

# ParseError#path and #line are data the extension sets, not read back out of the
# message: a path that itself looks like "file:LINE:" must come back whole.
RSpec.describe Heapdiff::ParseError do
  it "carries the path and line of the first line that is no record" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "notes:12:x.json")
      # Line 2's address does not fit in 64 bits: no record.
      File.write(path, %({"address":"0x1", "type":"STRING"}\n{"address":"0x1ffffffffffffffff", "type":"STRING"}\n))
      expect { Heapdiff.load(path) }.to raise_error(described_class) { |e|
        expect([e.path, e.line]).to eq([path, 2])
        expect(e.message).to start_with("#{path}:2: not a heap dump record")
      }
    end
  end

  it "is raised by Heapdiff.redact with the same data" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "page:7:.html")
      File.write(path, "<html>\n")
      expect { Heapdiff.redact(path, File.join(dir, "out.json")) }.to raise_error(described_class) { |e|
        expect([e.path, e.line]).to eq([path, 1])
      }
    end
  end
end
