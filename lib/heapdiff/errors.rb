# frozen_string_literal: true

module Heapdiff
  # The base of every error heapdiff raises.
  class Error < StandardError; end

  # The file is not a heap dump (or a line of it is no record at all), or a record
  # or the index is too large for the memory left. The message names the file and the
  # line: "path:LINE: not a heap dump record (why)", "path:LINE: too large to load:
  # could not allocate N MB for a record"; #path and #line carry the same facts as data
  # (the extension sets them when it raises).
  class ParseError < Error
    # @return [String, nil] the file that is not a heap dump
    attr_reader :path
    # @return [Integer, nil] the line (from 1) of the first line that is no record; nil
    #   when the error is not about one line
    attr_reader :line

    # @param message [String]
    # @param path [String, nil]
    # @param line [Integer, nil]
    def initialize(message = nil, path = nil, line = nil)
      super(message)
      @path = path
      @line = line
    end
  end

  # The file could not be read (missing, unreadable, changed since it was loaded).
  class FileError < Error; end

  # A snapshot could not be written: disk full, permission denied, the dumping child
  # died. The message names the directory; #cause holds the system error, if any.
  class SnapshotError < Error; end

  # A baseline of known leaks (Heapdiff::Baseline) that cannot be read or written, or
  # is not one. The message names the file.
  class BaselineError < Error; end

  # Snapshots that cannot make a trend: fewer than two, or not in time order.
  class TrendError < Error; end

  # Snapshots of different processes given where one process's are needed (a diff, a
  # trend): their sidecars name different processes (ProcessIdentity). #processes
  # lists them, each with its snapshots' paths, latest process last.
  class MixedProcessesError < Error
    # @return [Hash{ProcessIdentity => Array<String>}] each process's dump paths
    attr_reader :processes

    # @param message [String]
    # @param processes [Hash{ProcessIdentity => Array<String>}]
    def initialize(message = nil, processes = {})
      super(message)
      @processes = processes
    end
  end

  # Long work was stopped from outside (Thread#kill, Timeout, Ctrl-C) and nothing
  # else was raised for it.
  class Interrupted < Error; end
end
