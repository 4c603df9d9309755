//! Redaction: copies a dump (plain or gzip) record by record, leaving out every
//! `value` member: the contents of strings and symbols (passwords, tokens, personal
//! data) and of floats. What diffs and retention paths need stays: addresses, types,
//! classes and class names, references, roots, shapes and ivar names, file/line/method,
//! generation, sizes and flags. Streaming: memory holds one record at a time.
//!
//! A record the parser reads cleanly keeps its bytes, minus the `value` member. A
//! broken one (the Ruby 3.0/3.1 junk, unescaped quotes, raw newlines or NUL bytes) is
//! written again from what the parser recovered, because its junk can hold bytes of
//! other strings: a string member whose bytes include control characters is left out.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{out_of_memory, record_too_long, Error};
use crate::object_type::ObjectType;
use crate::parse::boundary::{is_record_start, trim_line_end};
use crate::parse::{flag, parse_line, Record, RecordKind, Span};
use crate::MAX_RECORD_BYTES;

#[derive(Default, Clone, Copy)]
pub struct RedactOptions<'a> {
    /// Compress the output with gzip.
    pub gzip: bool,
    /// Set from another thread to stop early (the output is then incomplete).
    pub cancel: Option<&'a AtomicBool>,
}

/// What a redaction did, for the caller to report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedactStats {
    pub lines: u64,
    pub records: u64,
    /// `value` members left out.
    pub values_removed: u64,
    /// Broken records written again from what the parser recovered.
    pub rebuilt_records: u64,
    /// Members of broken records left out because their bytes were junk.
    pub junk_members_removed: u64,
    /// The unterminated last line was no record at all, and was left out.
    pub dropped_last_line: bool,
    /// The input was gzip.
    pub gzip_input: bool,
    /// The gzip input ended early, with this error; the output holds what came before.
    pub stream_cut_short: Option<String>,
}

/// Redacts the dump at `input` into a new file at `output`.
pub fn redact_file(
    input: &Path,
    output: &Path,
    options: RedactOptions<'_>,
) -> Result<RedactStats, Error> {
    let reader = File::open(input).map_err(|error| io_error(input, error))?;
    let writer = File::create(output).map_err(|error| io_error(output, error))?;
    redact(reader, input, writer, output, options)
}

/// Redacts the dump read from `input` into `output`. `input_name` and `output_name`
/// name them in errors.
pub fn redact<R: Read, W: Write>(
    input: R,
    input_name: &Path,
    output: W,
    output_name: &Path,
    options: RedactOptions<'_>,
) -> Result<RedactStats, Error> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().map_err(|e| io_error(input_name, e))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + '_> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(input),
        ))
    } else {
        Box::new(input)
    };
    let writer = if options.gzip {
        Output::Gzip(GzEncoder::new(output, Compression::fast()))
    } else {
        Output::Plain(output)
    };
    let mut redactor = Redactor {
        input_name,
        output_name,
        out: BufWriter::with_capacity(1 << 20, writer),
        pending: Vec::new(),
        pending_line: 0,
        references: Vec::new(),
        stats: RedactStats {
            gzip_input: gzip,
            ..RedactStats::default()
        },
    };
    redactor.run(reader, options.cancel)?;
    let Redactor { out, stats, .. } = redactor;
    let output_error = |e| io_error(output_name, e);
    out.into_inner()
        .map_err(|e| output_error(e.into_error()))?
        .finish()
        .map_err(output_error)?;
    Ok(stats)
}

/// The output stream: gzip needs its trailer written, and its errors seen.
enum Output<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(w) => w.write(buf),
            Output::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Gzip(w) => w.flush(),
        }
    }
}

impl<W: Write> Output<W> {
    fn finish(self) -> io::Result<()> {
        match self {
            Output::Plain(mut w) => w.flush(),
            Output::Gzip(w) => w.finish()?.flush(),
        }
    }
}

fn io_error(path: &Path, error: io::Error) -> Error {
    Error::io(path, error)
}

/// Reads one line, through its newline, into `line`: at most `limit` bytes, so a
/// longer line shows as `limit` bytes without a newline. As `BufRead::read_until` on a
/// `take`, but `line` grows with `try_reserve`: a record too large for the memory
/// left is an `OutOfMemory` error, not an abort. Returns the bytes read (0 at the end).
fn read_line_within(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let mut read = 0;
    while read < limit {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let room = available.len().min(limit - read);
        let (take, ends_line) = match memchr::memchr(b'\n', &available[..room]) {
            Some(newline) => (newline + 1, true),
            None => (room, false),
        };
        if line.try_reserve(take).is_err() {
            let message = out_of_memory("a record", line.len() + take);
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, message));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        read += take;
        if ends_line {
            break;
        }
    }
    Ok(read)
}

struct Redactor<'a, W: Write> {
    input_name: &'a Path,
    output_name: &'a Path,
    out: BufWriter<Output<W>>,
    /// The record being read: a record line plus any following lines that start no
    /// record (junk with raw newlines belongs to the record before it, as in loading).
    pending: Vec<u8>,
    /// The line number where `pending` starts.
    pending_line: u64,
    references: Vec<u64>,
    stats: RedactStats,
}

impl<W: Write> Redactor<'_, W> {
    fn run(
        &mut self,
        mut reader: Box<dyn BufRead + '_>,
        cancel: Option<&AtomicBool>,
    ) -> Result<(), Error> {
        let mut line = Vec::new();
        loop {
            if self.stats.lines.is_multiple_of(4096)
                && cancel.is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::Cancelled);
            }
            line.clear();
            // One byte past the limit shows a record longer than it.
            match read_line_within(&mut reader, &mut line, MAX_RECORD_BYTES + 1) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    let line = self.stats.lines + 1;
                    return Err(Error::too_large(self.input_name, line, e.to_string()));
                }
                Err(e) if self.stats.gzip_input && self.stats.lines > 0 => {
                    // A gzip file cut short: keep what it held, as loading does.
                    self.stats.stream_cut_short = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(io_error(self.input_name, e)),
            }
            self.stats.lines += 1;
            if line.len() > MAX_RECORD_BYTES {
                return Err(self.not_a_dump(self.stats.lines, record_too_long()));
            }
            let content = trim_line_end(&line);
            if content.is_empty() {
                self.flush_pending(false)?;
                self.write(b"\n")?;
                continue;
            }
            if self.pending.is_empty() {
                if content.first() != Some(&b'{') {
                    return Err(self.not_a_dump(self.stats.lines, "does not start with '{'"));
                }
            } else if is_record_start(content) {
                self.flush_pending(false)?;
            } else {
                // Junk with a raw newline: part of the record before it.
                if self.pending.len() + 1 + content.len() > MAX_RECORD_BYTES {
                    return Err(self.not_a_dump(self.pending_line, record_too_long()));
                }
                self.reserve_pending(1 + content.len())?;
                self.pending.push(b'\n');
                self.pending.extend_from_slice(content);
                continue;
            }
            self.pending_line = self.stats.lines;
            self.reserve_pending(content.len())?;
            self.pending.extend_from_slice(content);
            if line.last() != Some(&b'\n') {
                // The last line, unterminated: a dump cut short.
                return self.flush_pending(true);
            }
            if !is_record_start(content) {
                // Only a record as the emitter starts one takes the lines after it:
                // judge this one now, rather than gather a whole file that is no dump.
                self.flush_pending(false)?;
            }
        }
        self.flush_pending(false)?;
        if self.stats.records == 0 {
            return Err(self.not_a_dump(1, "the file is empty"));
        }
        Ok(())
    }

    fn not_a_dump(&self, line: u64, reason: impl Into<Cow<'static, str>>) -> Error {
        Error::parse(self.input_name, line, reason)
    }

    /// Room for `more` bytes of the pending record, or TooLarge naming its line.
    fn reserve_pending(&mut self, more: usize) -> Result<(), Error> {
        self.pending.try_reserve(more).map_err(|_| {
            let what = out_of_memory("a record", self.pending.len() + more);
            Error::too_large(self.input_name, self.pending_line, what)
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error(self.output_name, e))
    }

    /// Writes the pending record, redacted. `unterminated`: it is the file's last
    /// line and has no newline (written back without one too).
    fn flush_pending(&mut self, unterminated: bool) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let record_text = std::mem::take(&mut self.pending);
        self.references.clear();
        let record = match parse_line(&record_text, &mut self.references) {
            Ok(record) => record,
            Err(_) if unterminated && self.stats.records > 0 => {
                // Cut before its type: nothing of it is worth keeping, and no value
                // may leak from it.
                self.stats.dropped_last_line = true;
                return Ok(());
            }
            Err(e) => return Err(e.at(self.input_name, self.pending_line)),
        };
        self.stats.records += 1;
        // Every emitter escapes control bytes: raw ones (NUL, newlines) are junk.
        let clean = !record.recovered && !record_text.iter().any(|&b| b < 0x20);
        let mut text = match clean
            .then(|| without_value(&record_text, &record))
            .flatten()
        {
            Some((text, removed)) => {
                self.stats.values_removed += u64::from(removed);
                text
            }
            None => {
                self.stats.rebuilt_records += 1;
                self.stats.values_removed += u64::from(record.value.is_some());
                let mut rebuilt = Rebuilt {
                    line: &record_text,
                    out: Vec::with_capacity(record_text.len().min(4096)),
                    junk_members: 0,
                };
                rebuilt.record(&record, &self.references);
                self.stats.junk_members_removed += rebuilt.junk_members;
                rebuilt.out
            }
        };
        if !unterminated {
            text.push(b'\n');
        }
        self.write(&text)?;
        self.pending = record_text;
        self.pending.clear();
        Ok(())
    }
}

/// The record's text without its `value` member, and whether there was one; None
/// when the member is not where the emitter puts it (then the record is rebuilt).
fn without_value(text: &[u8], record: &Record) -> Option<(Vec<u8>, bool)> {
    let Some(value) = record.value else {
        return Some((text.to_vec(), false));
    };
    let (start, end) = (value.start as usize, value.end as usize);
    // `"value":"…"` (strings) or `"value":…` (anything else, leniently).
    let quoted = text.get(start.wrapping_sub(1)) == Some(&b'"');
    let key = if quoted {
        &b"\"value\":\""[..]
    } else {
        &b"\"value\":"[..]
    };
    let key_start = start.checked_sub(key.len())?;
    if &text[key_start..start] != key {
        return None;
    }
    let member_end = if quoted && text.get(end) == Some(&b'"') {
        end + 1
    } else {
        end
    };
    let member_start = if text[..key_start].ends_with(b", ") {
        key_start - 2
    } else if text[..key_start].ends_with(b",") {
        key_start - 1
    } else {
        return None;
    };
    let mut out = Vec::with_capacity(text.len() - (member_end - member_start));
    out.extend_from_slice(&text[..member_start]);
    out.extend_from_slice(&text[member_end..]);
    Some((out, true))
}

/// A broken record written again, member by member, from what the parser read.
struct Rebuilt<'a> {
    line: &'a [u8],
    out: Vec<u8>,
    junk_members: u64,
}

impl Rebuilt<'_> {
    fn record(&mut self, r: &Record, references: &[u64]) {
        self.out.push(b'{');
        match r.kind {
            RecordKind::Root => {
                self.string("type", Some(b"ROOT"));
                self.span("root", r.root_name);
                self.references(references);
            }
            RecordKind::Shape => {
                self.address("address", r.address);
                self.string("type", Some(b"SHAPE"));
                self.number("id", r.shape_id);
                self.number("parent_id", r.shape_parent_id);
                self.number("depth", r.shape_depth);
                self.span("shape_type", r.shape_type);
                self.span("edge_name", r.edge_name);
                self.number("edges", r.shape_edges);
                self.number("memsize", r.memsize);
            }
            RecordKind::Object => self.object(r, references),
        }
        if !r.incomplete {
            // A record cut short stays cut short: loading it warns the same way.
            self.out.push(b'}');
        }
    }

    fn object(&mut self, r: &Record, references: &[u64]) {
        self.address("address", r.address);
        self.span("type", r.type_name);
        self.number("shape_id", r.shape_id);
        self.number("slot_size", r.slot_size);
        self.address("class", r.class);
        for &(name, bit) in flag::NAMES {
            // The members before `flags` are written at the top level; a bit with two
            // names is written once, under its first.
            if bit < flag::WB_PROTECTED && r.flags & bit != 0 && first_name(bit) == name {
                self.member(name);
                self.out.extend_from_slice(b"true");
            }
        }
        self.number("bytesize", r.bytesize);
        self.number("capacity", r.capacity);
        self.span("encoding", r.encoding);
        self.span("coderange", r.coderange);
        let length_key = match r.object_type {
            Some(ObjectType::Hash) => "size",
            Some(ObjectType::Object) => "ivars",
            _ => "length",
        };
        self.number(length_key, r.length);
        self.address("default", r.default_proc);
        self.number("fd", r.fd);
        self.span("name", r.name);
        self.span("real_class_name", r.real_class_name);
        self.address("superclass", r.superclass);
        self.number("variation_count", r.variation_count);
        let subtype_key = match r.object_type {
            Some(ObjectType::Imemo) => "imemo_type",
            _ => "struct",
        };
        self.span(subtype_key, r.subtype);
        self.span("mid", r.mid);
        self.span("called_id", r.called_id);
        self.address("receiver_class", r.receiver_class);
        if !references.is_empty() {
            self.references(references);
        }
        self.span("file", r.file);
        self.number("line", r.line);
        self.span("method", r.method);
        self.number("generation", r.generation);
        self.number("memsize", r.memsize);
        self.flags(r);
    }

    fn flags(&mut self, r: &Record) {
        let gc_flags = flag::NAMES
            .iter()
            .filter(|&&(_, bit)| bit >= flag::WB_PROTECTED && r.flags & bit != 0);
        if r.flags < flag::WB_PROTECTED && r.age.is_none() && r.object_id.is_none() {
            return;
        }
        self.member("flags");
        self.out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.extend_from_slice(b", ");
            }
        };
        for &(name, _) in gc_flags {
            sep(&mut self.out);
            write!(self.out, "\"{name}\":true").expect("writing to a Vec");
        }
        for (name, value) in [("age", r.age), ("object_id", r.object_id)] {
            if let Some(value) = value {
                sep(&mut self.out);
                write!(self.out, "\"{name}\":{value}").expect("writing to a Vec");
            }
        }
        self.out.push(b'}');
    }

    fn member(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.extend_from_slice(b", ");
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some(value) = value {
            self.member(key);
            self.out.push(b'"');
            self.out.extend_from_slice(value);
            self.out.push(b'"');
        }
    }

    /// A string member as the input had it (raw, escapes kept), unless its bytes are
    /// junk: control bytes are escaped by every emitter, so raw ones are the junk of a
    /// broken record, which can hold bytes of other strings.
    fn span(&mut self, key: &str, span: Option<Span>) {
        let Some(span) = span else { return };
        let text = span.of(self.line);
        if text.iter().any(|&b| b < 0x20) || is_junk_escape(text) {
            self.junk_members += 1;
            return;
        }
        self.string(key, Some(text));
    }

    fn number(&mut self, key: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.member(key);
            write!(self.out, "{value}").expect("writing to a Vec");
        }
    }

    fn address(&mut self, key: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.member(key);
            write!(self.out, "\"{value:#x}\"").expect("writing to a Vec");
        }
    }

    fn references(&mut self, references: &[u64]) {
        self.member("references");
        self.out.push(b'[');
        for (i, address) in references.iter().enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b", ");
            }
            write!(self.out, "\"{address:#x}\"").expect("writing to a Vec");
        }
        self.out.push(b']');
    }
}

/// The Ruby 3.0/3.1 non-ASCII bug writes `\u00ff` and then junk; a string holding that
/// escape came from the bug (those Rubies write bytes ≥ 0x80 that way only there).
fn is_junk_escape(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"\\u00ff").is_some()
}

fn first_name(bit: u32) -> &'static str {
    flag::NAMES
        .iter()
        .find(|&&(_, b)| b == bit)
        .map_or("", |&(name, _)| name)
}
