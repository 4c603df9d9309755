# frozen_string_literal: true

require_relative "../errors"
require_relative "../arguments"
require_relative "../native"
require_relative "../safe_file"
require_relative "names"

module Heapdiff
  class << self
    # Writes a copy of the dump +input+ (plain or gzip) to +output+ without any string,
    # symbol or float value: what a dump holds beyond that (class names, file paths,
    # method and ivar names, addresses) stays, so the copy diffs and paths the same.
    # +gzip:+ compresses the output (default: when +output+ ends in .gz). The output
    # appears complete or not at all (written beside it, then renamed), mode 0600.
    # The input's names sidecar (heap-0001.names.json), if any, is copied beside the
    # output: names are code, not data. Returns counts: { records:, values_removed:, rebuilt_records:, … }.
    #
    # @param input [String, Pathname]
    # @param output [String, Pathname]
    # @param gzip [Boolean, nil]
    # @return [Hash{Symbol => Integer, Boolean, String, nil}] counts, from the redactor (heapdiff-core's redact.rs)
    # @raise [ParseError] the input is not a heap dump, or a record is too large (names the line)
    # @raise [FileError] the input cannot be read or the output written
    # @raise [ArgumentError] the output would replace the input
    # @raise [Interrupted] stopped from outside
    def redact(input, output, gzip: nil)
      Redactor.redact_file(input, output, gzip: gzip)
    end
  end

  # The streaming redactor (in Rust, without the GVL). Heapdiff.redact, the
  # `heapdiff redact` command and Heapdiff.snapshot(redact: true) use it.
  module Redactor
    MODE = 0o600

    class << self
      # Heapdiff.redact.
      def redact_file(input, output, gzip: nil)
        input = File.expand_path(Arguments.path(input, "input"))
        output = File.expand_path(Arguments.path(output, "output"))
        gzip = output.end_with?(".gz") if NilClass === gzip
        raise ArgumentError, "heapdiff: the output would replace the input (#{input})" if same_file?(input, output)
        # Before opening: open(2) of a FIFO blocks until a writer comes.
        raise FileError, "heapdiff: #{input}: not a regular file" if File.exist?(input) && !File.file?(input)

        stats = File.open(input, "rb") do |src|
          SafeFile.write(output, mode: MODE) do |dst|
            redact_io(src, dst, gzip: gzip, input_name: input, output_name: output)
          end
        end
        copy_names(input, output)
        stats
      rescue SystemCallError => e
        raise FileError, "heapdiff: #{e.message}"
      end

      # Redacts from one open file into another (both must be files, not pipes: each
      # attempt starts from the beginning). Reads +input+ from its start; replaces what
      # +output+ held. +input_name+/+output_name+ name them in errors.
      def redact_io(input, output, gzip:, input_name: input.path, output_name: output.path)
        output.flush
        stats = _redact(input.fileno, input_name.to_s, output.fileno, output_name.to_s, gzip ? true : false)
        output.fsync
        stats
      end

      private

      def copy_names(input, output)
        names = Names.path_for(input)
        return unless File.file?(names)

        SafeFile.write(Names.path_for(output), mode: MODE) { |dst| IO.copy_stream(names, dst) }
      end

      def same_file?(a, b)
        a == b || (File.exist?(b) && File.identical?(a, b))
      end
    end
  end
end
