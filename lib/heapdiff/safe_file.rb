# frozen_string_literal: true

require "securerandom"

module Heapdiff
  # The one way heapdiff creates files (redacted copies, HTML reports, snapshots): a
  # new file under an unpredictable name, opened with O_EXCL | O_NOFOLLOW, so that a
  # symlink or file another user planted in a shared directory (/tmp) is never opened,
  # let alone written through. The final name is then given by rename(2), which
  # replaces a symlink at that name rather than following it.
  module SafeFile
    # Never an existing file, never through a symlink.
    CREATE = File::CREAT | File::EXCL | File::NOFOLLOW | File::BINARY

    module_function

    # ".tmp-PID-RANDOM": the pid lets a Recorder tell a dead process's leftovers;
    # the 64 random bits keep anyone from guessing the name ahead of time.
    def temp_suffix
      ".tmp-#{Process.pid}-#{SecureRandom.hex(8)}"
    end

    # Creates the new file +path+ with +mode+ (raises Errno::EEXIST if anything,
    # symlink included, has that name). Returns the open File.
    def create(path, mode, readable: false)
      File.open(path, (readable ? File::RDWR : File::WRONLY) | CREATE, mode)
    end

    # Writes +path+ complete or not at all: the block gets a File on a hidden temporary
    # beside +path+ (same file system, so the rename is atomic), which is fsynced and
    # renamed over +path+. On any failure the temporary is removed and the error
    # re-raised. Returns the block's value.
    def write(path, mode: 0o600)
      temp = File.join(File.dirname(path), ".#{File.basename(path)}#{temp_suffix}")
      io = create(temp, mode)
      begin
        result = yield io
        io.fsync
        io.close
        File.rename(temp, path)
        temp = nil
        result
      ensure
        io.close unless io.closed?
        remove_quietly(temp) if temp
      end
    end

    def remove_quietly(path)
      File.unlink(path)
    rescue SystemCallError
      nil
    end
  end
end
