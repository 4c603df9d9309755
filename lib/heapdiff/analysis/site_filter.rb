# frozen_string_literal: true

require_relative "gem_attribution"

module Heapdiff
  # Which allocation sites to show: the +only:+ and +ignore:+ of the leak matcher, of
  # Report#to_s and Trend#to_s, and of the CLI's --only/--ignore. Each is one pattern
  # or an Array of them: a Symbol is an object type (:string, :STRING), a Regexp
  # matches the file path, a String is a gem name (see GemAttribution: "app",
  # "ruby stdlib", "sidekiq"…) or a part of the path. A site is kept when it matches
  # one of +only+ (or +only+ is empty) and none of +ignore+. Works on anything with
  # #type and #file: Group, Trend::Site.
  class SiteFilter
    # @return [Array<Symbol, Regexp, String>]
    attr_reader :only, :ignore

    # A pattern from the command line: ":string" is a type, "/re/" a Regexp, anything
    # else a gem name or part of a path.
    # @param text [String]
    # @return [Symbol, Regexp, String]
    # @raise [ArgumentError] for "/…/" that is not a valid Regexp
    def self.parse(text)
      case text
      when /\A:(\w+)\z/ then Regexp.last_match(1).to_sym
      when %r{\A/(.+)/\z} then Regexp.new(Regexp.last_match(1))
      else text
      end
    rescue RegexpError => e
      raise ArgumentError, "heapdiff: not a regular expression: #{text} (#{e.message})"
    end

    # @raise [TypeError] for a pattern that is not a Symbol, Regexp or String
    def initialize(only: nil, ignore: nil, attribution: GemAttribution.default)
      @only = patterns(only)
      @ignore = patterns(ignore)
      @attribution = attribution
    end

    # Does it keep everything?
    def none?
      only.empty? && ignore.empty?
    end

    def keep?(site)
      (only.empty? || only.any? { |p| match?(p, site) }) && ignore.none? { |p| match?(p, site) }
    end

    # The sites it keeps, in their order.
    def select(sites)
      none? ? sites.to_a : sites.select { |site| keep?(site) }
    end

    private

    def match?(pattern, site)
      case pattern
      when Symbol then site.type == pattern.to_s.upcase
      when Regexp then site.file ? pattern.match?(site.file) : false
      else
        site.file ? (@attribution.name_for(site.file) == pattern || site.file.include?(pattern)) : false
      end
    end

    def patterns(value)
      Array(value).each do |p|
        next if p.is_a?(Symbol) || p.is_a?(Regexp) || p.is_a?(String)

        raise TypeError, "heapdiff: a filter is a Symbol (type), Regexp (path) or String (gem or path), got #{p.class}"
      end
    end
  end
end
