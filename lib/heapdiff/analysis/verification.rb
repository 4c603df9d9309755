# frozen_string_literal: true

require "json"
require_relative "../errors"
require_relative "../printable"
require_relative "leak_growth"

module Heapdiff
  # Whether a fix worked: each leak's growth rate in a recording made before the fix
  # (BEFORE) set against its rate in one made after it (AFTER), the leaks matched by
  # signature (Leak#signature: stable across processes and machines). Made by
  # Verification.build or Heapdiff.verify; Enumerable over Row, BEFORE's leaks first
  # (largest growth first), then the new ones.
  #
  # The rate (+unit+) is the same for both recordings, the first that both have:
  # - :unit, objects per unit of work (jobs and requests the sidecars count, see
  #   Heapdiff::Work), when both recordings counted work: a busier AFTER does not
  #   look worse;
  # - :hour, objects per hour, when both sets of snapshots have sidecar times and span
  #   at least Trend::RATE_SPAN seconds;
  # - :snapshot, objects per step between two snapshots, otherwise (with a warning:
  #   this compares like with like only when the steps hold as much work).
  #
  # A leak of one recording only is counted at its sites in the other
  # (LeakGrowth.at_sites), where they may grow without being a leak by the trend's rule
  # (an idle step between two snapshots); where they do not exist, its rate is 0.
  #
  # Each leak's status, with +ratio+ = AFTER's rate / BEFORE's rate:
  # - :new: it grows in AFTER and did not in BEFORE (its rate there was 0 or less);
  # - :fixed: it grew in BEFORE, and its rate in AFTER is at most FIXED of BEFORE's
  #   (a fix that leaves a tenth is a fix of the leak and a second, smaller one to
  #   find);
  # - :reduced: ratio at most REDUCED (by 1 - ratio, Row#reduction);
  # - :worse: ratio above WORSE;
  # - :unchanged: in between (growth rates from a handful of snapshots vary by this
  #   much without any change of code).
  class Verification
    include LeakRows

    FIXED = 0.1
    REDUCED = 0.8
    WORSE = 1.25
    STATUSES = %i[fixed reduced unchanged worse new].freeze
    UNITS = { unit: "job or request", hour: "hour", snapshot: "snapshot" }.freeze

    # One leak: its +signature+ and +title+, +before+ and +after+ (LeakGrowth; in the
    # recording it is no leak of, counted at its sites (LeakGrowth#at_sites), or nil
    # where none of them exists), +status+ (see Verification), +ratio+ (AFTER's rate /
    # BEFORE's, nil for :new) and the rates in the verification's +unit+.
    Row = Struct.new(:signature, :title, :status, :before, :after, :unit, keyword_init: true) do
      # @return [Float] objects per unit (see Verification) in BEFORE; 0.0 when none
      #   of its sites is there
      def before_rate
        before ? before.rate(unit) : 0.0
      end

      # @return [Float] objects per unit in AFTER; 0.0 when none of its sites is there
      def after_rate
        after ? after.rate(unit) : 0.0
      end

      # @return [Float, nil] AFTER's rate / BEFORE's; nil when BEFORE's is 0 or less
      def ratio
        before_rate.positive? ? [after_rate, 0.0].max / before_rate : nil
      end

      # @return [Float, nil] 0.0..1.0, by how much the rate fell (1.0: fixed
      #   entirely); nil when it did not grow in BEFORE
      def reduction
        ratio && [1.0 - ratio, 0.0].max
      end

      # @return [Array<String>] the leak's signature in BEFORE and in AFTER (one when
      #   they are the same; they differ when Leak::Identity#same? matched it)
      def signatures
        [signature, before&.signature, after&.signature].compact.uniq
      end

      # @return [Hash{Symbol => Object}] rates in objects per #unit
      def to_h
        { signature: signature, title: Printable.utf8(title), status: status, unit: unit, before_rate: before_rate,
          after_rate: after_rate, ratio: ratio, reduction: reduction, before: before&.to_h, after: after&.to_h }
      end

      # @return [String] #to_h as JSON
      def to_json(*args)
        to_h.to_json(*args)
      end

      # The row's cells as the table shows them: the change ("fixed", "reduced by
      # 40%"), the signature, the rates before and after, the title.
      # @return [Array<String>]
      def cells
        change = status == :reduced ? format("reduced by %.0f%%", reduction * 100) : status.to_s
        [change, signature, rate(before_rate), rate(after_rate), Printable.escape(title)]
      end

      # "fixed  c1285096a128  +3.0 → 0 per job or request  SESSIONS (Array) ← …"
      def to_s
        change, signature, before, after, title = cells
        "#{change}  #{signature}  #{before} → #{after} per #{UNITS[unit]}  #{title}"
      end

      # @return [String]
      def inspect
        "#<Heapdiff::Verification::Row #{status} #{signature} #{title}>"
      end

      private

      # Three decimals below 1 (a leak of one object per 500 requests is +0.002),
      # one below 10, none above.
      def rate(value)
        if value.zero? then "0"
        elsif value.abs < 1 then format("%+.3f", value)
        elsif value.abs < 10 then format("%+.1f", value)
        else
          format("%+d", value.round)
        end
      end
    end

    class << self
      # Each recording's leaks (Trend#leaks), then the rows. A directory stands for
      # the snapshots of its latest process (Snapshot.list with process: :latest); a
      # list for those snapshots, of one process. Each trend is closed before this
      # returns.
      #
      # @param before [String, Pathname, Array<String, Snapshot>] a directory or snapshots
      # @param after [String, Pathname, Array<String, Snapshot>]
      # @return [Verification]
      # @raise [TrendError] a recording with fewer than two snapshots
      # @raise [MixedProcessesError] a list of several processes' snapshots
      # @raise [FileError, ParseError, Interrupted] as Heapdiff.trend
      def build(before, after)
        new(recording(before, "BEFORE"), recording(after, "AFTER"))
      end

      private

      # One recording as #initialize takes it: its leaks, units, warnings and sites.
      def recording(source, name)
        snapshots = Trend.snapshots_from(source, process: :latest)
        if snapshots.size < 2
          where = Array === source ? "#{source.size} given" : "#{snapshots.size} in #{Printable.escape(source.to_s)}"
          raise TrendError, "heapdiff: #{name} needs at least two snapshots of one process, #{where}"
        end

        trend = Trend.build(snapshots)
        begin
          # Not Trend#warnings: its notes on growth per hour would contradict a rate per
          # unit of work; the unit chosen is said once, for both recordings.
          warnings = trend.load_warnings
          if snapshots.size == 2
            warnings += ["2 snapshots, and a trend calls a site growing over 3 or more: its own leaks cannot show " \
                         "(its sites still count for the other's)"]
          end
          { leaks: LeakGrowth.of(trend), warnings: warnings,
            units: LeakGrowth.units(hours: trend.hours, work: trend.work_total),
            sites: LeakGrowth.site_counts(trend), hours: trend.hours, work: trend.work_total,
            intervals: trend.snapshots.size - 1 }
        ensure
          trend.close
        end
      end
    end

    # @return [Symbol] :unit, :hour or :snapshot (see the class comment)
    attr_reader :unit
    # @return [Array<String>] what makes the comparison weaker, from each recording
    attr_reader :warnings

    # Each recording as a Hash: +leaks:+ (Array<LeakGrowth>), +units:+ (the units it
    # gives rates in, LeakGrowth.units), +warnings:+ (Array<String>, Trend#load_warnings);
    # optional, to count a leak of one recording at its sites in the other:
    # +sites:+ (LeakGrowth.site_counts), +hours:+, +work:+, +intervals:+ (the trend's).
    # @param before [Hash{Symbol => Object}]
    # @param after [Hash{Symbol => Object}]
    def initialize(before, after)
      @recordings = [before, after]
      @before = before.fetch(:leaks)
      @after = after.fetch(:leaks)
      @unit = (before.fetch(:units) & after.fetch(:units)).first || :snapshot
      @warnings = before.fetch(:warnings, []).map { |w| "BEFORE: #{w}" } +
                  after.fetch(:warnings, []).map { |w| "AFTER: #{w}" }
      if @unit == :snapshot
        @warnings << "the recordings do not both count work or span time: rates are per snapshot, which compares " \
                     "like with like only when each step between snapshots holds as much work"
      end
      @rows = build_rows
      notes.each { |note| @warnings << note }
    end

    STATUSES.each do |status|
      define_method(status) { @rows.select { |row| row.status == status } }
    end

    # True when no leak is new or worse: what CI checks.
    def passed?
      @rows.none? { |row| %i[new worse].include?(row.status) }
    end

    # @return [Hash{Symbol => Object}] rates in objects per #unit
    def to_h
      { unit: unit, passed: passed?, counts: STATUSES.to_h { |s| [s, count { |row| row.status == s }] },
        leaks: @rows.map(&:to_h), warnings: warnings }
    end

    # @return [String] #to_h as JSON
    def to_json(*args)
      to_h.to_json(*args)
    end

    # The table: a headline, one line per leak (its change, signature, rates before →
    # after in objects per #unit, title), then warnings.
    def to_s
      tally = STATUSES.filter_map { |s| (n = count { |row| row.status == s }).positive? && "#{n} #{s}" }
      lines = ["Leaks before → after, objects per #{UNITS[unit]}: " \
               "#{tally.empty? ? "no leak in either recording" : tally.join(", ")}"]
      cells = @rows.map(&:cells)
      widths = (0..3).map { |i| cells.map { |c| c[i].size }.max }
      cells.each do |change, signature, before, after, title|
        lines << "  #{change.ljust(widths[0])}  #{signature}  #{before.rjust(widths[2])} → #{after.ljust(widths[3])}  #{title}"
      end
      warnings.each { |w| lines << "warning: #{w}" }
      lines.join("\n")
    end

    # @return [String]
    def inspect
      "#<Heapdiff::Verification unit=#{unit} #{STATUSES.map { |s| "#{s}=#{public_send(s).size}" }.join(" ")}>"
    end

    private

    # A leak of one recording only is counted at its sites in the other, where they
    # may still grow without being a leak by the trend's rule (a step that fell):
    # "fixed" and "new" then say what the objects did, not what the rule called them.
    #
    # A leak before is the same leak after by Leak::Identity#same? (its signature, or
    # its holder chain with a site in the same file): the fix moves lines, and with
    # them the signatures of other leaks in the files it touches.
    def build_rows
      index = Leak::IdentityIndex.new
      @after.each { |leak| index.add(leak.identity, leak) }
      matched = {}.compare_by_identity
      rows = @before.map do |leak|
        same = index.find(leak.identity) { |other| !matched.key?(other) }
        matched[same] = true if same
        row(leak.signature, leak.title, leak, same || at_sites(leak, @recordings[1]))
      end
      rows + @after.reject { |leak| matched.key?(leak) }
                   .map { |leak| row(leak.signature, leak.title, at_sites(leak, @recordings[0]), leak) }
    end

    def at_sites(leak, recording)
      return nil unless recording[:sites]

      LeakGrowth.at_sites(leak, recording[:sites], **recording.slice(:hours, :work, :intervals))
    end

    # Warnings on the rows: estimated counts, rates counted at a leak's sites.
    def notes
      estimated = @rows.select { |row| [row.before, row.after].compact.any?(&:estimated) }.map(&:signature)
      at_sites = @rows.select { |row| [row.before, row.after].compact.any?(&:at_sites) }.map(&:signature)
      notes = []
      unless estimated.empty?
        # Not "shared with another leak": the rest of a site may be no leak's (no root
        # reaches it).
        notes << "the rates of #{estimated.join(", ")} are estimates: a site they hold part of is counted in each " \
                 "snapshot by their share of it at the last one"
      end
      unless at_sites.empty?
        notes << "#{at_sites.join(", ")} #{at_sites.size == 1 ? "is a leak" : "are leaks"} of one recording only: " \
                 "in the other, the rate is of all the objects of its sites, held through it or not"
      end
      notes
    end

    def row(signature, title, before, after)
      row = Row.new(signature: signature, title: title, before: before, after: after, unit: unit)
      row.status = status(row)
      row
    end

    def status(row)
      ratio = row.ratio
      if ratio.nil? then row.after_rate.positive? ? :new : :unchanged
      elsif ratio <= FIXED then :fixed
      elsif ratio <= REDUCED then :reduced
      elsif ratio > WORSE then :worse
      else
        :unchanged
      end
    end
  end
end
