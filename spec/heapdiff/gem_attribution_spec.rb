# frozen_string_literal: true

require "heapdiff/analysis/gem_attribution"

RSpec.describe Heapdiff::GemAttribution do
  subject(:attribution) { described_class.new(app_root: "/srv/app") }

  {
    "/home/u/.gem/ruby/3.1.0/gems/rack-2.2.22/lib/rack.rb" => "rack",
    "/srv/app/vendor/bundle/ruby/3.1.0/gems/rspec-core-3.12.0/lib/rspec/core.rb" => "rspec-core",
    "/srv/app/vendor/bundle/ruby/3.1.0/gems/nokogiri-1.15.4-x86_64-linux/lib/nokogiri.rb" => "nokogiri",
    "/usr/share/rubygems-integration/all/gems/sidekiq-6.4.1/lib/sidekiq/api.rb" => "sidekiq",
    "/usr/lib/x86_64-linux-gnu/rubygems-integration/3.1.0/gems/json-2.6.1/lib/json.rb" => "json",
    "/usr/lib/ruby/gems/3.1.0/gems/minitest-5.15.0/lib/minitest.rb" => "minitest",
    # Bundler's git checkouts: NAME-<12 hex digits of the commit>, digit first or not.
    "/srv/app/vendor/bundle/ruby/3.1.0/bundler/gems/rails-abcdef012345/activerecord/lib/active_record.rb" => "rails",
    "/srv/app/vendor/bundle/ruby/3.1.0/bundler/gems/my-gem-0123456789ab/lib/my/gem.rb" => "my-gem",
    "/usr/lib/ruby/vendor_ruby/rake/task.rb" => "rake",
    "/usr/lib/ruby/vendor_ruby/sqlite3.rb" => "sqlite3",
    "#{RbConfig::CONFIG["rubylibdir"]}/set.rb" => "ruby stdlib",
    "<internal:kernel>" => "ruby stdlib",
    "/srv/app/app/models/user.rb" => "app",
    "/srv/application/x.rb" => nil,
    "/tmp/script.rb" => nil,
    # `ruby app.rb` and `require "./lib/x"` record paths relative to the process's
    # working directory: the application's.
    "app.rb" => "app",
    "./lib/x.rb" => "app",
    "../shared/y.rb" => "app",
    "(eval at /srv/app/x.rb:3)" => nil,
    "(irb)" => nil,
    "-e" => nil,
    "" => nil,
    nil => nil
  }.each do |path, name|
    it "names #{path.inspect} #{name.inspect}" do
      expect(attribution.name_for(path)).to eq(name)
    end
  end

  it "defaults the application's root to the working directory" do
    expect(described_class.new.name_for(File.join(Dir.pwd, "lib/x.rb"))).to eq("app")
  end
end
