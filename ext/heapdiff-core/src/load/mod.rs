//! Loading a dump: a reader thread streams the file (plain or gzip) in batches that end
//! on a record boundary; each batch is cut into pieces parsed in parallel with rayon;
//! the pieces are appended in order to the columns. Memory stays at the index plus a
//! few batches, never the whole file.

mod framing;
mod index;
mod piece;
mod read;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use crate::error::{record_too_long, Error};
use crate::heap::Heap;
use crate::source::Source;
use framing::split_pieces;
use index::IndexBuilder;
use piece::{parse_piece, ParsedPiece};
use read::{read_batches, read_up_to, Batch, CountingReader};

#[derive(Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Set from another thread (Ctrl-C, Thread#kill) to stop a load early.
    pub cancel: Option<&'a AtomicBool>,
}

/// Loads the heap dump at `path` (plain or gzip, detected by content) into a `Heap`.
///
/// A reader thread streams the file in batches of about 1 MB; rayon parses each batch's
/// pieces in parallel; memory holds the index plus a few batches. Lines that are not
/// valid JSON as the emitter wrote them are recovered where the record is clear (see
/// `Heap::warnings` and `LoadStats`).
///
/// Errors: `Error::Io` when the file cannot be opened or read (or is not a regular
/// file), `Error::Parse` (path, 1-based line, reason) for the first line that is no
/// record or one longer than `MAX_RECORD_BYTES`, `Error::TooLarge` (path, line) when
/// the index or a record needs more memory than can be allocated, `Error::Cancelled`
/// when `options.cancel` was set.
pub fn load(path: &Path, options: LoadOptions<'_>) -> Result<Heap, Error> {
    let io_error = |error| Error::io(path, error);
    // The type is checked before opening too: open(2) of a FIFO with no writer blocks
    // until one comes, past any cancel.
    if !std::fs::metadata(path).map_err(io_error)?.is_file() {
        return Err(io_error(not_a_regular_file()));
    }
    let mut file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(not_a_regular_file()));
    }
    let total = metadata.len();
    let mut magic = [0u8; 2];
    let magic_len = read_up_to(&mut file, &mut magic).map_err(io_error)?;
    let gzip = magic_len == 2 && magic == [0x1f, 0x8b];
    let source = Source::new(path, gzip).map_err(io_error)?;
    let file = File::open(path).map_err(io_error)?;
    let consumed = Arc::new(AtomicU64::new(0));
    let counting = CountingReader {
        inner: file,
        count: consumed.clone(),
    };
    let reader: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(io::BufReader::with_capacity(
            1 << 20,
            counting,
        )))
    } else {
        Box::new(counting)
    };

    let mut builder = IndexBuilder::new(path);
    builder.stats.gzip = gzip;
    let stop_reader = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = sync_channel::<io::Result<Batch>>(1);
    // Parsed batches go back to the reader to be filled again: no page faults on fresh
    // buffers for every batch.
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader_stop = stop_reader.clone();
    let reader_thread = std::thread::Builder::new()
        .name("heapdiff-reader".into())
        .spawn(move || read_batches(reader, gzip, &sender, &recycled, &reader_stop))
        .map_err(io_error)?;

    // Batch N is appended (in file order, on this thread) while the workers parse
    // batch N+1: appending is serial, and done after the parse it took a quarter of a
    // load's time on two cores.
    let mut parsed: Option<ParsedBatch> = None;
    let result = (|| {
        loop {
            // Wait in short steps, so that a cancel is seen while the reader is busy
            // (a record of hundreds of megabytes takes a while to read).
            let batch = match receiver.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => {
                    if cancelled(options.cancel) {
                        return Err(Error::Cancelled);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    // The batches before a failed one are appended: the record that
                    // did not fit starts on the next line.
                    if let Some(done) = parsed.take() {
                        done.append_to(&mut builder, total)?;
                    }
                    let next_line = builder.stats.lines + 1;
                    return Err(match e.kind() {
                        io::ErrorKind::FileTooLarge => {
                            Error::parse(path, next_line, record_too_long())
                        }
                        io::ErrorKind::OutOfMemory => {
                            Error::too_large(path, next_line, e.to_string())
                        }
                        _ => io_error(e),
                    });
                }
            };
            if cancelled(options.cancel) {
                return Err(Error::Cancelled);
            }
            let read = consumed.load(Ordering::Relaxed).min(total);
            let previous = parsed.take();
            let (appended, next) = rayon::join(
                || previous.map_or(Ok(()), |done| done.append_to(&mut builder, total)),
                || ParsedBatch::parse(&batch, read, options.cancel),
            );
            appended?;
            // A parse that saw the cancel stopped part way: never append it.
            if cancelled(options.cancel) {
                return Err(Error::Cancelled);
            }
            parsed = Some(next);
            let _ = recycle.send(batch.data);
        }
        match parsed.take() {
            Some(done) => done.append_to(&mut builder, total),
            None => Ok(()),
        }
    })();
    stop_reader.store(true, Ordering::Relaxed);
    drop(receiver);
    let _ = reader_thread.join();
    result?;
    // Another process truncated the file while it was read: its end then looks like a
    // dump whose writer died, which is not what happened.
    if let Ok(now) = std::fs::metadata(path) {
        if now.len() < total {
            builder.stats.shrank_while_read = Some((total, now.len()));
        }
    }
    if builder.stats.lines == builder.stats.blank_lines {
        let reason = if builder.stats.lines == 0 {
            "the file is empty"
        } else {
            "the file holds only blank lines"
        };
        return Err(Error::parse(path, 1, reason));
    }
    builder.finish(source, options.cancel)
}

/// One batch's pieces, parsed, waiting to be appended in file order.
struct ParsedBatch {
    pieces: Vec<ParsedPiece>,
    len: usize,
    /// Bytes of the file read when the batch arrived (compressed bytes for gzip).
    read: u64,
    cut_short: Option<String>,
}

impl ParsedBatch {
    fn parse(batch: &Batch, read: u64, cancel: Option<&AtomicBool>) -> ParsedBatch {
        let bytes = &batch.data[..batch.len];
        let pieces = split_pieces(bytes)
            .par_iter()
            .map(|&(start, end)| {
                parse_piece(
                    &bytes[start..end],
                    batch.offset + start as u64,
                    batch.eof && end == bytes.len(),
                    cancel,
                )
            })
            .collect();
        ParsedBatch {
            pieces,
            len: batch.len,
            read,
            cut_short: batch.cut_short.clone(),
        }
    }

    /// `total`: the file's size, to size the columns from the first batch.
    fn append_to(self, builder: &mut IndexBuilder, total: u64) -> Result<(), Error> {
        if builder.stats.bytes == 0 && self.read > 0 {
            // Size the columns once from the first batch's objects per file byte.
            let objects: usize = self.pieces.iter().map(|c| c.columns.len()).sum();
            let estimate = (objects as f64 * total as f64 / self.read as f64 * 1.02) as usize;
            // Only a hint: a file that claims more than fits (a sparse file, one of
            // junk) grows the columns as its records come instead, and fails with
            // TooLarge only if those do not fit.
            let _ = builder.columns.try_reserve(estimate.min(1 << 31));
        }
        for piece in self.pieces {
            builder.append(piece)?;
        }
        builder.stats.bytes += self.len as u64;
        if self.cut_short.is_some() {
            builder.stats.stream_cut_short = self.cut_short;
        }
        Ok(())
    }
}

fn not_a_regular_file() -> io::Error {
    // Values are read back from the file later, which a pipe cannot do.
    io::Error::other(
        "not a regular file (a pipe or device cannot be read back); save the dump to a file first",
    )
}

pub(super) fn cancelled(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::io_message;

    #[test]
    fn io_message_leaves_out_the_os_error_number() {
        let missing = io::Error::from_raw_os_error(2);
        assert!(missing.to_string().ends_with("(os error 2)"));
        assert_eq!(io_message(&missing), "No such file or directory");
        let custom = io::Error::other("a custom message (os error 2)");
        assert_eq!(io_message(&custom), "a custom message (os error 2)");
    }
}
