# frozen_string_literal: true

module Heapdiff
  # Warnings of several dumps, as a report shows them. Each dump of Ruby 3.0/3.1 that
  # holds a non-ASCII method name has records the loader recovered; one line per dump
  # would say the same thing N times, so a Report and a Trend fold those into one
  # line. Heap#warnings keeps each dump's own, with its line numbers.
  module Warnings
    # The loader's wording (ext/heapdiff-core/src/heap.rs): "PATH: N record(s) were not
    # valid JSON and were recovered (WHY): line …".
    RECOVERED = /\A(?<path>.+): (?<count>\d+) record\(s\) were not valid JSON and were recovered \((?<why>[^)]*)\): /

    module_function

    # +warnings+ with the recovered-records lines of two or more dumps folded into one,
    # where the first of them was. Other warnings are left as they are.
    # @param warnings [Array<String>]
    # @return [Array<String>]
    def fold(warnings)
      recovered = warnings.filter_map { |w| (m = RECOVERED.match(w)) && [w, m] }
      return warnings if recovered.size < 2

      total = recovered.sum { |_, m| m[:count].to_i }
      per_dump = recovered.map { |_, m| "#{File.basename(m[:path])} #{m[:count]}" }.join(", ")
      folded = "#{total} record(s) in #{recovered.size} dumps were not valid JSON and were recovered " \
               "(#{recovered.first[1][:why]}): #{per_dump}; Heap#warnings gives each dump's lines"
      first = warnings.index(recovered.first[0])
      rest = warnings - recovered.map(&:first)
      rest.insert(first, folded)
    end
  end
end
