# frozen_string_literal: true

require "etc"
require "fiddle"
require "objspace"

module Heapdiff
  # Where this process's memory is, at one moment: the figures a snapshot's sidecar
  # records under "memory", and from which a trend tells Ruby objects from
  # fragmentation from native memory (Trend#memory_verdict).
  #
  # Every figure is in bytes, or nil where this platform cannot say:
  # - "rss", "rss_anon", "rss_file": resident memory, all of it, anonymous, and mapped
  #   from files (Linux: /proc/self/smaps_rollup, else /proc/self/status).
  # - "ruby_heap_pages": the object heap's pages (GC.stat heap_allocated_pages × the
  #   page size of the running Ruby: GC::INTERNAL_CONSTANTS[:HEAP_PAGE_SIZE]).
  # - "ruby_heap_live", "ruby_heap_free": the bytes of its live and free slots (slots ×
  #   slot size; per size pool from GC.stat_heap on Ruby 3.2+, 40-byte RVALUEs on 3.1).
  # - "ruby_malloc": memory malloc'd for live Ruby objects beyond their slots:
  #   ObjectSpace.memsize_of_all (which counts each object's slot too) less the live
  #   slots' bytes. memsize_of_all rather than a sum over a dump: it is what Ruby itself
  #   reports, and it costs one walk of the heap without writing anything.
  # - "allocator" ("glibc", "jemalloc" or nil), "malloc_in_use", "malloc_free" and
  #   "malloc_cached": the allocator's own view. What it hands out; what it keeps after
  #   free, for good (fragmentation); and what it keeps for a while and gives back on
  #   its own. glibc (malloc_info(3), summed over all arenas): free chunks are kept,
  #   nothing is cached. jemalloc (mallctl): stats.allocated; stats.active less it (free
  #   space in the pages it uses); stats.resident less active (dirty pages, which it
  #   purges after dirty_decay_ms, and its metadata).
  # - "native": what none of the above explains, rss - ruby_heap_pages - ruby_malloc -
  #   malloc_free - malloc_cached, at least 0: C extensions' malloc and mmap, thread stacks, the
  #   program's code and libraries. (Ruby's heap pages come from the allocator on some
  #   Rubies, so they are taken out of rss, not out of malloc_in_use.)
  module Memory
    PAGE_SIZE = begin
      Etc.sysconf(Etc::SC_PAGESIZE)
    rescue StandardError, NotImplementedError
      4096
    end

    class << self
      # @return [Hash{String => Integer, String, nil}] the breakdown (see the module)
      def breakdown
        rss = resident
        heap = ruby_heap
        ruby_malloc = [ObjectSpace.memsize_of_all - heap["ruby_heap_live"], 0].max
        allocator = Allocator.stats
        known = heap["ruby_heap_pages"] + ruby_malloc + allocator["malloc_free"].to_i + allocator["malloc_cached"].to_i
        { **rss, **heap, "ruby_malloc" => ruby_malloc, **allocator,
                         "native" => rss["rss"] && [rss["rss"] - known, 0].max }
      end

      # Resident set size now, cheaply: resident pages (/proc/self/statm, Linux) ×
      # the page size. What sidecars record as "rss_bytes" and what a Recorder's
      # rss_limit: compares; nil where /proc is missing.
      # @return [Integer, nil] bytes
      def rss
        pages = File.read("/proc/self/statm").split[1]
        pages && (Integer(pages) * PAGE_SIZE)
      rescue SystemCallError, IOError, ArgumentError
        nil
      end

      private

      # Resident memory from /proc: {"rss", "rss_anon", "rss_file"}.
      def resident
        text = File.read("/proc/self/smaps_rollup")
        rss = kb(text, "Rss")
        anon = kb(text, "Anonymous")
        { "rss" => rss, "rss_anon" => anon, "rss_file" => rss && anon && (rss - anon) }
      rescue SystemCallError, IOError
        from_status
      end

      def from_status
        text = File.read("/proc/self/status")
        { "rss" => kb(text, "VmRSS"), "rss_anon" => kb(text, "RssAnon"), "rss_file" => kb(text, "RssFile") }
      rescue SystemCallError, IOError
        { "rss" => nil, "rss_anon" => nil, "rss_file" => nil }
      end

      def kb(text, field)
        value = text[/^#{field}:\s*(\d+) kB/, 1]
        value && (Integer(value) * 1024)
      end

      # The object heap, per size pool where the Ruby has them (3.2+).
      def ruby_heap
        stat = GC.stat
        page = GC::INTERNAL_CONSTANTS[:HEAP_PAGE_SIZE]
        live, free = if GC.respond_to?(:stat_heap)
                       pools_live_free
                     else
                       slot = GC::INTERNAL_CONSTANTS[:RVALUE_SIZE]
                       [stat[:heap_live_slots] * slot, stat[:heap_free_slots] * slot]
                     end
        { "ruby_heap_pages" => stat[:heap_allocated_pages] * page, "ruby_heap_live" => live, "ruby_heap_free" => free }
      end

      # Ruby 3.2+: [live bytes, free bytes] summed over the size pools. A pool's live
      # objects are its allocations less its frees; its slots, those of its eden pages.
      def pools_live_free
        GC.stat_heap.each_value.reduce([0, 0]) do |(live, free), pool|
          slots = pool[:heap_eden_slots]
          used = [pool[:total_allocated_objects] - pool[:total_freed_objects], slots].min
          [live + (used * pool[:slot_size]), free + ((slots - used) * pool[:slot_size])]
        end
      end
    end

    # The allocator's statistics, through Fiddle: jemalloc's mallctl when jemalloc
    # serves malloc (LD_PRELOAD, or a Ruby linked with it), else glibc's malloc_info.
    module Allocator
      NONE = { "allocator" => nil, "malloc_in_use" => nil, "malloc_free" => nil, "malloc_cached" => nil }.freeze

      class << self
        # @return [Hash{String => Integer, String, nil}] "allocator", "malloc_in_use",
        #   "malloc_free"; nils where neither allocator answers
        def stats
          jemalloc || glibc || NONE
        rescue StandardError, Fiddle::DLError
          NONE
        end

        private

        def libc
          Fiddle::Handle::DEFAULT
        end

        def function(name, args, ret)
          Fiddle::Function.new(libc[name], args, ret)
        rescue Fiddle::DLError
          nil
        end

        # jemalloc: bump the epoch (its statistics are cached until then), then read
        # what it has handed out and what it holds resident.
        def jemalloc
          @mallctl = function("mallctl", ([Fiddle::TYPE_VOIDP] * 4) + [Fiddle::TYPE_SIZE_T], Fiddle::TYPE_INT) ||
                     function("je_mallctl", ([Fiddle::TYPE_VOIDP] * 4) + [Fiddle::TYPE_SIZE_T], Fiddle::TYPE_INT) ||
                     (return nil)
          epoch = [1].pack("Q")
          @mallctl.call("epoch", nil, nil, epoch, 8)
          allocated, active, resident = %w[allocated active resident].map { |name| mallctl_size("stats.#{name}") }
          return nil unless allocated && active && resident

          # Free space inside the pages jemalloc uses is fragmentation; the rest of what
          # it holds resident is dirty pages it gives back on its own (decay, 10 s by
          # default) and its metadata.
          { "allocator" => "jemalloc", "malloc_in_use" => allocated, "malloc_free" => [active - allocated, 0].max,
            "malloc_cached" => [resident - active, 0].max }
        end

        def mallctl_size(name)
          value = Fiddle::Pointer.malloc(8, Fiddle::RUBY_FREE)
          length = Fiddle::Pointer.malloc(8, Fiddle::RUBY_FREE)
          length[0, 8] = [8].pack("Q")
          @mallctl.call(name, value, length, nil, 0).zero? ? value[0, 8].unpack1("Q") : nil
        end

        # glibc: malloc_info(3) writes XML for every arena and their totals into a
        # stream (open_memstream(3), so nothing touches the disk). mallinfo2 would be
        # simpler, but it returns a struct by value, which Fiddle cannot take.
        def glibc
          open_memstream = function("open_memstream", [Fiddle::TYPE_VOIDP, Fiddle::TYPE_VOIDP], Fiddle::TYPE_VOIDP)
          malloc_info = function("malloc_info", [Fiddle::TYPE_INT, Fiddle::TYPE_VOIDP], Fiddle::TYPE_INT)
          fclose = function("fclose", [Fiddle::TYPE_VOIDP], Fiddle::TYPE_INT)
          return nil unless open_memstream && malloc_info && fclose

          xml = memstream_text(open_memstream, fclose) { |stream| malloc_info.call(0, stream) }
          xml && glibc_totals(xml)
        end

        def memstream_text(open_memstream, fclose)
          buffer = Fiddle::Pointer.malloc(Fiddle::SIZEOF_VOIDP, Fiddle::RUBY_FREE)
          size = Fiddle::Pointer.malloc(Fiddle::SIZEOF_SIZE_T, Fiddle::RUBY_FREE)
          stream = open_memstream.call(buffer, size)
          return nil if stream.null?

          status = yield stream
          fclose.call(stream)
          text = buffer.ptr
          begin
            status.zero? ? text.to_s(size[0, Fiddle::SIZEOF_SIZE_T].unpack1("J")) : nil
          ensure
            Fiddle.free(text) unless text.null?
          end
        end

        # The last <total>/<system> elements are the totals over all arenas: free
        # chunks ("fast" bins and the "rest"), memory mapped for large blocks
        # ("mmap"), and what the arenas took from the system ("current").
        def glibc_totals(xml)
          totals = xml[%r{</heap>(?!.*</heap>)(.*)\z}m, 1] || xml
          size = ->(pattern) { totals[pattern, 1].to_i }
          free = size.call(/<total type="fast" count="\d+" size="(\d+)"/) +
                 size.call(/<total type="rest" count="\d+" size="(\d+)"/)
          mmap = size.call(/<total type="mmap" count="\d+" size="(\d+)"/)
          system = size.call(/<system type="current" size="(\d+)"/)
          # glibc gives free chunks back only at the top of an arena or on malloc_trim:
          # all of it is kept, none of it is a cache that empties itself.
          { "allocator" => "glibc", "malloc_in_use" => [system - free, 0].max + mmap, "malloc_free" => free,
            "malloc_cached" => 0 }
        end
      end
    end
  end
end
