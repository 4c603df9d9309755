//! The reader: streams the file (plain or gzip) in batches of whole records.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::framing::{last_record_start, starts_like_a_record};
use crate::MAX_RECORD_BYTES;

/// Bytes read per batch. Three batches are in memory at once per load (one filling,
/// one waiting, one parsing): kept small, because a diff runs three loads at once and
/// their batches add to its peak RSS. 1 MB rather than 4: `heapdiff diff` of three
/// 50 MB dumps peaked at 67–82 MB with 4 MB batches, 59–63 MB with 1 MB, and loads of
/// 366 MB are no slower with 1 MB (bench/PROFILE.md).
const BATCH_BYTES: usize = 1 << 20;

pub(super) fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub(super) struct CountingReader {
    pub(super) inner: File,
    pub(super) count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A run of whole records, and where it starts in the (decompressed) stream.
pub(super) struct Batch {
    /// The buffer; only `data[..len]` holds the batch.
    pub(super) data: Vec<u8>,
    pub(super) len: usize,
    pub(super) offset: u64,
    pub(super) eof: bool,
    /// Why the stream ended early, when it did (a truncated gzip file).
    pub(super) cut_short: Option<String>,
}

/// Reads the stream into batches that end just before a record start (`\n{`), so that
/// every batch holds whole records. A record longer than a batch grows the batch.
pub(super) fn read_batches(
    mut reader: Box<dyn Read + Send>,
    gzip: bool,
    sender: &std::sync::mpsc::SyncSender<io::Result<Batch>>,
    recycled: &std::sync::mpsc::Receiver<Vec<u8>>,
    stop: &AtomicBool,
) {
    let mut carry: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Recycled buffers keep their length, so only a buffer's first use zeroes it.
        let mut data = recycled.try_recv().unwrap_or_default();
        // A record longer than a batch doubles the buffer each round: linear overall.
        // Never more than the longest record allowed, plus one byte to see it is longer.
        let want = (carry.len() * 2).clamp(BATCH_BYTES, MAX_RECORD_BYTES + 1);
        if data.len() < want {
            if data.try_reserve_exact(want - data.len()).is_err() {
                let _ = sender.send(Err(out_of_memory(want - data.len())));
                return;
            }
            data.resize(want, 0);
        }
        data[..carry.len()].copy_from_slice(&carry);
        let mut filled = carry.len();
        carry.clear();
        let mut eof = false;
        let mut cut_short = None;
        while filled < want {
            match reader.read(&mut data[filled..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if gzip && offset + filled as u64 > 0 => {
                    // A gzip stream cut short (the writer died): keep what it held.
                    cut_short = Some(e.to_string());
                    eof = true;
                    break;
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            }
        }
        if !eof {
            match last_record_start(&data[..filled]) {
                Some(cut) => {
                    carry.extend_from_slice(&data[cut..filled]);
                    filled = cut;
                }
                None if offset == 0 && !starts_like_a_record(&data[..filled]) => {
                    // Not a heap dump: hand it over now so that the parse says so,
                    // instead of reading the whole file in search of a record.
                }
                None if filled > MAX_RECORD_BYTES => {
                    // The loader names the line, which only it knows.
                    let _ = sender.send(Err(io::ErrorKind::FileTooLarge.into()));
                    return;
                }
                None => {
                    // One record larger than the buffer: keep reading into a bigger one.
                    if carry.try_reserve_exact(filled).is_err() {
                        let _ = sender.send(Err(out_of_memory(filled)));
                        return;
                    }
                    carry.extend_from_slice(&data[..filled]);
                    continue;
                }
            }
        }
        let len = filled as u64;
        let batch = Batch {
            data,
            len: filled,
            offset,
            eof,
            cut_short,
        };
        if filled > 0 && sender.send(Ok(batch)).is_err() {
            return;
        }
        offset += len;
        if eof {
            return;
        }
    }
}

/// A buffer for one record could not grow by `bytes` (the loader adds the line).
fn out_of_memory(bytes: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        crate::error::out_of_memory("a record", bytes),
    )
}
