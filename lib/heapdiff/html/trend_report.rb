# frozen_string_literal: true

require "cgi"
require "json"

module Heapdiff
  class Trend
    # The trend as one self-contained HTML file: no network, everything inline (CSS,
    # JavaScript, SVG). Made by Trend#to_html and `heapdiff report DIR --html FILE`.
    #
    # The page holds: the leaks (Trend#leaks, each with its signature, counts and
    # sites), a chart of RSS and live objects across the snapshots (drawn by
    # report.js from the JSON embedded in the page), the growing sites each with a
    # sparkline, its suspect and its path, and tables whose headers sort on click.
    # The tables and sparklines are plain HTML/SVG; only the chart and sorting need
    # JavaScript. Everything from the dump (class names, paths, strings) is escaped.
    # Scaled figures (kB, MB) carry the exact ones in a tooltip (a title).
    #
    # For tests and links, `#click=TABLE:COLUMN,…` in the URL clicks those headers
    # once the page has loaded (COLUMN counts from 0), as a reader would.
    class HTML
      ASSETS = __dir__
      # Sites listed in the table of all sites; the JSON output has them all.
      DEFAULT_TOP = 200
      # Growing sites shown with their suspect and path (each needs the dominator tree).
      DEFAULT_DETAILS = 10

      def initialize(trend, top: DEFAULT_TOP, details: DEFAULT_DETAILS, title: nil)
        @trend = trend
        @top = top
        @details = details
        @title = title || "heapdiff trend: #{trend.snapshots.size} snapshots"
      end

      def render
        <<~HTML
          <!DOCTYPE html>
          <html lang="en">
          <head>
          <meta charset="utf-8">
          <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>#{h(@title)}</title>
          <style>#{File.read(File.join(ASSETS, "report.css"))}</style>
          </head>
          <body>
          <header>
          <h1>#{h(@title)}</h1>
          <p class="summary">#{h(summary)}</p>
          </header>
          <section id="leaks">
          <h2>Leaks (#{@trend.leaks.size})</h2>
          #{leaks_section}
          </section>
          <section id="memory">
          <h2>Memory over time</h2>
          <div id="chart" class="chart"><noscript>The chart needs JavaScript; the snapshot table below has the figures.</noscript></div>
          #{breakdown_section}
          </section>
          <section id="growing">
          <h2>Growing sites (#{@trend.growing.size})</h2>
          #{growing_section}
          </section>
          <section id="all-sites">
          <h2>Sites (#{sites_heading})</h2>
          #{sites_table}
          </section>
          <section id="snapshots">
          <h2>Snapshots</h2>
          #{snapshots_table}
          </section>
          #{warnings_section}
          <footer>Verdicts: <b>growing</b>: retained, and the count rises monotonically or nearly (in at least ⅔ of the steps, never falling by more than a tenth) across at least 3 snapshots; <b>transient</b>: most objects are gone by the next snapshot (or by the last); <b>stable</b>: retained, not growing. heapdiff #{h(VERSION)}.</footer>
          <script type="application/json" id="trend-data">#{json_for_script(chart_data)}</script>
          <script>#{File.read(File.join(ASSETS, "report.js"))}</script>
          </body>
          </html>
        HTML
      end

      private

      def summary
        memory = @trend.memory
        parts = ["#{@trend.snapshots.size} snapshots of #{Printable.utf8(File.dirname(memory.first.path))}"]
        parts << format("over %.1f min", @trend.hours * 60) if @trend.hours
        parts << ("#{@trend.size} allocation sites: " +
                 VERDICTS.map { |v| "#{@trend.count { |s| s.verdict == v }} #{v}" }.join(", "))
        parts.join(", ")
      end

      def sites_heading
        sited = @trend.count(&:file)
        shown = "#{sited} with an allocation site"
        shown = "the first #{@top} of #{shown}, ranked" if sited > @top
        unsited = @trend.size - sited
        unsited.positive? ? "#{shown}; #{unsited} without one, summed by verdict" : shown
      end

      # One card per leak (Trend#leaks): the growing sites held through one named
      # holder, with the signature a baseline knows it by.
      def leaks_section
        leaks = @trend.leaks
        return "<p>No leak: no site grows.</p>" if leaks.empty?

        leaks.first(@details).map { |leak| leak_card(leak) }.join("\n") +
          (leaks.size > @details ? "\n<p>#{leaks.size - @details} more leaks are in the JSON output.</p>" : "")
      end

      def leak_card(leak)
        rows = leak.sites.map do |s|
          cells = [%(<code>#{h(s.key)}</code>), s.count, h(Leak.percent(s.share))]
          "<tr>#{cells.each_with_index.map { |c, i| i.zero? ? "<td>#{c}</td>" : %(<td class="num">#{c}</td>) }.join}</tr>"
        end.join
        estimate = ""
        if leak.estimated?
          estimate = " (an estimate: it holds part of a site's objects, which the earlier snapshots count by the " \
                     "part it held at the last one)"
        end
        <<~HTML
          <article class="leak" id="leak-#{h(leak.signature)}">
          <h3><code>#{h(leak.signature)}</code> #{h(leak.title)}</h3>
          #{sparkline(leak.counts, width: 240, height: 48)}
          <p>#{h(leak.counts.join(" → "))} objects#{estimate}; #{bytes(leak.memsize)} in the last snapshot.</p>
          <p class="chain"><b>Holder chain</b>: <code>#{h(leak.holder_chain.join(" ← "))}</code></p>
          <table class="leak-sites"><thead><tr><th>Site</th><th>Objects</th><th>Share</th></tr></thead><tbody>#{rows}</tbody></table>
          </article>
        HTML
      end

      def growing_section
        growing = @trend.growing
        return "<p>No site grows.</p>" if growing.empty?

        cards = growing.first(@details).map { |site| site_card(site) }.join("\n")
        more = growing.size > @details ? "<p>#{growing.size - @details} more growing sites are in the table below.</p>" : ""
        "#{cards}\n#{more}"
      end

      def site_card(site)
        suspect = site.suspect
        holders = suspect.holders.first(3).map { |holder| "<li>#{h(holder.to_s)}</li>" }.join
        path = site.path
        <<~HTML
          <article class="site" id="site-#{site.rank}">
          <h3><span class="rank">##{site.rank}</span> #{h(site.label)} <code>#{h(site.location)}</code></h3>
          #{sparkline(site.counts, width: 240, height: 48)}
          <p>#{h(site.counts.join(" → "))} objects (#{h(rates(site))}); #{bytes(site.memsizes.first)} → #{bytes(site.memsizes.last)}; #{h(percent(site.kept_share))} of each snapshot's objects still there in the next.</p>
          #{driver(site)}
          #{owner(site, suspect.top)}
          <p class="suspect"><b>Suspect</b> (holds these objects in the last snapshot; freeing it frees #{bytes(suspect.retained_size)}):</p>
          <ul>#{holders.empty? ? "<li>no root reaches them</li>" : holders}</ul>
          <p class="path"><b>Path</b> to one of them: <code>#{path ? h(path.to_s) : "no root reaches it"}</code></p>
          </article>
        HTML
      end

      # The allocation line and the code's name of what holds its objects, side by
      # side, then the holder chain back to the root: for readers of reports, not code.
      def owner(site, holder)
        named = holder&.named
        held = if named
                 context = [named.name.context, named.object.summary].compact.join(", ")
                 "<code>#{h(named.name.to_s)}</code> <span class=\"context\">#{h(context)}</span>"
               elsif holder&.object.nil? && holder&.root
                 "<code>ROOT #{h(holder.root)}</code>"
               else
                 "<span class=\"context\">no code name known (a plain dump, or no named holder on the path)</span>"
               end
        chain = holder&.path ? "<p class=\"chain\"><b>Holder chain</b>: <code>#{h(holder.path.to_s_from_target)}</code></p>" : ""
        <<~HTML.chomp
          <div class="owner"><div><b>Allocated at</b> <code>#{h(site.location)}</code></div><div><b>Held by</b> #{held}</div></div>
          #{chain}
        HTML
      end

      # Colours of the breakdown's layers, bottom up (MemoryVerdict::COMPONENTS).
      LAYER_COLOURS = {
        ruby_objects: "#4e79a7", ruby_heap_fragmentation: "#a0cbe8", malloc_fragmentation: "#f28e2b",
        allocator_cache: "#ffbe7d", native: "#e15759"
      }.freeze

      # The memory verdict, and a stacked area of the breakdown over time (server-side
      # SVG: it needs no JavaScript), x proportional to time when the snapshots have it.
      def breakdown_section
        verdict = @trend.memory_verdict
        return "<p class=\"verdict\">#{h(verdict)}</p>" if verdict.breakdowns.size < 2

        "<p class=\"verdict\">#{h(verdict)}</p>\n" \
          "#{stacked_area(verdict.breakdowns)}"
      end

      def stacked_area(breakdowns, width: 720, height: 220)
        layers = MemoryVerdict::COMPONENTS.map do |name, keys|
          [name, breakdowns.map { |b| keys.sum { |k| b[k].to_i.clamp(0, nil) } }]
        end
        totals = breakdowns.each_index.map { |i| layers.sum { |_, values| values[i] } }
        max = [totals.max, 1].max
        times = @trend.memory.filter_map(&:time)
        xs = if times.size == breakdowns.size && times.last > times.first
               times.map { |t| (t - times.first) / (times.last - times.first) }
             else
               breakdowns.each_index.map { |i| i.fdiv([breakdowns.size - 1, 1].max) }
             end
        x = ->(i) { 50 + (xs[i] * (width - 60)) }
        y = ->(v) { height - 20 - (v.fdiv(max) * (height - 44)) }
        below = Array.new(breakdowns.size, 0)
        polygons = layers.map do |name, values|
          above = below.zip(values).map(&:sum)
          points = above.each_index.map { |i| format("%.1f,%.1f", x.call(i), y.call(above[i])) } +
                   below.each_index.to_a.reverse.map { |i| format("%.1f,%.1f", x.call(i), y.call(below[i])) }
          tip = "#{name}: #{values.map { |v| format("%.1f MB", v / 1e6) }.join(" → ")}"
          below = above
          "<polygon points=\"#{points.join(" ")}\" fill=\"#{LAYER_COLOURS.fetch(name)}\"><title>#{h(tip)}</title></polygon>"
        end
        legend = layers.each_with_index.map do |(name, _), i|
          "<rect x=\"#{50 + (i * 140)}\" y=\"2\" width=\"10\" height=\"10\" fill=\"#{LAYER_COLOURS.fetch(name)}\"/>" \
            "<text x=\"#{64 + (i * 140)}\" y=\"11\" font-size=\"10\">#{h(name.to_s.tr("_", " "))}</text>"
        end
        "<svg id=\"breakdown\" class=\"breakdown\" width=\"#{width}\" height=\"#{height}\" viewBox=\"0 0 #{width} #{height}\" " \
          "role=\"img\" aria-label=\"memory breakdown over time, stacked, from 0 to #{format("%.1f MB", max / 1e6)}\">" \
          "#{polygons.join}#{legend.join}" \
          "<text x=\"2\" y=\"#{height - 20}\" font-size=\"11\">0</text>" \
          "<text x=\"2\" y=\"#{y.call(max) + 4}\" font-size=\"11\">#{h(format("%.0f MB", max / 1e6))}</text></svg>"
      end

      # What makes the site grow, when jobs or requests were counted.
      def driver(site)
        driver = site.growth_driver
        return "" if driver.nil? || driver.status == :no_work

        %(<p class="driver"><b>What makes it grow:</b> #{h(driver.to_s)}</p>)
      end

      def rates(site)
        rate = format("%+.1f per snapshot", site.growth_per_snapshot)
        site.growth_per_hour ? "#{rate}, #{format("%+.0f", site.growth_per_hour)} per hour" : rate
      end

      def percent(share)
        share ? format("%.0f%%", share * 100) : "none"
      end

      SITE_COLUMNS = ["#", "Verdict", "Site", "Location", "Trend", "First", "Last", "Growth", "Per hour",
                      "Kept", "Last memsize"].freeze

      # The first +top+ sites that have an allocation site, then one row per verdict
      # for all the sites without one (objects allocated before tracing began, or with
      # it off): hundreds of rows that say the same thing would bury the rest.
      def sites_table
        unsited, sited = @trend.partition { |site| site.file.nil? }
        rows = sited.first(@top).map do |site|
          cells = [
            [site.rank, site.rank], [site.verdict, site.verdict], [site.label, site.label],
            [site.location, Raw.new("<code>#{h(site.location)}</code>")],
            [site.growth, Raw.new(sparkline(site.counts, width: 90, height: 20))],
            [site.counts.first, site.counts.first], [site.counts.last, site.counts.last],
            [site.growth, format("%+d", site.growth)],
            [site.growth_per_hour || "", site.growth_per_hour ? format("%+.0f", site.growth_per_hour) : "–"],
            [site.kept_share || -1, percent(site.kept_share)],
            [site.memsize, Raw.new(bytes(site.memsize))]
          ]
          row(cells, css: site.verdict)
        end
        rows += VERDICTS.filter_map { |verdict| unsited_row(verdict, unsited.select { |s| s.verdict == verdict }) }
        table("sites-table", SITE_COLUMNS, rows)
      end

      # The sites of one verdict that have no allocation site, summed.
      def unsited_row(verdict, sites)
        return nil if sites.empty?

        counts = sites.map(&:counts).transpose.map(&:sum)
        memsize = sites.sum(&:memsize)
        growth = counts.last - counts.first
        cells = [
          ["", "–"], [verdict, verdict], ["", "#{sites.size} site#{"s" unless sites.size == 1}"],
          [sites.first.location, Raw.new("<code>#{h(sites.first.location)}</code>")],
          [growth, Raw.new(sparkline(counts, width: 90, height: 20))],
          [counts.first, counts.first], [counts.last, counts.last], [growth, format("%+d", growth)],
          ["", "–"], [-1, "–"], [memsize, Raw.new(bytes(memsize))]
        ]
        row(cells, css: "#{verdict} unsited")
      end

      SNAPSHOT_COLUMNS = ["#", "Dump", "Time (UTC)", "RSS (MB)", "Live objects", "Live slots", "GC count",
                          "Minor GCs", "Major GCs", "Objects in dump", "Memsize in dump"].freeze

      def snapshots_table
        rows = @trend.memory.map do |point|
          time = point.time&.getutc&.strftime("%Y-%m-%d %H:%M:%S.%L")
          rss = point.rss_bytes &&
                Raw.new("<span title=\"#{point.rss_bytes} bytes\">#{format("%.1f", point.rss_bytes / 1e6)}</span>")
          cells = [
            [point.index + 1, point.index + 1], [File.basename(point.path), File.basename(point.path)],
            [time || "", time || "–"], [point.rss_bytes || "", rss || "–"]
          ] + %i[live_objects live_slots gc_count minor_gc_count major_gc_count objects memsize].map do |key|
            value = point[key]
            [value || "", value.nil? ? "–" : value]
          end
          row(cells)
        end
        table("snapshots-table", SNAPSHOT_COLUMNS, rows)
      end

      # HTML made by this class; every other value is escaped.
      Raw = Struct.new(:html)
      private_constant :Raw

      # +cells+: [sort key, shown value or Raw] pairs.
      def row(cells, css: nil)
        tds = cells.map do |key, shown|
          "<td data-sort=\"#{h(key)}\">#{shown.is_a?(Raw) ? shown.html : h(shown)}</td>"
        end
        "<tr#{" class=\"#{h(css)}\"" if css}>#{tds.join}</tr>"
      end

      def table(id, columns, rows)
        headers = columns.map { |c| "<th scope=\"col\">#{h(c)}</th>" }.join
        <<~HTML
          <div class="scroll">
          <table id="#{id}" class="sortable">
          <thead><tr>#{headers}</tr></thead>
          <tbody>
          #{rows.join("\n")}
          </tbody>
          </table>
          </div>
        HTML
      end

      def warnings_section
        return "" if @trend.warnings.empty?

        items = @trend.warnings.map { |w| "<li>#{h(w)}</li>" }.join("\n")
        "<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n#{items}\n</ul>\n</section>"
      end

      # A scaled byte count with the exact one in its tooltip.
      def bytes(count)
        "<span title=\"#{h(count)} bytes\">#{h(Printable.bytes(count))}</span>"
      end

      # An inline SVG polyline of +values+, scaled to the box, 0 at the bottom, with
      # the values in its tooltip.
      def sparkline(values, width:, height:)
        max = [values.max, 1].max
        step = values.size > 1 ? (width - 4).fdiv(values.size - 1) : 0
        points = values.each_with_index.map do |v, i|
          format("%.1f,%.1f", 2 + (i * step), height - 2 - (v.fdiv(max) * (height - 4)))
        end
        last = points.last.split(",")
        "<svg class=\"spark\" width=\"#{width}\" height=\"#{height}\" viewBox=\"0 0 #{width} #{height}\" role=\"img\" " \
          "aria-label=\"#{h(values.join(", "))}\"><title>#{h(values.join(" → "))}</title>" \
          "<polyline points=\"#{points.join(" ")}\"/>" \
          "<circle cx=\"#{last[0]}\" cy=\"#{last[1]}\" r=\"2\"/></svg>"
      end

      # +seconds+: each snapshot's time from the first (nil when untimed), which places
      # it on a time axis; +times+: its clock time, for tooltips.
      def chart_data
        memory = @trend.memory
        start = memory.first.time if @trend.timed?
        {
          labels: memory.map { |p| "##{p.index + 1}" },
          seconds: memory.map { |p| start && (p.time - start).round(3) },
          start: start&.getutc&.strftime("%Y-%m-%d %H:%M:%S UTC"),
          times: memory.map { |p| p.time&.getutc&.strftime("%H:%M:%S.%L") },
          rss_mb: memory.map { |p| p.rss_bytes && (p.rss_bytes / 1e6).round(2) },
          rss_bytes: memory.map(&:rss_bytes),
          objects: memory.map(&:objects)
        }
      end

      # Escaped, and valid UTF-8 like the page (a path need not be: LANG=C).
      def h(value)
        CGI.escapeHTML(Printable.utf8(value.to_s))
      end

      # JSON inside <script>: no "<" may close the element or open a comment there.
      def json_for_script(data)
        JSON.generate(data).gsub("<", "\\u003c").gsub(">", "\\u003e").gsub("&", "\\u0026")
      end
    end
  end
end
