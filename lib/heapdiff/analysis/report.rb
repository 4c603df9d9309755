# frozen_string_literal: true

require "json"

module Heapdiff
  # The result of Heapdiff.diff: the retained objects grouped by allocation site,
  # largest count first. Enumerable over Group.
  class Report
    include Enumerable

    attr_reader :before, :after, :later

    # IMEMO kinds a program's first calls make once per call site: method and
    # constant caches. Retained, but not a leak: #to_s folds them into one line. An
    # IMEMO without a kind (dumps of Ruby 3.1 and older write none) is folded too.
    VM_CACHES = [nil, "callcache", "callinfo", "constcache"].freeze

    # Diffs loaded heaps (Heapdiff.diff loads the paths and calls this).
    #
    # @param before [Heap]
    # @param after [Heap]
    # @param later [Heap, nil]
    # @param include_noise [Boolean]
    # @return [Report]
    # @raise [Heapdiff::Error] a heap is closed
    # @raise [Interrupted] stopped from outside
    def self.build(before, after, later, include_noise:)
      report = _diff(before, after, later, include_noise, include_noise ? [] : OWN_PATHS)
      report.send(:attach, before, after, later)
      report
    end

    # The groups, largest count first (counted in Rust: heapdiff-core's diff.rs).
    #
    # @return [Array<Group>]
    def groups
      @groups ||= Array.new(_group_count) { |i| Group.new(self, i, _group(i)) }
    end

    # @yieldparam group [Group]
    # @return [self, Enumerator] an Enumerator without a block
    def each(&block)
      return enum_for(:each) { groups.size } unless block

      groups.each(&block)
      self
    end

    # Number of groups.
    #
    # @return [Integer]
    def size
      _group_count
    end

    # Were no objects retained (or allocated, for two dumps)?
    #
    # @return [Boolean]
    def empty?
      size.zero?
    end

    # Objects in all groups, counted exactly (the uncertain ones are in #uncertain_count).
    #
    # @return [Integer]
    def total_count
      _summary.fetch(:total_count)
    end

    # Memsize of all groups' objects, as the dumps give it.
    #
    # @return [Integer] bytes
    def total_memsize
      _summary.fetch(:total_memsize)
    end

    # Objects left out as noise (the allocation tracer's own, heapdiff's own).
    #
    # @return [Integer]
    def filtered_count
      _summary.fetch(:filtered_count)
    end

    # Three dumps: objects new in the second dump that the third no longer has.
    #
    # @return [Integer] 0 for two dumps
    def freed_count
      _summary.fetch(:freed_count)
    end

    # New objects in the last dump that no GC root reaches there: garbage the dump
    # caught before a GC swept it (dumps taken without a full GC). Not retained, so
    # in no group.
    #
    # @return [Integer] 0 for two dumps
    def unreachable_count
      _summary.fetch(:unreachable_count)
    end

    # Objects that may also be retained (the groups' Group#uncertain, summed).
    #
    # @return [Integer]
    def uncertain_count
      _summary.fetch(:uncertain_count)
    end

    # The heap the groups' objects are retained in: the last dump.
    #
    # @return [Heap]
    def last_heap
      later || after
    end

    # Warnings from the diff (compaction) and from loading each dump.
    attr_reader :warnings

    # Closes the heaps the report was made from (Heap#close), to free their memory
    # now. Groups, counts, warnings and #to_s stay; #suspects and Group#sample need
    # the heaps and raise Heapdiff::Error after this. Returns nil.
    #
    # @return [nil]
    def close
      [before, after, later].compact.each(&:close)
      _close
      nil
    end

    # "Retained" for a three-dump diff (still alive in the last dump), else "Allocated".
    #
    # @return [String]
    def verb
      later ? "Retained" : "Allocated"
    end

    # Where each group is held (see Suspect), for the first +top+ groups (all by
    # default), in the last dump, where the retention holds. Builds its dominator tree
    # on first use. +class_edges: false+ leaves out the object → class edges that
    # dumps omit (then what only a singleton class holds looks unreachable).
    #
    # @param top [Integer, nil] how many groups (nil: all)
    # @param class_edges [Boolean]
    # @return [Array<Suspect>]
    # @raise [ArgumentError] +top+ is not a count
    # @raise [Heapdiff::Error] the report is closed
    def suspects(top: nil, class_edges: true)
      top = Arguments.count(top, "top:", nil_ok: true)
      (top ? groups.first(top) : groups).map { |group| suspect(group, class_edges: class_edges) }
    end

    # Where +group+ is held (see Suspect), kept once computed.
    #
    # @param group [Group] a group of this report
    # @param class_edges [Boolean]
    # @return [Suspect]
    # @raise [ArgumentError] +group+ is not a Group of this report
    # @raise [Heapdiff::Error] the report is closed
    def suspect(group, class_edges: true)
      unless Group === group && group.report.equal?(self)
        raise ArgumentError, "heapdiff: expected a Group of this report, got #{Arguments.kind(group)}"
      end

      # Any true value means true (as in Heap#path_to_root): one cache entry, and a
      # key that any object, BasicObject included, can be.
      class_edges = class_edges ? true : false
      @suspects ||= {}
      @holder_paths ||= { true => {}, false => {} }
      @suspects[[group.index, class_edges]] ||=
        Suspect.from_native(group, last_heap, _suspect(group.index, class_edges),
                            class_edges: class_edges, paths: @holder_paths[class_edges])
    end

    # The findings: groups whose objects are held through the same holder chain (the
    # closest named holder, see Leak.holder_chain) are one Leak, largest count first.
    # The VM's caches (VM_CACHES) are in none. A group held by several holders is
    # under each, with its share. Builds every group's Suspect (the dominator tree of
    # the last dump, once; the per-object work is in Rust). Paths in signatures lose
    # the app root the last dump's sidecar recorded (the working directory of the
    # dumped process); a dump without a sidecar, this process's working directory.
    #
    # @param class_edges [Boolean]
    # @return [Array<Leak>]
    # @raise [Heapdiff::Error] the report is closed
    def leaks(class_edges: true)
      class_edges = class_edges ? true : false # see #suspect
      @leaks ||= {}
      @leaks[class_edges] ||= begin
        sites = groups.reject { |g| vm_cache?(g) }.map { |g| [g, suspect(g, class_edges: class_edges)] }
        Leak.cluster(sites, app_root: app_root).sort_by { |l| [-l.count, -l.memsize, l.signature] }.freeze
      end
    end

    # Where the app's files are, for Leak.normalize_path: the last dump's (Leak.app_root).
    #
    # @return [String]
    def app_root
      @app_root ||= Leak.app_root(last_heap.path)
    end

    # The report as plain data (what `heapdiff diff --format json` prints).
    #
    # @return [Hash{Symbol => Object}] sizes in bytes
    def to_h
      {
        dumps: [before, after, later].compact.map { |heap| Printable.utf8(heap.path) },
        total_count: total_count,
        total_memsize: total_memsize,
        uncertain_count: uncertain_count,
        unreachable_count: unreachable_count,
        filtered_count: filtered_count,
        leaks: leaks.map(&:to_h),
        groups: groups.map(&:to_h),
        warnings: warnings
      }
    end

    # @return [String]
    def to_json(*args)
      to_h.to_json(*args)
    end

    # One line per group in heapy's wording, the first +suspects+ groups followed by
    # where they are held, then warnings. +only:+, +ignore:+: which groups to show (see
    # SiteFilter); a line says how many were left out. The VM's caches (VM_CACHES)
    # are one line, unless +only:+ asks for IMEMO (:imemo).
    #
    # @param top [Integer, nil] how many groups (nil: all)
    # @param suspects [Integer] how many groups get their suspect
    # @param class_edges [Boolean]
    # @param only [Symbol, Regexp, String, Array, nil] see SiteFilter
    # @param ignore [Symbol, Regexp, String, Array, nil] see SiteFilter
    # @return [String]
    # @raise [ArgumentError] +top+ or +suspects+ is not a count
    # @raise [TypeError] for a filter that is not a Symbol, Regexp or String
    def to_s(top: nil, suspects: 3, class_edges: true, only: nil, ignore: nil)
      top = Arguments.count(top, "top:", nil_ok: true)
      suspects = Arguments.count(suspects, "suspects:")
      filter = SiteFilter.new(only: only, ignore: ignore)
      shown = filter.select(groups)
      left_out = size - shown.size
      caches, shown = shown.partition { |g| vm_cache?(g) } unless filter.only.any? { |p| p.to_s.casecmp?("imemo") }
      lines = (top ? shown.first(top) : shown).each_with_index.flat_map do |group, i|
        i < suspects ? [group.to_s, "  #{suspect(group, class_edges: class_edges)}"] : [group.to_s]
      end
      lines << "(#{shown.size - top} more group#{"s" unless shown.size - top == 1})" if top && shown.size > top
      lines << caches_line(caches) if caches&.any?
      lines << "(#{left_out} group#{"s" unless left_out == 1} left out by only/ignore)" if left_out.positive?
      lines << "No objects #{verb.downcase}." if groups.empty?
      warnings.each { |w| lines << "warning: #{w}" }
      lines.join("\n")
    end

    # @return [String]
    def inspect
      top = groups.first
      head = top ? " top=#{top.label} #{top.count} at #{top.location}" : ""
      "#<Heapdiff::Report #{verb.downcase} groups=#{size} objects=#{total_count} memsize=#{total_memsize}#{head}>"
    end

    private

    def vm_cache?(group)
      group.type == "IMEMO" && VM_CACHES.include?(group.subtype)
    end

    def caches_line(caches)
      count = caches.sum(&:count)
      "(VM caches: #{count} IMEMO object#{"s" unless count == 1}, #{Printable.bytes(caches.sum(&:memsize))} in #{caches.size} " \
        "group#{"s" unless caches.size == 1}: method and constant caches made once per call site, " \
        "not a leak; only: :imemo lists them)"
    end

    def attach(before, after, later)
      @before = before
      @after = after
      @later = later
      @warnings = Warnings.fold(_warnings + [before, after, later].compact.flat_map(&:warnings))
    end
  end
end
