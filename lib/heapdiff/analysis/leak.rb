# frozen_string_literal: true

require "digest"
require "json"
require_relative "gem_attribution"

module Heapdiff
  # One finding: the retained objects held through the same holder chain, whatever
  # allocation site made them. A leak shows up as several groups (one per site: the
  # buffer's strings at each SQL call site, a leaked object's ivars, a finalizer's
  # proc, env and array); Leak gathers them under the closest *named* holder (see
  # Leak.holder_chain) and gives the finding a #signature that survives a restart,
  # another process, another machine and another checkout directory.
  #
  # Made by Report#leaks and Trend#leaks (Leak.cluster), largest first.
  class Leak
    # One allocation site under a leak. +site+ is the Group (diff) or Trend::Site
    # (trend); +key+ its stable words ("STRING app/models/user.rb:12"); +count+ the
    # objects of the site held through this leak (in a trend: at the last snapshot),
    # +share+ that part of the site's objects (0.0..1.0, from the site's Suspect),
    # +memsize+ the site's memsize times +share+ (bytes; exact when +share+ is 1),
    # +counts+ in a trend the site's count at each snapshot times +share+ (nil in a
    # diff).
    Site = Struct.new(:site, :key, :count, :memsize, :share, :counts) do
      # @return [Hash{Symbol => Object}]
      def to_h
        { key: key, count: count, memsize: memsize, share: share, counts: counts,
          location: site.file && site.location, label: site.label }
      end

      # @return [String]
      def to_json(*args)
        to_h.to_json(*args)
      end

      # "2000 STRING at app.rb:99 (100%)"
      #
      # @return [String]
      def to_s
        "#{count} #{site.label} at #{site.location} (#{Leak.percent(share)})"
      end

      # @return [String]
      def inspect
        "#<Heapdiff::Leak::Site #{self}>"
      end
    end

    # What tells one leak from another across runs, processes and versions of the code:
    # +signature+ (Leak#signature), +holder_chain+ (Leak#holder_chain) and +site_keys+
    # (the keys of Leak#sites, "TYPE path.rb:LINE"). Leak#identity and
    # LeakGrowth#identity make one; Baseline makes one of each entry of its file.
    Identity = Struct.new(:signature, :holder_chain, :site_keys) do
      # The same leak? The same signature; or, because a signature changes with any
      # site's file:line, the same holder chain with a site of the same type in the
      # same file, whatever its line. That keeps a leak itself when a fix elsewhere in
      # the file moves its lines, or when a run reaches its holder from one call site
      # more or fewer. The holder decides (a leak is its holder chain: Leak.cluster);
      # the shared site keeps a chain as plain as "ROOT vm" from joining two leaks of
      # unrelated code. Another holder is another leak.
      #
      # @param other [Identity]
      # @return [Boolean]
      # @raise [TypeError] +other+ is not an Identity
      def same?(other)
        raise TypeError, "heapdiff: expected a Leak::Identity, got #{Arguments.kind(other)}" unless Identity === other
        return true if signature == other.signature
        return false if holder_chain.nil? || holder_chain != other.holder_chain

        Identity.without_lines(site_keys).intersect?(Identity.without_lines(other.site_keys))
      end

      # "STRING app/x.rb:12" => "STRING app/x.rb".
      #
      # @param keys [Array<String>, nil]
      # @return [Array<String>]
      # @raise [TypeError] +keys+ is neither nil nor an Array of String
      def self.without_lines(keys)
        return [] if NilClass === keys

        Arguments.list(keys, String, "keys").map { |key| key.sub(/:\d+\z/, "") }
      end
    end

    # Identities to match others against by Identity#same?, each with a value (a
    # baseline's entry, a process's row): by signature first, then by holder chain.
    # Only identities with the same signature or the same holder chain can be the same
    # leak, so a lookup compares with those alone: Siblings and Verification match
    # thousands of leaks per process, which a scan of every leak made quadratic.
    class IdentityIndex
      def initialize
        @by_signature = Hash.new { |h, k| h[k] = [] }
        @by_chain = Hash.new { |h, k| h[k] = [] }
      end

      # @param identity [Identity]
      # @param value [Object] what #find returns for it
      # @return [self]
      def add(identity, value)
        entry = [identity, value].freeze
        @by_signature[identity.signature] << entry
        @by_chain[identity.holder_chain] << entry unless identity.holder_chain.nil?
        self
      end

      # The value of the first identity added with +identity+'s signature, or else of
      # the first that is the same leak by Identity#same?; among those the block (if
      # given) accepts.
      #
      # @param identity [Identity]
      # @yieldparam value [Object] a candidate's value
      # @yieldreturn [Boolean] whether it may match
      # @return [Object, nil]
      def find(identity, &accept)
        accept ||= ->(_) { true }
        hit = @by_signature.fetch(identity.signature, []).find { |_, value| accept.call(value) }
        hit ||= @by_chain.fetch(identity.holder_chain, []).find do |known, value|
          accept.call(value) && known.same?(identity)
        end
        hit&.last
      end

      # @return [Integer] identities added
      def size
        @by_signature.sum { |_, entries| entries.size }
      end

      # @return [String]
      def inspect
        chains = @by_chain.size
        "#<Heapdiff::Leak::IdentityIndex #{size} identities, #{chains} holder chain#{"s" unless chains == 1}>"
      end
    end

    # Hex digits of #signature.
    SIGNATURE_DIGITS = 12
    # An address as a dump, a Name or Object#brief writes it: never part of a signature.
    ADDRESS = /0x\h+/
    # A source file in a name, before its ":LINE" ("Thread (/app/lib/worker.rb:12)").
    NAMED_FILE = %r{/[^\s():,"]+(?=:\d+)}
    # A thread's name in a name ('thread "puma srv tp 003"', 'Thread "worker-2"'): its
    # digits are a pool's sequence number or a pid, which differ between the threads
    # of one pool and between runs.
    THREAD_NAME = /(?<=\bthread "|\bThread ")(?:[^"\\]|\\.)*(?=")/

    attr_reader :holder_chain, :sites, :count, :memsize, :counts

    # @param holder_chain [Array<String>] see Leak.holder_chain
    # @param sites [Array<Site>] largest count first
    # @param counts [Array<Integer>, nil] a trend's leak: its count at each snapshot
    def initialize(holder_chain, sites, counts: nil)
      @holder_chain = holder_chain.freeze
      @sites = sites.sort_by { |s| [-s.count, s.key] }.freeze
      @count = sites.sum(&:count)
      @memsize = sites.sum(&:memsize)
      @counts = counts&.freeze
    end

    class << self
      # Groups (or trend sites) into leaks: each site's Suspect holders are turned into
      # holder chains (Leak.holder_chain), and sites whose holders have the same chain
      # are one leak. A site held by several holders is under each, with its share.
      # Several holders with the same chain (five Sidekiq processor threads, each
      # with its own Thread.current[:sql_log]) are one leak: the same code leaks.
      #
      # @param sites [Array<Array(Group, Suspect)>, Array<Array(Trend::Site, Suspect)>]
      #   each site with its Suspect
      # @param app_root [String, nil] where the app's files are (see .normalize_path)
      # @param trend [Boolean] give each leak #counts per snapshot
      # @return [Array<Leak>] not sorted
      def cluster(sites, app_root:, trend: false)
        by_chain = Hash.new { |h, k| h[k] = {} }
        # Many groups share their holders: one chain per holder object (or root).
        chains = {}
        sites.each do |site, suspect|
          suspect.holders.each do |holder|
            next if holder.count.zero?

            chain = chains.fetch([holder.object&.row, holder.root]) do |key|
              chains[key] = holder_chain(holder, app_root: app_root)
            end
            entries = by_chain[chain]
            entry = entries[site] ||= [0, 0.0]
            entry[0] += holder.count
            entry[1] += holder.share
          end
        end
        by_chain.map do |chain, entries|
          leak_sites = entries.map do |site, (count, share)|
            share = [share, 1.0].min
            Site.new(site, site_key(site, app_root), count, (site.memsize * share).round, share,
                     trend ? site.counts.map { |c| (c * share).round } : nil)
          end
          counts = trend ? leak_sites.map(&:counts).transpose.map(&:sum) : nil
          new(chain, leak_sites, counts: counts)
        end
      end

      # The holder chain of a Suspect::Holder, in words that survive a restart (no
      # addresses, no counts, no lengths), closest named holder first, ending with the
      # root category: the closest named step on the holder's path from the roots,
      # then the named steps above it (a constant's class, the thread of a
      # thread-local), then "ROOT vm". What lies between the holder and that name (the
      # leaked object whose ivars hold the strings, a connection's internals) and the
      # unnamed objects above it (the VM's ractor, a pin list one Ruby has and another
      # not) are left out: the objects under one name are one leak.
      #
      # A named step has a code name (the names sidecar: Registry::ENTRIES,
      # Thread.current[:sql_log], a thread; or the dump: the finalizer table, a
      # singleton class, an ivar on Ruby 3.2+). Without a names sidecar (a dump
      # heapdiff did not take) the dump's own names stand in: a CLASS or MODULE with a
      # name (the owner of the constant or class ivar), a thread (DATA VM/thread), and
      # the root category. A path with no named step at all gives every step, holder
      # first. A holder the roots hold directly is its root category alone ("the
      # finalizer table (ObjectSpace.define_finalizer): ROOT finalizers").
      #
      # Paths in names (an unnamed thread is named by the file and line that started
      # it) are normalized as the sites' are (.normalize_path with +app_root+), and the
      # digits of a thread's name read "N": the threads of a pool (Puma's "puma srv tp
      # 001" to "005", each with its own Thread.current[:sql_log]) are one leak, whichever
      # of them served the leaking requests in this run.
      #
      # @param holder [Suspect::Holder]
      # @param app_root [String, nil] see .normalize_path
      # @return [Array<String>]
      def holder_chain(holder, app_root: nil)
        return ["#{Suspect::ROOT_CATEGORIES[holder.root]}ROOT #{holder.root || "?"}"] unless holder.object

        path = holder.path
        return [object_words(holder.object), "(no root reaches it)"] unless path

        steps = path.steps
        named = steps.select { |s| named_step?(s) }
        chain = named.empty? ? steps : named
        chain.reverse.map do |s|
          step_words(s).gsub(NAMED_FILE) { |file| normalize_path(file, app_root: app_root) }
                       .gsub(THREAD_NAME) { |name| name.gsub(/\d+/, "N") }
        end + ["ROOT #{path.root}"]
      end

      # A source path without what differs between checkouts and machines: a gem's
      # file as "NAME-VERSION/lib/x.rb" (RubyGems, Bundler, Debian's
      # rubygems-integration), or for a gem Bundler checked out from git as
      # "NAME-REVISION/lib/x.rb" (bundler/gems/NAME-<12 hex digits>); Ruby's own library as "ruby/set.rb"; Debian's
      # vendor_ruby as "vendor_ruby/x.rb"; a file under +app_root+ relative to it;
      # a relative path ("app.rb", "./lib/x.rb", as Ruby records `ruby app.rb`) as
      # written, without "./". Anything else is left as it is.
      #
      # @param path [String, nil] a file name from the dump
      # @param app_root [String, nil] the app's root: the sidecar's "app_root" (the
      #   working directory of the dumped process), or for a dump without one, this
      #   process's working directory
      # @return [String, nil]
      # @raise [TypeError] +path+ or +app_root+ is not a String (or nil)
      def normalize_path(path, app_root: Dir.pwd)
        return nil if NilClass === path

        [[path, "a path"], [app_root, "app_root:"]].each do |value, name|
          next if NilClass === value || String === value

          raise TypeError, "heapdiff: #{name} is a String, got #{Arguments.kind(value)}"
        end

        text = Printable.utf8(path)
        if (m = GemAttribution::GEM_DIR.match(text)) then text[(m.begin(0) + "/gems/".size)..]
        elsif (m = %r{/(vendor_ruby|site_ruby)/(?:\d+\.\d+\.\d+/)?(.*)\z}.match(text)) then "#{m[1]}/#{m[2]}"
        elsif (m = %r{/lib/ruby/\d+\.\d+\.\d+/(.*)\z}.match(text)) then "ruby/#{m[1]}"
        elsif app_root && text.start_with?(root = "#{app_root.chomp("/")}/") then text.delete_prefix(root)
        else
          text.delete_prefix("./")
        end
      end

      # Where the app's files are for the leaks of a dump: the app root its sidecar
      # recorded (the dumped process's working directory), else this process's working
      # directory (a dump heapdiff did not take, analysed from the app's checkout).
      # Report#app_root and Trend#app_root; one rule, so that a trend's leaks and its
      # site keys (LeakGrowth.site_counts) agree.
      #
      # @param dump_path [String]
      # @return [String]
      def app_root(dump_path)
        root = begin
          Snapshot.read(dump_path).meta&.dig("app_root")
        rescue Heapdiff::Error
          nil
        end
        root.is_a?(String) ? root : Dir.pwd
      end

      # "100%", "<1%", ">99%", "43%".
      #
      # @param share [Float] 0.0..1.0
      # @return [String]
      # @raise [TypeError] +share+ is not a Numeric
      def percent(share)
        raise TypeError, "heapdiff: share must be a Numeric, got #{Arguments.kind(share)}" unless Numeric === share
        return "<1%" if share.positive? && share < 0.01
        return ">99%" if share < 1 && share > 0.99

        format("%.0f%%", share * 100)
      end

      # A site's stable words, as Site#key holds them: "STRING app/models/user.rb:12"
      # (the label, then the path as .normalize_path gives it). Public for matching a
      # leak's sites in another recording (Verification).
      #
      # @param site [Group, Trend::Site]
      # @param app_root [String, nil] see .normalize_path
      # @return [String]
      def site_key(site, app_root)
        where = site.file ? "#{normalize_path(site.file, app_root: app_root)}:#{site.line}" : "(no allocation site)"
        "#{site.label} #{where}"
      end

      private

      def named_step?(step)
        return true if step.named?

        object = step.object
        case object.type
        when "CLASS", "MODULE" then !object.name.nil? && !object.name.start_with?("#<")
        when "DATA" then object.subtype == "VM/thread"
        else false
        end
      end

      def step_words(step)
        object = step.object
        if step.name
          what = [step.name.context, object.class_name || object.subtype || object.type].compact.join(", ")
          return Printable.escape("#{step.name.expr} (#{what})".gsub(ADDRESS, "0x…"))
        end
        words = object_words(object)
        label = step.label
        label.nil? || label.start_with?("[") ? words : "#{words} (#{Printable.escape(label)})"
      end

      # "ARRAY", "OBJECT Foo", "CLASS Registry", "DATA VM/thread".
      def object_words(object)
        words = case object.type
                when "CLASS", "MODULE" then [object.type, object.name]
                when "OBJECT", "STRUCT" then [object.type, object.class_name]
                when "DATA" then [object.type, object.class_name || object.subtype]
                else [object.type]
                end
        Printable.escape(words.compact.join(" ").gsub(ADDRESS, "0x…"))
      end
    end

    # 12 lowercase hex digits: SHA-256 of the holder chain and the sites' keys
    # (sorted), which hold names, types, classes and normalized file:line only. The
    # same leak in two runs, processes or checkouts has the same signature; another
    # holder, or another site, gives another.
    #
    # @return [String]
    def signature
      @signature ||= Digest::SHA256.hexdigest(JSON.generate([holder_chain, sites.map(&:key).uniq.sort]))[0, SIGNATURE_DIGITS]
    end

    # @return [Identity] what matches this leak to the same leak elsewhere (Identity#same?)
    def identity
      Identity.new(signature, holder_chain, sites.map(&:key).uniq)
    end

    # One readable line: the closest named holder, then the sites' number and types,
    # and where the largest is (its path as in Site#key), so that two leaks of one
    # holder name read apart in verify's and compare's rows:
    # 'Thread.current[:sql_log] (fiber-local, thread "processor", Array) ← Thread
    # "processor" (Thread) ← 2 sites, STRING, at app/subscribers/sql_log.rb:12 and 1 more'.
    #
    # @return [String]
    def title
      n = sites.map(&:key).uniq.size
      top = sites.first
      where = top.key.delete_prefix("#{top.site.label} ")
      "#{holder_and_sites}#{n == 1 ? " at #{where}" : ", at #{where} and #{n - 1} more"}"
    end

    # Did the count of the leak's sites need an estimate? True in a trend when the leak
    # holds only part of a site's objects (another leak holds the rest, or no root
    # reaches some: Suspect#unreachable_count): the site's earlier counts are then
    # scaled by the share at the last snapshot.
    #
    # @return [Boolean]
    def estimated?
      !counts.nil? && sites.any? { |s| s.share < 1 }
    end

    # Last count minus first, in a trend (nil for a diff's leak).
    #
    # @return [Integer, nil] objects
    def growth
      counts && (counts.last - counts.first)
    end

    # @return [Hash{Symbol => Object}] memsize in bytes
    def to_h
      { signature: signature, title: title, holder_chain: holder_chain, count: count, memsize: memsize,
        counts: counts, estimated: estimated?, sites: sites.map(&:to_h) }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # "leak 3f9a0c1b2d4e: <title>: 2000 objects, 227.8 kB", then one line per site.
    #
    # @param sites [Integer] how many sites to list
    # @return [String]
    def to_s(sites: 5)
      trend = counts ? " (#{counts.join(" → ")}#{", estimate" if estimated?})" : ""
      objects = "#{count} object#{"s" unless count == 1}"
      lines = ["leak #{signature}: #{holder_and_sites}: #{objects}#{trend}, #{Printable.bytes(memsize)}"]
      self.sites.first(sites).each { |s| lines << "    #{s}" }
      more = self.sites.size - sites
      lines << "    (#{more} more site#{"s" unless more == 1})" if more.positive?
      lines.join("\n")
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Leak #{signature} count=#{count} memsize=#{memsize} sites=#{sites.size} #{title}>"
    end

    private

    # The title without where: the holder's first two steps, the sites' number and
    # types ("Store::AUDIT (Array) ← MODULE Store ← 1 site, STRING"); #to_s lists the
    # sites below it.
    def holder_and_sites
      holder = holder_chain.reject { |w| w.start_with?("ROOT ") || w.include?(": ROOT ") }
      holder = holder_chain if holder.empty?
      labels = sites.map { |s| s.site.label }.uniq
      n = sites.map(&:key).uniq.size
      "#{holder.first(2).join(" ← ")} ← #{n} site#{"s" unless n == 1}, #{labels.first(3).join(", ")}" \
        "#{", …" if labels.size > 3}"
    end
  end
end
