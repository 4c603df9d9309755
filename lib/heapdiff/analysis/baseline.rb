# frozen_string_literal: true

require "json"
require "set"
require_relative "../errors"
require_relative "../safe_file"

module Heapdiff
  # The leaks a project knows of and accepts for now, by Leak#signature: CI then fails
  # only for new ones. The file is JSON made for review in a pull request, one leak
  # per entry, sorted by signature, each with its title, holder chain and sites:
  #
  #   {"heapdiff_baseline": 1,
  #    "leaks": [{"signature": "3f9a0c1b2d4e", "title": "Registry::ENTRIES (Array) ← 1 site, STRING",
  #               "holder_chain": ["Registry::ENTRIES (Array)", "CLASS Registry", "ROOT vm"],
  #               "sites": ["STRING app/registry.rb:12"]}]}
  #
  # A leak is known when an entry is the same leak by Leak::Identity#same?: its
  # signature, or its holder chain with a site of the same type in the same file.
  # The second keeps a known leak known when a run reaches its holder from one call
  # site more or fewer, or a change elsewhere in the file moves its lines: that
  # changes the signature but not the bug. A new holder, or the same holder with none
  # of the entry's sites' files, is new. Entries without a holder chain (edited by
  # hand) match by signature only.
  class Baseline
    FORMAT = 1
    SIGNATURE = /\A\h{#{Leak::SIGNATURE_DIGITS}}\z/

    # The signatures it knows, and the entries as read (titles for messages).
    attr_reader :path, :entries

    class << self
      # Reads a baseline file.
      #
      # @param path [String, Pathname]
      # @return [Baseline]
      # @raise [BaselineError] the file is missing, not JSON, or not a baseline (the
      #   message names the file)
      def load(path)
        path = Arguments.path(path, "path")
        data = JSON.parse(File.read(path, encoding: Encoding::UTF_8))
        leaks = data.is_a?(Hash) && data["heapdiff_baseline"] == FORMAT && data["leaks"]
        unless leaks.is_a?(Array)
          raise BaselineError, "heapdiff: #{path} is not a heapdiff baseline ({\"heapdiff_baseline\": 1, \"leaks\": […]})"
        end

        leaks.each_with_index do |leak, i|
          next if leak.is_a?(Hash) && String === leak["signature"] && SIGNATURE.match?(leak["signature"].b)

          raise BaselineError, "heapdiff: #{path}: leak #{i + 1} has no signature of #{Leak::SIGNATURE_DIGITS} hex digits"
        end
        new(leaks, path: path)
      rescue Errno::ENOENT => e
        raise BaselineError, "heapdiff: cannot read the baseline #{path}: #{e.message} (one is made by " \
                             "'heapdiff report DIR --write-baseline #{path}' or Heapdiff::Baseline.write)"
      rescue SystemCallError => e
        raise BaselineError, "heapdiff: cannot read the baseline #{path}: #{e.message}"
      rescue JSON::ParserError, EncodingError => e
        raise BaselineError, "heapdiff: the baseline #{path} is not JSON: #{e.message[0, 200]}"
      end

      # Writes +leaks+ as a baseline file (complete or not at all; mode 0644, for the
      # repository).
      #
      # @param path [String, Pathname]
      # @param leaks [Array<Leak>]
      # @return [Baseline] the baseline written
      # @raise [BaselineError] it cannot be written
      # @raise [TypeError] +path+ is not a path, +leaks+ not an Array of Leak
      def write(path, leaks)
        baseline = new(Arguments.list(leaks, Leak, "leaks").map { |l| entry(l) }, path: Arguments.path(path, "path"))
        baseline.write(path)
        baseline
      end

      # +text+ (SIGNATURE's hex digits, in any case) as Leak#signature writes it.
      #
      # @param text [String]
      # @return [String]
      def signature(text)
        text.b.downcase.force_encoding(Encoding::UTF_8)
      end

      private

      def entry(leak)
        { "signature" => leak.signature, "title" => leak.title, "holder_chain" => leak.holder_chain,
          "sites" => leak.sites.map(&:key).uniq.sort }
      end
    end

    # @param entries [Array<Hash{String => Object}>] each with a "signature" of
    #   Leak::SIGNATURE_DIGITS hex digits (read in lowercase, as Leak#signature writes
    #   them: an entry typed in capitals still knows its leak)
    # @param path [String, Pathname, nil] where it was read from
    # @raise [TypeError] +entries+ is not an Array of Hash, +path+ not a path
    # @raise [ArgumentError] an entry without a signature
    def initialize(entries = [], path: nil)
      Arguments.list(entries, Hash, "entries").each_with_index do |entry, i|
        next if String === entry["signature"] && SIGNATURE.match?(entry["signature"].b)

        raise ArgumentError, "heapdiff: entry #{i + 1} has no \"signature\" of #{Leak::SIGNATURE_DIGITS} hex digits"
      end
      path = Arguments.path(path, "path:", nil_ok: true)
      entries = entries.map { |e| e.merge("signature" => Baseline.signature(e["signature"])) }
      @entries = entries.uniq { |e| e["signature"] }.sort_by { |e| e["signature"] }.freeze
      @path = path
      @index = Leak::IdentityIndex.new
      @entries.each { |e| @index.add(identity(e), e) }
    end

    # Is +leak+ (a Leak, or its signature) in the baseline?
    #
    # @param leak [Leak, String]
    # @return [Boolean]
    # @raise [TypeError] neither a Leak nor a String
    def known?(leak)
      case leak
      when Leak then !entry_for(leak).nil?
      when String then SIGNATURE.match?(leak.b) && !@index.find(Leak::Identity.new(Baseline.signature(leak), nil, [])).nil?
      else raise TypeError, "heapdiff: expected a Leak or a signature, got #{Arguments.kind(leak)}"
      end
    end

    # The baseline's entry that knows +leak+: the one with its signature, or else the
    # same leak by its holder chain and sites (Leak::Identity#same?).
    #
    # @param leak [Leak]
    # @return [Hash{String => Object}, nil]
    # @raise [TypeError] +leak+ is not a Leak
    def entry_for(leak)
      raise TypeError, "heapdiff: expected a Leak, got #{Arguments.kind(leak)}" unless Leak === leak

      @index.find(leak.identity)
    end

    # The leaks the baseline does not know, in their order.
    #
    # @param leaks [Array<Leak>]
    # @return [Array<Leak>]
    # @raise [TypeError] +leaks+ is not an Array of Leak
    def new_leaks(leaks)
      Arguments.list(leaks, Leak, "leaks").reject { |leak| known?(leak) }
    end

    # Signatures in the baseline that none of +leaks+ has: fixed, or no longer seen.
    #
    # @param leaks [Array<Leak>]
    # @return [Array<Hash{String => Object}>] the baseline's entries
    # @raise [TypeError] +leaks+ is not an Array of Leak
    def missing(leaks)
      seen = Arguments.list(leaks, Leak, "leaks").filter_map { |leak| entry_for(leak) }.to_set
      entries.reject { |e| seen.include?(e) }
    end

    # Writes this baseline, or with +leaks+ one of those leaks instead, to +path+.
    #
    # @param path [String, Pathname]
    # @param leaks [Array<Leak>, nil]
    # @return [Baseline] self, or the baseline of +leaks+
    # @raise [BaselineError] it cannot be written
    # @raise [TypeError] +path+ is not a path, +leaks+ not an Array of Leak
    def write(path, leaks = nil)
      return self.class.write(path, leaks) if leaks

      path = Arguments.path(path, "path")
      text = "#{JSON.pretty_generate({ "heapdiff_baseline" => FORMAT, "leaks" => entries })}\n"
      SafeFile.write(path, mode: 0o644) { |io| io.write(text) }
      self
    rescue SystemCallError => e
      raise BaselineError, "heapdiff: cannot write the baseline #{path}: #{e.message}"
    end

    # @return [Integer] leaks in the baseline
    def size
      entries.size
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Baseline #{path && Printable.escape(File.basename(path.to_s))} leaks=#{size}>"
    end

    private

    def identity(entry)
      sites = entry["sites"]
      chain = entry["holder_chain"]
      Leak::Identity.new(entry["signature"], chain.is_a?(Array) ? chain : nil, sites.is_a?(Array) ? sites.map(&:to_s) : [])
    end
  end
end
