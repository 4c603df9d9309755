//! The per-piece parse: the records of one piece into piece-local columns.

use std::sync::atomic::AtomicBool;

use crate::error::Error;
use crate::heap::{Columns, LoadStats, Shape, ABSENT, SAMPLE_LIMIT};
use crate::intern::{Interner, NO_STRING};
use crate::object_type::ObjectType;
use crate::parse::boundary::trim_segment_end;
use crate::parse::{flag, parse_line_into, Record, RecordKind};

use super::cancelled;
use super::framing::next_record;

/// What one piece parsed to, with piece-local interned ids, offsets and line numbers.
#[derive(Default)]
pub(super) struct ParsedPiece {
    pub(super) columns: Columns,
    pub(super) strings: Interner,
    pub(super) references: Vec<u64>,
    /// Per object, the end of its references in `references`.
    pub(super) reference_ends: Vec<u32>,
    pub(super) roots: Vec<(u32, Vec<u64>)>,
    pub(super) shapes: Vec<Shape>,
    pub(super) class_names: Vec<(u64, u32)>,
    pub(super) class_parents: Vec<(u64, u64)>,
    pub(super) stats: LoadStats,
    /// Newlines in the piece.
    pub(super) lines: u64,
    pub(super) offset: u64,
    /// The first line that is no record at all: local line number, why, and whether it
    /// is the unterminated last line of the file (then it is a truncation, not an error).
    pub(super) bad_line: Option<(u64, Error, bool)>,
    /// The last file, method and subtype interned: neighbours in a dump were often
    /// allocated by the same code, and a compare is cheaper than a hash lookup.
    pub(super) last_file: u32,
    pub(super) last_method: u32,
    pub(super) last_subtype: u32,
}

pub(super) fn parse_piece(
    data: &[u8],
    offset: u64,
    last: bool,
    cancel: Option<&AtomicBool>,
) -> ParsedPiece {
    let mut chunk = ParsedPiece {
        offset,
        // A 256 kB piece of a bench dump names ~170 files, methods and subtypes: the
        // table no longer grows from empty (rehashing) in every piece.
        strings: Interner::with_capacity(256),
        ..ParsedPiece::default()
    };
    // Room for the piece's records up front (lines run 150-400 bytes): growing fifteen
    // columns by doubling from empty, piece after piece, cost 2.6% of a load (callgrind).
    let rows = data.len() / 256;
    let _ = chunk.columns.try_reserve(rows);
    let _ = chunk.reference_ends.try_reserve(rows);
    let _ = chunk.references.try_reserve(data.len() / 64);
    let mut scratch = Scratch::default();
    // The first NUL byte at or after the current record, found once for the piece and
    // again only after a record that held it: one memchr a line cost 1.6% of a load, and
    // dumps without the Ruby 3.0/3.1 bug hold none.
    let mut next_nul = memchr::memchr(0, data).unwrap_or(usize::MAX);
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
        let line = trim_segment_end(segment);
        let this_line = line_no + 1;
        if line.is_empty() {
            chunk.stats.blank_lines += newlines.max(1);
        } else {
            let final_unterminated = last && end == data.len() && !terminated;
            // More than one newline in a record: junk bytes with raw newlines in it.
            let spans_lines = newlines > 1 && line.contains(&b'\n');
            if next_nul < start {
                next_nul = memchr::memchr(0, &data[start..]).map_or(usize::MAX, |i| start + i);
            }
            let holds_nul = next_nul < start + line.len();
            if !chunk.record(
                line,
                this_line,
                start as u64,
                Framing {
                    final_unterminated,
                    spans_lines,
                    holds_nul,
                },
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

/// What the piece's walk knows about a record's line that the parser does not.
struct Framing {
    /// The unterminated last line of the file.
    final_unterminated: bool,
    /// More than one newline in the record: junk bytes with raw newlines in it.
    spans_lines: bool,
    /// A NUL byte in the line.
    holds_nul: bool,
}

/// One record and its references, reused from line to line of a piece.
#[derive(Default)]
struct Scratch {
    record: Record,
    refs: Vec<u64>,
}

impl ParsedPiece {
    /// Adds one record; false when the line is no record (stop this piece).
    fn record(
        &mut self,
        line: &[u8],
        line_no: u64,
        offset: u64,
        framing: Framing,
        scratch: &mut Scratch,
    ) -> bool {
        let Framing {
            final_unterminated,
            spans_lines,
            holds_nul,
        } = framing;
        let Scratch { record, refs } = scratch;
        refs.clear();
        *record = Record::default();
        match parse_line_into(line, refs, record) {
            Ok(()) => {}
            Err(e) => {
                self.bad_line = Some((line_no, e, final_unterminated));
                return false;
            }
        };
        if !record.recovered {
            // Junk the parser could step over is still not JSON: raw newlines (the
            // record spans lines) or NUL bytes (the Ruby 3.0/3.1 non-ASCII bug).
            if spans_lines {
                record.recovered = true;
                record.problem = Some("raw newlines inside the record");
            } else if holds_nul {
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
        let text = |span: Option<crate::parse::Span>| span.map(|s| s.of(line));
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
fn class_display_name(record: &crate::parse::Record, line: &[u8]) -> Option<Vec<u8>> {
    record
        .name
        .map(|name| crate::parse::unescape(name.of(line)))
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
            if *last == NO_STRING || strings.get(*last) != Some(b) {
                *last = strings.intern(b);
            }
            *last
        }
        _ => NO_STRING,
    }
}

fn intern_opt(strings: &mut Interner, bytes: Option<&[u8]>) -> u32 {
    match bytes {
        Some(b) if !b.is_empty() => strings.intern(b),
        _ => NO_STRING,
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
