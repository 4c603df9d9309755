//! Where a heap's records came from, so that a record's line can be read again when a
//! user asks for something the index does not keep (a string's value, its encoding).
//! This is what lets the index stay far smaller than the dump.

use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use crate::error::Error;

#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub gzip: bool,
    size: u64,
    modified: Option<SystemTime>,
    /// For gzip dumps: the decompressed dump in an unlinked temp file, made on the first
    /// read-back (random access into a gzip stream would mean decompressing from the start).
    inflated: Mutex<Option<File>>,
}

/// Longest line read back: no longer than loading reads.
const MAX_LINE: u64 = crate::MAX_RECORD_BYTES as u64;

impl Source {
    pub fn new(path: &Path, gzip: bool) -> io::Result<Source> {
        let meta = std::fs::metadata(path)?;
        Ok(Source {
            path: path.to_path_buf(),
            gzip,
            size: meta.len(),
            modified: meta.modified().ok(),
            inflated: Mutex::new(None),
        })
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// The line that starts at `offset` of the (decompressed) dump, without its newline.
    /// Errors: `Error::Io` naming the dump (moved, changed since the load, unreadable,
    /// or a line too long for the memory left).
    pub fn read_line(&self, offset: u64) -> Result<Vec<u8>, Error> {
        self.open()
            .and_then(|file| read_line_at(&file, offset))
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Calls `each(k, line)` for the line at each of `offsets` (ascending), reading the
    /// dump once from front to back: many lines cost one pass, not a read each.
    /// Positioned reads, like `read_line`: no file cursor is shared between threads.
    /// Errors as `read_line`.
    pub fn read_lines(&self, offsets: &[u64], each: impl FnMut(usize, &[u8])) -> Result<(), Error> {
        self.read_lines_io(offsets, each)
            .map_err(|e| Error::io(&self.path, e))
    }

    fn read_lines_io(&self, offsets: &[u64], mut each: impl FnMut(usize, &[u8])) -> io::Result<()> {
        let file = self.open()?;
        let mut buffer = vec![0u8; 1 << 20];
        let (mut start, mut len) = (0u64, 0usize);
        for (k, &offset) in offsets.iter().enumerate() {
            let in_buffer = offset >= start && offset <= start + len as u64;
            let from = (offset - start.min(offset)) as usize;
            let found = in_buffer
                .then(|| memchr::memchr(b'\n', &buffer[from..len]))
                .flatten();
            if let Some(end) = found {
                each(k, &buffer[from..from + end]);
                continue;
            }
            // Refill from the line's start; a line longer than the buffer is read alone.
            start = offset;
            len = read_full_at(&file, &mut buffer, offset)?;
            match memchr::memchr(b'\n', &buffer[..len]) {
                Some(end) => each(k, &buffer[..end]),
                None if len < buffer.len() => each(k, &buffer[..len]),
                None => each(k, &read_line_at(&file, offset)?),
            }
        }
        Ok(())
    }

    /// The dump, or for a gzip dump its decompressed copy, checked to be the file that
    /// was loaded.
    fn open(&self) -> io::Result<File> {
        let meta = std::fs::metadata(&self.path)?;
        if meta.len() != self.size || meta.modified().ok() != self.modified {
            return Err(io::Error::other(format!(
                "{} changed since it was loaded; load it again",
                self.path.display()
            )));
        }
        if !self.gzip {
            return File::open(&self.path);
        }
        let mut inflated = self.inflated.lock().unwrap_or_else(|e| e.into_inner());
        if inflated.is_none() {
            let mut temp = tempfile::tempfile()?;
            let mut decoder = MultiGzDecoder::new(BufReader::new(File::open(&self.path)?));
            io::copy(&mut decoder, &mut temp)?;
            *inflated = Some(temp);
        }
        // A second descriptor of the same open file: positioned reads only, so sharing
        // its offset with the first does not matter.
        inflated.as_ref().expect("set above").try_clone()
    }
}

/// Fills as much of `buffer` as the file has from `offset`.
fn read_full_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads from `offset` up to the next newline with positioned reads, so that readers
/// on several threads never share a file cursor.
fn read_line_at(file: &File, offset: u64) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            return Ok(line);
        }
        let end = memchr::memchr(b'\n', &chunk[..n]);
        let take = end.unwrap_or(n);
        // Lines come from the dump: one may be too long for the memory left.
        if line.try_reserve(take).is_err() {
            let message = crate::error::out_of_memory("a record", line.len() + take);
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, message));
        }
        line.extend_from_slice(&chunk[..take]);
        if end.is_some() {
            return Ok(line);
        }
        at += n as u64;
        if line.len() as u64 > MAX_LINE {
            return Err(io::Error::other("line too long to read back"));
        }
    }
}
