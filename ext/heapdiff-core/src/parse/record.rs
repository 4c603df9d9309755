//! The types one line of a dump parses to: where a value lies (`Span`), what kind of
//! line it is, and the record itself.

use crate::object_type::ObjectType;

/// Where a string value lies inside the line, as byte offsets. Kept as a span so the
/// parser copies nothing; `unescape` decodes it when a caller needs the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn of<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        &line[self.start as usize..self.end as usize]
    }
}

/// Which kind of line this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecordKind {
    #[default]
    Object,
    Root,
    Shape,
}

/// Everything heapdiff keeps from one line. Numbers absent from the line are `None`.
#[derive(Debug, Default)]
pub struct Record {
    pub kind: RecordKind,
    pub address: Option<u64>,
    pub object_type: Option<ObjectType>,
    pub type_name: Option<Span>,
    pub root_name: Option<Span>,
    pub class: Option<u64>,
    pub superclass: Option<u64>,
    pub default_proc: Option<u64>,
    pub receiver_class: Option<u64>,
    pub file: Option<Span>,
    pub line: Option<u64>,
    pub method: Option<Span>,
    pub generation: Option<u64>,
    pub memsize: Option<u64>,
    pub bytesize: Option<u64>,
    pub capacity: Option<u64>,
    pub value: Option<Span>,
    pub encoding: Option<Span>,
    pub coderange: Option<Span>,
    /// ARRAY `length`, HASH `size`, OBJECT `ivars`.
    pub length: Option<u64>,
    pub fd: Option<u64>,
    pub shape_id: Option<u64>,
    pub slot_size: Option<u64>,
    pub variation_count: Option<u64>,
    /// CLASS/MODULE `name`.
    pub name: Option<Span>,
    pub real_class_name: Option<Span>,
    /// DATA `struct` or IMEMO `imemo_type`: what kind of DATA/IMEMO this is.
    pub subtype: Option<Span>,
    pub mid: Option<Span>,
    pub called_id: Option<Span>,
    pub flags: u32,
    /// 4.0's `flags.age` and `flags.object_id`.
    pub age: Option<u64>,
    pub object_id: Option<u64>,
    // SHAPE members.
    pub shape_parent_id: Option<u64>,
    pub shape_depth: Option<u64>,
    pub shape_type: Option<Span>,
    pub edge_name: Option<Span>,
    pub shape_edges: Option<u64>,
    /// The line did not parse as the emitter writes it (unescaped quotes, junk bytes,
    /// a member cut short) but the record was recovered.
    pub recovered: bool,
    /// Why, when `recovered` is set: the first problem seen.
    pub problem: Option<&'static str>,
    /// Number members that did not fit in 64 bits; each is left out.
    pub overflows: u32,
    /// The record stops before its closing `}` (a truncated line).
    pub incomplete: bool,
}
