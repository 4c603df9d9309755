//! Loading a dump: a reader thread streams the file (plain or gzip) in batches that end
//! on a record boundary; each batch is cut into pieces parsed in parallel with rayon;
//! the pieces are appended in order to the columns. Memory stays at the index plus a
//! few batches, never the whole file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use hashbrown::HashMap;
use rayon::prelude::*;

use crate::address_index::AddressIndex;
use crate::heap::{Columns, Heap, LoadStats, Root, Shape, ABSENT, SAMPLE_LIMIT};
use crate::intern::{Interner, NONE};
use crate::object_type::ObjectType;
use crate::record::{flag, parse_line_into, Record, RecordKind};
use crate::source::Source;
use crate::MAX_RECORD_BYTES;

/// Bytes read per batch. Three batches are in memory at once per load (one filling,
/// one waiting, one parsing): kept small, because a diff runs three loads at once and
/// their batches add to its peak RSS.
const BATCH_BYTES: usize = 4 << 20;
/// Smallest piece handed to one parsing task.
const MIN_PIECE_BYTES: usize = 1 << 20;

#[derive(Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Set from another thread (Ctrl-C, Thread#kill) to stop a load early.
    pub cancel: Option<&'a AtomicBool>,
    /// Called with (bytes of the file read so far, file size) after each batch.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

#[derive(Debug)]
pub enum LoadError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    NotAHeapDump {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    Cancelled,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::NotAHeapDump { path, line, reason } => write!(
                f,
                "{}:{line}: not a heap dump record ({reason})",
                path.display()
            ),
            LoadError::Cancelled => write!(f, "loading was interrupted"),
        }
    }
}

impl std::error::Error for LoadError {}

pub fn load(path: &Path, options: LoadOptions<'_>) -> Result<Heap, LoadError> {
    let io_error = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
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

    let mut builder = Builder::new(path);
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

    let result = (|| {
        loop {
            // Wait in short steps, so that a cancel is seen while the reader is busy
            // (a record of hundreds of megabytes takes a while to read).
            let batch = match receiver.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => {
                    if cancelled(options.cancel) {
                        return Err(LoadError::Cancelled);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch = match batch {
                Err(e) if e.get_ref().is_some_and(|e| e.is::<RecordTooLong>()) => {
                    // The batches before it are appended: the record starts on the next line.
                    return Err(builder.not_a_dump(builder.stats.lines + 1, e.to_string()));
                }
                batch => batch.map_err(io_error)?,
            };
            if cancelled(options.cancel) {
                return Err(LoadError::Cancelled);
            }
            let bytes = &batch.data[..batch.len];
            let pieces = split_pieces(bytes);
            let chunks: Vec<Chunk> = pieces
                .par_iter()
                .map(|&(start, end)| {
                    parse_piece(
                        &bytes[start..end],
                        batch.offset + start as u64,
                        batch.eof && end == bytes.len(),
                        options.cancel,
                    )
                })
                .collect();
            if cancelled(options.cancel) {
                return Err(LoadError::Cancelled);
            }
            let read = consumed.load(Ordering::Relaxed).min(total);
            if builder.stats.bytes == 0 && read > 0 {
                // Size the columns once from the first batch's objects per file byte.
                let objects: usize = chunks.iter().map(|c| c.columns.len()).sum();
                let estimate = (objects as f64 * total as f64 / read as f64 * 1.02) as usize;
                builder.columns.reserve(estimate.min(1 << 31));
            }
            for chunk in chunks {
                builder.append(chunk)?;
            }
            builder.stats.bytes += batch.len as u64;
            if batch.cut_short.is_some() {
                builder.stats.stream_cut_short = batch.cut_short.clone();
            }
            let _ = recycle.send(batch.data);
            if let Some(progress) = options.progress {
                progress(read, total);
            }
        }
        Ok(())
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
        return Err(LoadError::NotAHeapDump {
            path: path.to_path_buf(),
            line: 1,
            reason: if builder.stats.lines == 0 {
                "the file is empty".into()
            } else {
                "the file holds only blank lines".into()
            },
        });
    }
    builder.finish(source, options.cancel)
}

fn not_a_regular_file() -> io::Error {
    // Values are read back from the file later, which a pipe cannot do.
    io::Error::other(
        "not a regular file (a pipe or device cannot be read back); save the dump to a file first",
    )
}

fn cancelled(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

struct CountingReader {
    inner: File,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A run of whole records, and where it starts in the (decompressed) stream.
struct Batch {
    /// The buffer; only `data[..len]` holds the batch.
    data: Vec<u8>,
    len: usize,
    offset: u64,
    eof: bool,
    /// Why the stream ended early, when it did (a truncated gzip file).
    cut_short: Option<String>,
}

/// Reads the stream into batches that end just before a record start (`\n{`), so that
/// every batch holds whole records. A record longer than a batch grows the batch.
fn read_batches(
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
            if let Err(e) = data.try_reserve_exact(want - data.len()) {
                let _ = sender.send(Err(io::Error::new(io::ErrorKind::OutOfMemory, e)));
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
                    let _ = sender.send(Err(io::Error::other(RecordTooLong)));
                    return;
                }
                None => {
                    // One record larger than the buffer: keep reading into a bigger one.
                    if let Err(e) = carry.try_reserve_exact(filled) {
                        let _ = sender.send(Err(io::Error::new(io::ErrorKind::OutOfMemory, e)));
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

/// A record longer than `MAX_RECORD_BYTES`, found by the reader thread.
#[derive(Debug)]
pub(crate) struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a record longer than {} MB, heapdiff's limit",
            MAX_RECORD_BYTES >> 20
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// Does the stream begin (after blank space) with `{`, as every dump does?
fn starts_like_a_record(data: &[u8]) -> bool {
    data.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{')
}

/// Does a record start at `at`? Every record the emitter writes begins with its
/// `address` or its `type` member. Checking the member name, not just the `{`, matters:
/// the junk of a broken line can hold a newline followed by `{`.
fn is_record_start(data: &[u8], at: usize) -> bool {
    let rest = &data[at..];
    rest.starts_with(b"{\"address\":") || rest.starts_with(b"{\"type\":")
}

/// Position of the `{` that starts the last record (just after a `\n`), if any. A
/// record cut by the end of `data` cannot be judged yet, so only a start followed by
/// enough bytes to see its first member counts.
fn last_record_start(data: &[u8]) -> Option<usize> {
    let mut end = data.len();
    while let Some(nl) = memchr::memrchr(b'\n', &data[..end]) {
        if data.len() - (nl + 1) >= 11 && is_record_start(data, nl + 1) {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// Position of the first record start at or after `from`.
fn next_record_start(data: &[u8], from: usize) -> Option<usize> {
    next_record(data, from).0
}

/// The first record start at or after `from` (None: the data ends first), and the
/// number of newlines before it.
fn next_record(data: &[u8], from: usize) -> (Option<usize>, u64) {
    let mut at = from;
    let mut newlines = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[at..]) {
        newlines += 1;
        let next = at + nl + 1;
        if data.get(next) == Some(&b'{') && is_record_start(data, next) {
            return (Some(next), newlines);
        }
        at = next;
    }
    (None, newlines)
}

/// Cuts a batch into pieces of whole records for the parallel parse.
fn split_pieces(data: &[u8]) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let target = (data.len() / (threads * 4)).max(MIN_PIECE_BYTES);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = if start + target >= data.len() {
            data.len()
        } else {
            next_record_start(data, start + target).unwrap_or(data.len())
        };
        pieces.push((start, end));
        start = end;
    }
    pieces
}

/// What one piece parsed to, with piece-local interned ids, offsets and line numbers.
#[derive(Default)]
struct Chunk {
    columns: Columns,
    strings: Interner,
    references: Vec<u64>,
    /// Per object, the end of its references in `references`.
    reference_ends: Vec<u32>,
    roots: Vec<(u32, Vec<u64>)>,
    shapes: Vec<Shape>,
    class_names: Vec<(u64, u32)>,
    class_parents: Vec<(u64, u64)>,
    stats: LoadStats,
    /// Newlines in the piece.
    lines: u64,
    offset: u64,
    /// The first line that is no record at all: local line number, why, and whether it
    /// is the unterminated last line of the file (then it is a truncation, not an error).
    bad_line: Option<(u64, String, bool)>,
    /// The last file, method and subtype interned: neighbours in a dump were often
    /// allocated by the same code, and a compare is cheaper than a hash lookup.
    last_file: u32,
    last_method: u32,
    last_subtype: u32,
}

fn parse_piece(data: &[u8], offset: u64, last: bool, cancel: Option<&AtomicBool>) -> Chunk {
    let mut chunk = Chunk {
        offset,
        ..Chunk::default()
    };
    let mut scratch = Scratch::default();
    let mut start = 0;
    let mut line_no = 0u64; // newlines before the current record
    let mut count = 0u32;
    while start < data.len() {
        count = count.wrapping_add(1);
        if count.is_multiple_of(4096) && cancelled(cancel) {
            break;
        }
        let (next, newlines) = next_record(data, start);
        let end = next.unwrap_or(data.len());
        let segment = &data[start..end];
        let terminated = segment.last() == Some(&b'\n');
        let line = trim_end(segment);
        let this_line = line_no + 1;
        if line.is_empty() {
            chunk.stats.blank_lines += newlines.max(1);
        } else {
            let final_unterminated = last && end == data.len() && !terminated;
            // More than one newline in a record: junk bytes with raw newlines in it.
            let spans_lines = newlines > 1 && line.contains(&b'\n');
            if !chunk.record(
                line,
                this_line,
                start as u64,
                final_unterminated,
                spans_lines,
                &mut scratch,
            ) {
                break;
            }
        }
        line_no += newlines.max(u64::from(!terminated));
        start = end;
    }
    chunk.lines = line_no;
    chunk
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = s.split_last() {
        if matches!(last, b'\n' | b'\r' | b' ' | b'\t') {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// One record and its references, reused from line to line of a piece.
#[derive(Default)]
struct Scratch {
    record: Record,
    refs: Vec<u64>,
}

impl Chunk {
    /// Adds one record; false when the line is no record (stop this piece).
    fn record(
        &mut self,
        line: &[u8],
        line_no: u64,
        offset: u64,
        final_unterminated: bool,
        spans_lines: bool,
        scratch: &mut Scratch,
    ) -> bool {
        let Scratch { record, refs } = scratch;
        refs.clear();
        *record = Record::default();
        match parse_line_into(line, refs, record) {
            Ok(()) => {}
            Err(e) => {
                self.bad_line = Some((line_no, e.0.to_string(), final_unterminated));
                return false;
            }
        };
        if !record.recovered {
            // Junk the parser could step over is still not JSON: raw newlines (the
            // record spans lines) or NUL bytes (the Ruby 3.0/3.1 non-ASCII bug).
            if spans_lines {
                record.recovered = true;
                record.problem = Some("raw newlines inside the record");
            } else if memchr::memchr(0, line).is_some() {
                record.recovered = true;
                record.problem = Some("raw NUL bytes in a string");
            }
        }
        if record.recovered || (record.incomplete && !final_unterminated) {
            self.stats.recovered_lines += 1;
            if self.stats.recovered_samples.len() < SAMPLE_LIMIT {
                let why = record.problem.unwrap_or("the record stops before its end");
                self.stats.recovered_samples.push((line_no, why));
            }
        }
        if record.incomplete {
            if final_unterminated {
                self.stats.truncated_last_line = Some(line_no);
            } else {
                self.stats.incomplete_lines += 1;
            }
        }
        self.stats.overflowed_numbers += u64::from(record.overflows);
        let text = |span: Option<crate::record::Span>| span.map(|s| s.of(line));
        match record.kind {
            RecordKind::Root => {
                let name = self.strings.intern(text(record.root_name).unwrap_or(b"?"));
                self.roots.push((name, refs.clone()));
                self.stats.root_records += 1;
            }
            RecordKind::Shape => {
                let shape_type = intern_opt(&mut self.strings, text(record.shape_type));
                let edge_name = intern_opt(&mut self.strings, text(record.edge_name));
                self.shapes.push(Shape {
                    address: record.address.unwrap_or(0),
                    id: record.shape_id.unwrap_or(u64::MAX),
                    parent_id: record.shape_parent_id,
                    depth: record.shape_depth,
                    shape_type,
                    edge_name,
                    memsize: record.memsize.unwrap_or(0),
                });
                self.stats.shapes += 1;
            }
            RecordKind::Object => {
                let object_type = record.object_type.unwrap_or_else(|| {
                    self.stats.unknown_types += 1;
                    ObjectType::Unknown
                });
                let address = record.address.expect("checked by parse_line");
                let c = &mut self.columns;
                c.address.push(address);
                c.object_type.push(object_type);
                c.flags.push(record.flags as u16);
                c.class.push(record.class.unwrap_or(0));
                c.file.push(intern_again(
                    &mut self.strings,
                    text(record.file),
                    &mut self.last_file,
                ));
                c.line.push(small(record.line, &mut self.stats));
                c.method.push(intern_again(
                    &mut self.strings,
                    text(record.method),
                    &mut self.last_method,
                ));
                c.generation.push(small(record.generation, &mut self.stats));
                c.memsize.push(record.memsize.unwrap_or(0));
                c.bytesize.push(match record.bytesize {
                    // Too large for the column: read back from the dump when asked.
                    Some(b) if b >= u64::from(ABSENT) => ABSENT,
                    b => small(b, &mut self.stats),
                });
                c.length.push(small(record.length, &mut self.stats));
                c.subtype.push(intern_again(
                    &mut self.strings,
                    text(record.subtype),
                    &mut self.last_subtype,
                ));
                c.shape_id.push(small(record.shape_id, &mut self.stats));
                c.offset.push(offset);
                self.references.extend_from_slice(refs);
                self.reference_ends.push(self.references.len() as u32);
                if object_type == ObjectType::Class
                    && text(record.name).is_some_and(is_legacy_anonymous_name)
                {
                    self.stats.decimal_escapes = true;
                }
                // Singleton classes and ICLASSes stand between an object and its real
                // class (`extend` swaps an object's class for its singleton).
                let is_singleton = record.flags & flag::SINGLETON != 0;
                if (object_type == ObjectType::IClass
                    || (object_type == ObjectType::Class && is_singleton))
                    && record.superclass.is_some()
                {
                    self.class_parents
                        .push((address, record.superclass.unwrap_or(0)));
                }
                if matches!(object_type, ObjectType::Class | ObjectType::Module) {
                    if let Some(name) = class_display_name(record, line) {
                        let id = self.strings.intern(&name);
                        self.class_names.push((address, id));
                    }
                }
                self.stats.objects += 1;
            }
        }
        true
    }
}

/// The name of a class record: its `name`. Anonymous and singleton classes have none
/// in 3.0+ (their `real_class_name` is the nearest real ancestor's, not theirs); they
/// are named by address later.
fn class_display_name(record: &crate::record::Record, line: &[u8]) -> Option<Vec<u8>> {
    record
        .name
        .map(|name| crate::record::unescape(name.of(line)))
}

/// Ruby 2.6/2.7 name anonymous classes `#<Class:0x…>`; 3.0+ give them no name at all
/// (a class nested in one is `#<Class:0x…>::Inner`, which does not count).
fn is_legacy_anonymous_name(name: &[u8]) -> bool {
    name.strip_prefix(b"#<Class:0x")
        .and_then(|rest| rest.strip_suffix(b">"))
        .is_some_and(|hex| !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit))
}

/// As `intern_opt`, first trying the id interned last time at this place.
fn intern_again(strings: &mut Interner, bytes: Option<&[u8]>, last: &mut u32) -> u32 {
    match bytes {
        Some(b) if !b.is_empty() => {
            if *last == NONE || strings.get(*last) != Some(b) {
                *last = strings.intern(b);
            }
            *last
        }
        _ => NONE,
    }
}

fn intern_opt(strings: &mut Interner, bytes: Option<&[u8]>) -> u32 {
    match bytes {
        Some(b) if !b.is_empty() => strings.intern(b),
        _ => NONE,
    }
}

/// Numbers kept in u32 columns; a larger one is counted as overflow, never wrapped.
fn small(value: Option<u64>, stats: &mut LoadStats) -> u32 {
    match value {
        None => ABSENT,
        Some(v) if v < u64::from(ABSENT) => v as u32,
        Some(_) => {
            stats.overflowed_numbers += 1;
            ABSENT
        }
    }
}

/// Accumulates chunks in file order.
struct Builder {
    path: PathBuf,
    columns: Columns,
    strings: Interner,
    references: Vec<u64>,
    ref_start: Vec<u32>,
    roots: Vec<(u32, Vec<u64>)>,
    shapes: Vec<Shape>,
    class_names: HashMap<u64, u32>,
    class_parents: HashMap<u64, u64>,
    stats: LoadStats,
}

impl Builder {
    fn new(path: &Path) -> Builder {
        Builder {
            path: path.to_path_buf(),
            columns: Columns::default(),
            strings: Interner::new(),
            references: Vec::new(),
            ref_start: vec![0],
            roots: Vec::new(),
            shapes: Vec::new(),
            class_names: HashMap::new(),
            class_parents: HashMap::new(),
            stats: LoadStats::default(),
        }
    }

    fn not_a_dump(&self, line: u64, reason: String) -> LoadError {
        LoadError::NotAHeapDump {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    fn append(&mut self, chunk: Chunk) -> Result<(), LoadError> {
        let line_base = self.stats.lines;
        if let Some((line, reason, final_unterminated)) = chunk.bad_line {
            let line = line_base + line;
            let is_first_record = self.columns.is_empty()
                && self.roots.is_empty()
                && chunk.stats.objects == 0
                && chunk.roots.is_empty();
            if final_unterminated && !is_first_record {
                // The writer died mid-record: warn, and keep everything before it.
                self.stats.truncated_last_line = Some(line);
            } else {
                return Err(self.not_a_dump(line, reason));
            }
        }
        let map = self.strings.absorb(&chunk.strings);
        let n_before = self.columns.len();
        self.columns.append(&chunk.columns, &map, chunk.offset);
        let ref_base = self.references.len() as u64;
        if ref_base + chunk.references.len() as u64 >= u64::from(u32::MAX) {
            return Err(self.not_a_dump(
                line_base + chunk.lines,
                "more than 4 billion references".into(),
            ));
        }
        self.references.extend_from_slice(&chunk.references);
        self.ref_start
            .extend(chunk.reference_ends.iter().map(|&e| e + ref_base as u32));
        debug_assert_eq!(self.ref_start.len(), n_before + chunk.columns.len() + 1);
        for (name, targets) in chunk.roots {
            self.roots.push((map[name as usize], targets));
        }
        for mut shape in chunk.shapes {
            shape.shape_type = map[shape.shape_type as usize];
            shape.edge_name = map[shape.edge_name as usize];
            self.shapes.push(shape);
        }
        for (address, name) in chunk.class_names {
            self.class_names.insert(address, map[name as usize]);
        }
        self.class_parents.extend(chunk.class_parents);
        let s = &mut self.stats;
        let c = chunk.stats;
        s.lines += chunk.lines;
        s.blank_lines += c.blank_lines;
        s.objects += c.objects;
        s.root_records += c.root_records;
        s.shapes += c.shapes;
        s.recovered_lines += c.recovered_lines;
        for (line, why) in c.recovered_samples {
            if s.recovered_samples.len() < SAMPLE_LIMIT {
                s.recovered_samples.push((line_base + line, why));
            }
        }
        if let Some(line) = c.truncated_last_line {
            s.truncated_last_line = Some(line_base + line);
        }
        s.incomplete_lines += c.incomplete_lines;
        s.decimal_escapes |= c.decimal_escapes;
        s.overflowed_numbers += c.overflowed_numbers;
        s.unknown_types += c.unknown_types;
        Ok(())
    }

    fn finish(self, source: Source, cancel: Option<&AtomicBool>) -> Result<Heap, LoadError> {
        let Builder {
            mut columns,
            references,
            ref_start,
            roots: raw_roots,
            shapes,
            mut class_names,
            class_parents,
            mut strings,
            mut stats,
            ..
        } = self;
        columns.shrink_to_fit();
        let n = columns.len();
        let index = AddressIndex::build(&columns.address);
        stats.duplicate_addresses = index.duplicates();
        name_metaclasses(&columns, &index, &mut class_names, &mut strings);
        if cancelled(cancel) {
            return Err(LoadError::Cancelled);
        }
        stats.references = references.len() as u64;
        let mut dangling: Vec<u64> = Vec::new();
        let mut dangling_ids: HashMap<u64, u32> = HashMap::new();
        let ref_targets = resolve(
            &references,
            &index,
            &columns.address,
            n,
            &mut dangling,
            &mut dangling_ids,
        );
        drop(references);
        let mut root_targets = Vec::new();
        let mut roots = Vec::with_capacity(raw_roots.len());
        for (name, addresses) in raw_roots {
            let start = root_targets.len() as u32;
            root_targets.extend(resolve(
                &addresses,
                &index,
                &columns.address,
                n,
                &mut dangling,
                &mut dangling_ids,
            ));
            roots.push(Root {
                name,
                start,
                end: root_targets.len() as u32,
            });
        }
        stats.dangling_references = ref_targets
            .iter()
            .chain(root_targets.iter())
            .filter(|&&t| t as usize >= n)
            .count() as u64;
        Ok(Heap {
            source,
            columns,
            ref_start,
            ref_targets,
            dangling,
            roots,
            root_targets,
            shapes,
            strings,
            class_names,
            class_parents,
            index,
            stats,
            graph: Default::default(),
            shape_ids: Default::default(),
        })
    }
}

/// Names each named class's metaclass `#<Class:Name>`, as Ruby does: a metaclass record
/// has no name of its own, but its class points at it.
fn name_metaclasses(
    columns: &Columns,
    index: &AddressIndex,
    class_names: &mut HashMap<u64, u32>,
    strings: &mut Interner,
) {
    let mut names = Vec::new();
    for i in 0..columns.len() {
        if !matches!(
            columns.object_type[i],
            ObjectType::Class | ObjectType::Module
        ) {
            continue;
        }
        let (Some(&name), meta) = (class_names.get(&columns.address[i]), columns.class[i]) else {
            continue;
        };
        let is_singleton = index
            .find(&columns.address, meta)
            .is_some_and(|m| columns.flags[m] & flag::SINGLETON as u16 != 0);
        if is_singleton && !class_names.contains_key(&meta) {
            names.push((meta, name));
        }
    }
    for (meta, name) in names {
        let mut text = b"#<Class:".to_vec();
        text.extend_from_slice(strings.get(name).unwrap_or(b"?"));
        text.push(b'>');
        let id = strings.intern(&text);
        class_names.insert(meta, id);
    }
}

/// Turns addresses into row indices; an address with no record becomes `n + k`, where
/// `dangling[k]` is the address.
fn resolve(
    addresses: &[u64],
    index: &AddressIndex,
    address_column: &[u64],
    n: usize,
    dangling: &mut Vec<u64>,
    dangling_ids: &mut HashMap<u64, u32>,
) -> Vec<u32> {
    let mut targets: Vec<u32> = addresses
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&a| index.find(address_column, a).map_or(u32::MAX, |i| i as u32))
        .collect();
    for (t, &address) in targets.iter_mut().zip(addresses) {
        if *t == u32::MAX {
            let id = *dangling_ids.entry(address).or_insert_with(|| {
                dangling.push(address);
                (n + dangling.len() - 1) as u32
            });
            *t = id;
        }
    }
    targets
}
