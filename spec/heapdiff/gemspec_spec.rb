# frozen_string_literal: true

# What a user of the gem gets besides the code.
RSpec.describe "heapdiff.gemspec" do
  let(:spec) { Gem::Specification.load(File.expand_path("../../heapdiff.gemspec", __dir__)) }

  it "packages the README and the CHANGELOG" do
    expect(spec.files).to include("README.md", "CHANGELOG.md")
  end
end
