//! The lenient parser for one line of `ObjectSpace.dump_all` output.
//!
//! The dump is written by a hand-made emitter, not a JSON library, and real dumps
//! contain lines that no JSON parser accepts: Ruby 3.0/3.1 write junk with raw quotes
//! and NUL bytes for non-ASCII method names, and `file`, `struct`, `real_class_name`
//! and friends are never escaped. So this parser does not validate JSON; it knows the
//! emitter's layout (`{"key":value, "key":value, ...}`) and decides where a string ends
//! by what follows its closing quote: another member (`, "key":`) or the end of the
//! record (`}` at the end of the line). A quote followed by anything else belongs to
//! the value, and the line is marked as recovered.

use crate::object_type::ObjectType;

/// Bit flags kept per object. The GC flags come from the `flags` member, the rest from
/// top-level boolean members.
pub mod flag {
    pub const FROZEN: u32 = 1 << 0;
    pub const EMBEDDED: u32 = 1 << 1;
    pub const FSTRING: u32 = 1 << 2;
    pub const SHARED: u32 = 1 << 3;
    pub const CHILLED: u32 = 1 << 4;
    pub const BROKEN: u32 = 1 << 5;
    pub const SINGLETON: u32 = 1 << 6;
    pub const TOO_COMPLEX_SHAPE: u32 = 1 << 7;
    pub const WB_PROTECTED: u32 = 1 << 8;
    pub const OLD: u32 = 1 << 9;
    pub const UNCOLLECTIBLE: u32 = 1 << 10;
    pub const MARKING: u32 = 1 << 11;
    pub const MARKED: u32 = 1 << 12;
    pub const PINNED: u32 = 1 << 13;
    pub const REMEMBERED: u32 = 1 << 14;
    pub const SHAREABLE: u32 = 1 << 15;

    /// Names as they appear in the dump, for decoding and for showing flags back.
    pub const NAMES: &[(&str, u32)] = &[
        ("frozen", FROZEN),
        ("embedded", EMBEDDED),
        ("fstring", FSTRING),
        ("shared", SHARED),
        ("chilled", CHILLED),
        ("broken", BROKEN),
        ("singleton", SINGLETON),
        ("too_complex_shape", TOO_COMPLEX_SHAPE),
        ("complex_shape", TOO_COMPLEX_SHAPE),
        ("wb_protected", WB_PROTECTED),
        ("old", OLD),
        ("uncollectible", UNCOLLECTIBLE),
        ("marking", MARKING),
        ("marked", MARKED),
        ("pinned", PINNED),
        ("remembered", REMEMBERED),
        ("shareable", SHAREABLE),
    ];

    pub fn from_name(name: &[u8]) -> u32 {
        match name {
            b"wb_protected" => WB_PROTECTED,
            b"old" => OLD,
            b"uncollectible" => UNCOLLECTIBLE,
            b"marked" => MARKED,
            b"frozen" => FROZEN,
            b"embedded" => EMBEDDED,
            b"fstring" => FSTRING,
            _ => NAMES
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map_or(0, |&(_, bit)| bit),
        }
    }
}

/// Where a string value lies inside the line, as byte offsets. Kept as a span so the
/// parser copies nothing; `escaped` tells whether the emitter escapes that member.
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

/// A line that is not a heap dump record at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotARecord(pub &'static str);

/// Parses one line (without its newline). References are appended to `references`
/// as raw addresses; the caller knows where this record's references start.
pub fn parse_line(line: &[u8], references: &mut Vec<u64>) -> Result<Record, NotARecord> {
    let mut record = Record::default();
    parse_line_into(line, references, &mut record)?;
    Ok(record)
}

/// As `parse_line`, into a record the caller resets and reuses: a loader parses
/// millions of lines, and a `Record` is several hundred bytes to move around.
pub fn parse_line_into(
    line: &[u8],
    references: &mut Vec<u64>,
    record: &mut Record,
) -> Result<(), NotARecord> {
    let mut parser = LineParser {
        line,
        pos: 0,
        record,
    };
    parser.parse(references)?;
    let record = &*parser.record;
    if record.kind == RecordKind::Object && (record.address.is_none() || record.type_name.is_none())
    {
        return Err(NotARecord(if record.type_name.is_none() {
            "no \"type\" member"
        } else {
            "no \"address\" member"
        }));
    }
    Ok(())
}

struct LineParser<'a, 'r> {
    line: &'a [u8],
    pos: usize,
    record: &'r mut Record,
}

/// The member names heapdiff reads, recognised by one integer match instead of a
/// chain of byte-string compares (see `Key::of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Address,
    Type,
    References,
    Flags,
    Class,
    Superclass,
    Default,
    ReceiverClass,
    Root,
    File,
    Line,
    Method,
    Generation,
    Memsize,
    Bytesize,
    Capacity,
    Value,
    Encoding,
    Coderange,
    Length,
    Fd,
    ShapeId,
    SlotSize,
    VariationCount,
    Name,
    RealClassName,
    Subtype,
    Mid,
    CalledId,
    Id,
    ParentId,
    Depth,
    ShapeType,
    EdgeName,
    Edges,
    /// Any other member: a boolean flag (`"frozen":true`) or a value to skip.
    Other,
}

/// Up to 15 bytes of a name and its length in one integer; longer names get `None`.
const fn pack_key(name: &[u8]) -> Option<u128> {
    if name.len() > 15 {
        return None;
    }
    let mut packed = (name.len() as u128) << 120;
    let mut i = 0;
    while i < name.len() {
        packed |= (name[i] as u128) << (8 * i);
        i += 1;
    }
    Some(packed)
}

macro_rules! keys {
    ($($name:literal => $key:ident),* $(,)?) => {
        /// The names and their keys.
        const KEYS: &[(&[u8], Key)] = &[$(($name, Key::$key)),*];
    };
}

/// Multiplier of the perfect hash from a name to its slot in `KEY_SLOTS`: found by a
/// search; `key_slots` refuses to compile if two names ever share a slot.
const KEY_HASH: u64 = 0x3dd82d982de1babf;
const KEY_SLOT_BITS: u32 = 7;

const fn key_slot(packed: u128) -> usize {
    let first_bytes = packed as u64;
    let len = (packed >> 120) as u64;
    ((first_bytes ^ len).wrapping_mul(KEY_HASH) >> (64 - KEY_SLOT_BITS)) as usize
}

const fn key_slots() -> [(u128, Key); 1 << KEY_SLOT_BITS] {
    // u128::MAX packs no name (its length byte would be 255).
    let mut slots = [(u128::MAX, Key::Other); 1 << KEY_SLOT_BITS];
    let mut i = 0;
    while i < KEYS.len() {
        let packed = match pack_key(KEYS[i].0) {
            Some(packed) => packed,
            None => panic!("key names are at most 15 bytes"),
        };
        let slot = key_slot(packed);
        assert!(
            slots[slot].0 == u128::MAX,
            "two key names share a slot: change KEY_HASH"
        );
        slots[slot] = (packed, KEYS[i].1);
        i += 1;
    }
    slots
}

static KEY_SLOTS: [(u128, Key); 1 << KEY_SLOT_BITS] = key_slots();

impl Key {
    /// The key of a packed name: one multiply and one compare.
    #[inline]
    fn of(packed: Option<u128>) -> Key {
        let Some(packed) = packed else {
            return Key::Other;
        };
        let (name, key) = KEY_SLOTS[key_slot(packed)];
        if name == packed {
            key
        } else {
            Key::Other
        }
    }
}

// Several names map to one key: `length`/`size`/`ivars` are all "how many", and DATA
// `struct` and IMEMO `imemo_type` both say what kind the object is.
keys! {
    b"address" => Address,
    b"type" => Type,
    b"references" => References,
    b"flags" => Flags,
    b"class" => Class,
    b"superclass" => Superclass,
    b"default" => Default,
    b"receiver_class" => ReceiverClass,
    b"root" => Root,
    b"file" => File,
    b"line" => Line,
    b"method" => Method,
    b"generation" => Generation,
    b"memsize" => Memsize,
    b"bytesize" => Bytesize,
    b"capacity" => Capacity,
    b"value" => Value,
    b"encoding" => Encoding,
    b"coderange" => Coderange,
    b"length" => Length,
    b"size" => Length,
    b"ivars" => Length,
    b"fd" => Fd,
    b"shape_id" => ShapeId,
    b"slot_size" => SlotSize,
    b"variation_count" => VariationCount,
    b"name" => Name,
    b"real_class_name" => RealClassName,
    b"struct" => Subtype,
    b"imemo_type" => Subtype,
    b"mid" => Mid,
    b"called_id" => CalledId,
    b"id" => Id,
    b"parent_id" => ParentId,
    b"depth" => Depth,
    b"shape_type" => ShapeType,
    b"edge_name" => EdgeName,
    b"edges" => Edges,
}

/// Keys whose string values the emitter escapes. Raw quotes inside the others are
/// part of the value (a file path can contain `"`).
const MEMBER_SEPARATORS: [&[u8]; 2] = [b", \"", b",\""];

impl<'a> LineParser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    fn mark_recovered(&mut self, why: &'static str) {
        if !self.record.recovered {
            self.record.recovered = true;
            self.record.problem = Some(why);
        }
    }

    fn parse(&mut self, references: &mut Vec<u64>) -> Result<(), NotARecord> {
        self.skip_spaces();
        if self.peek() != Some(b'{') {
            return Err(NotARecord("does not start with '{'"));
        }
        self.pos += 1;
        let mut members = 0usize;
        loop {
            self.skip_spaces();
            match self.peek() {
                None => {
                    self.record.incomplete = true;
                    break;
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.skip_spaces();
                    if self.pos != self.line.len() {
                        self.mark_recovered("bytes after the closing brace");
                    }
                    break;
                }
                Some(b',') if members > 0 => {
                    self.pos += 1;
                    continue;
                }
                Some(b'"') => {}
                Some(_) => {
                    if members == 0 {
                        return Err(NotARecord("not a JSON object"));
                    }
                    if !self.resync() {
                        self.mark_recovered("unreadable bytes at the end of the line");
                        break;
                    }
                    self.mark_recovered("unreadable bytes between members");
                    continue;
                }
            }
            let key = match self.key() {
                Some(key) => key,
                None => {
                    if members == 0 {
                        return Err(NotARecord("not a JSON object"));
                    }
                    self.record.incomplete = true;
                    break;
                }
            };
            members += 1;
            self.member(key.0, key.1, references);
        }
        Ok(())
    }

    /// Reads `"key":` and returns what the key is and its name; leaves `pos` at the
    /// value.
    fn key(&mut self) -> Option<(Key, &'a [u8])> {
        let start = self.pos + 1;
        let rest = &self.line[start..];
        let (len, packed) = match rest.first_chunk::<16>() {
            // The common case, a short name with 16 bytes of line after it: find the
            // quote and pack the name in a few integer operations.
            Some(chunk) => {
                let word = u128::from_le_bytes(*chunk);
                match first_quote_in(word) {
                    Some(len) => {
                        let name_bits = (1u128 << (8 * len)) - 1;
                        (len, Some((word & name_bits) | ((len as u128) << 120)))
                    }
                    None => (find_quote(rest)?, None),
                }
            }
            None => {
                let len = find_quote(rest)?;
                (len, pack_key(&rest[..len]))
            }
        };
        let name = &rest[..len];
        self.pos = start + len + 1;
        if self.peek() != Some(b':') {
            return None;
        }
        self.pos += 1;
        self.skip_spaces();
        Some((Key::of(packed), name))
    }

    /// After junk, finds the next `, "key":` and continues from its key.
    fn resync(&mut self) -> bool {
        let mut from = self.pos;
        while let Some(at) = memchr::memmem::find(&self.line[from..], b", \"") {
            let quote = from + at + 2;
            if Self::is_member_start(self.line, quote) {
                self.pos = quote;
                return true;
            }
            from = quote;
        }
        false
    }

    /// Is `line[quote..]` the start of a member, `"name":`, with a plausible name?
    fn is_member_start(line: &[u8], quote: usize) -> bool {
        let rest = &line[quote + 1..];
        let mut i = 0;
        while i < rest.len() && (rest[i].is_ascii_lowercase() || rest[i] == b'_') {
            i += 1;
        }
        i > 0 && rest.get(i) == Some(&b'"') && rest.get(i + 1) == Some(&b':')
    }

    /// Does a closing quote at `at` end the string, judged by what follows it?
    fn ends_string(&self, at: usize) -> bool {
        let after = &self.line[at + 1..];
        for sep in MEMBER_SEPARATORS {
            if after.starts_with(sep) {
                return Self::is_member_start(self.line, at + sep.len());
            }
        }
        if after.first() == Some(&b'}') {
            return after[1..].iter().all(|b| matches!(b, b' ' | b'\r' | b'\t'));
        }
        false
    }

    /// Reads a string value; returns its raw span (escapes left in place).
    fn string(&mut self) -> Span {
        let start = self.pos + 1;
        let mut from = start;
        let mut clean = true;
        loop {
            match find_quote(&self.line[from..]) {
                Some(at) => {
                    let quote = from + at;
                    if self.ends_string(quote) {
                        if clean && is_escaped(&self.line[start..quote]) {
                            // A quote that JSON calls escaped but that ends the member:
                            // a raw backslash at the end of an unescaped value.
                            self.mark_recovered("unescaped backslash before a quote");
                        }
                        self.pos = quote + 1;
                        return Span {
                            start: start as u32,
                            end: quote as u32,
                        };
                    }
                    if !is_escaped(&self.line[start..quote]) {
                        clean = false;
                        self.mark_recovered("unescaped quote in a string");
                    }
                    from = quote + 1;
                }
                None => {
                    // No end: the string runs to the end of the line (cut short).
                    self.record.incomplete = true;
                    self.pos = self.line.len();
                    return Span {
                        start: start as u32,
                        end: self.line.len() as u32,
                    };
                }
            }
        }
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        let mut overflow = false;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        if overflow {
            self.record.overflows += 1;
            return None;
        }
        Some(value)
    }

    /// Reads `"0x…"` and returns the address. Addresses hold no quotes, so the fast
    /// path reads hex digits up to the closing quote; anything else takes the slow path.
    fn address_string(&mut self) -> Option<u64> {
        let rest = &self.line[self.pos..];
        if rest.len() > 3 && rest[1] == b'0' && rest[2] == b'x' {
            let (value, digits) = hex_prefix(&rest[3..]);
            let i = 3 + digits;
            if digits > 0 && rest.get(i) == Some(&b'"') && self.ends_string(self.pos + i) {
                self.pos += i + 1;
                return Some(value);
            }
        }
        let span = self.string();
        parse_address(span.of(self.line))
    }

    fn boolean(&mut self) -> Option<bool> {
        let rest = &self.line[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Some(false)
        } else if rest.starts_with(b"null") {
            self.pos += 4;
            None
        } else {
            None
        }
    }

    fn references(&mut self, out: &mut Vec<u64>) {
        // `[` "0x…", "0x…" `]`
        self.pos += 1;
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let start = self.pos + 1;
                    // The fast path: `"0x` lowercase hex digits `"`.
                    if let Some(hex) = self.line[start..].strip_prefix(b"0x") {
                        let (address, digits) = hex_prefix(hex);
                        if digits > 0 && hex.get(digits) == Some(&b'"') {
                            out.push(address);
                            self.pos = start + 2 + digits + 1;
                            continue;
                        }
                    }
                    match memchr::memchr(b'"', &self.line[start..]) {
                        Some(len) => {
                            match parse_address(&self.line[start..start + len]) {
                                Some(address) => out.push(address),
                                None => self.mark_recovered("a reference that is not an address"),
                            }
                            self.pos = start + len + 1;
                        }
                        None => {
                            self.record.incomplete = true;
                            self.pos = self.line.len();
                            return;
                        }
                    }
                }
                None => {
                    self.record.incomplete = true;
                    return;
                }
                Some(_) => {
                    self.mark_recovered("unreadable references");
                    self.skip_value();
                    return;
                }
            }
        }
    }

    fn flags(&mut self) {
        // Most records carry one of a few flag sets, written the same way every time.
        const COMMON: [(&[u8], u32); 3] = [
            (
                b"{\"wb_protected\":true, \"old\":true, \"uncollectible\":true, \"marked\":true}",
                flag::WB_PROTECTED | flag::OLD | flag::UNCOLLECTIBLE | flag::MARKED,
            ),
            (b"{\"wb_protected\":true}", flag::WB_PROTECTED),
            (
                b"{\"uncollectible\":true, \"marked\":true}",
                flag::UNCOLLECTIBLE | flag::MARKED,
            ),
        ];
        let rest = &self.line[self.pos..];
        for (text, bits) in COMMON {
            if rest.starts_with(text) {
                self.record.flags |= bits;
                self.pos += text.len();
                return;
            }
        }
        self.pos += 1;
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let Some((_, key)) = self.key() else {
                        self.record.incomplete = true;
                        return;
                    };
                    match key {
                        b"age" => self.record.age = self.number_member(),
                        b"object_id" => self.record.object_id = self.number_member(),
                        _ => match self.peek() {
                            Some(b't' | b'f' | b'n') => {
                                if self.boolean() == Some(true) {
                                    self.record.flags |= flag::from_name(key);
                                }
                            }
                            _ => self.skip_nested_value(),
                        },
                    }
                }
                None => {
                    self.record.incomplete = true;
                    return;
                }
                Some(_) => {
                    self.mark_recovered("unreadable flags");
                    self.pos = self.line.len();
                    return;
                }
            }
        }
    }

    /// Skips a value of a member heapdiff does not keep.
    fn skip_value(&mut self) {
        match self.peek() {
            Some(b'"') => {
                self.string();
            }
            Some(b'[') | Some(b'{') => {
                // Nested values of unknown members: skip to the matching bracket,
                // honouring strings.
                let mut depth = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return;
                            }
                        }
                        b'"' => {
                            self.json_string();
                            continue;
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                self.record.incomplete = true;
            }
            _ => {
                while let Some(b) = self.peek() {
                    if b == b',' || b == b'}' {
                        break;
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// Skips a string inside a nested value, where the member-end rule does not apply:
    /// it ends at the first quote not escaped by a backslash, as JSON says.
    fn json_string(&mut self) {
        let mut at = self.pos + 1;
        while let Some(offset) = find_quote(&self.line[at..]) {
            let quote = at + offset;
            if !is_escaped(&self.line[self.pos + 1..quote]) {
                self.pos = quote + 1;
                return;
            }
            at = quote + 1;
        }
        self.pos = self.line.len();
        self.record.incomplete = true;
    }

    /// Skips any value inside `flags` or another nested object, stopping before the
    /// `,` or `}` that follows it.
    fn skip_nested_value(&mut self) {
        match self.peek() {
            Some(b'"') => self.json_string(),
            Some(b'[' | b'{') => self.skip_value(),
            _ => {
                while let Some(b) = self.peek() {
                    if b == b',' || b == b'}' {
                        break;
                    }
                    self.pos += 1;
                }
            }
        }
    }

    fn string_member(&mut self) -> Option<Span> {
        if self.peek() == Some(b'"') {
            Some(self.string())
        } else {
            self.skip_value();
            None
        }
    }

    fn number_member(&mut self) -> Option<u64> {
        match self.peek() {
            Some(b'0'..=b'9') => self.number(),
            Some(b'-') => {
                // The emitter writes no negative numbers we keep; skip it whole.
                self.pos += 1;
                self.number();
                None
            }
            _ => {
                self.skip_value();
                None
            }
        }
    }

    fn address_member(&mut self) -> Option<u64> {
        if self.peek() == Some(b'"') {
            let address = self.address_string();
            if address.is_none() {
                self.mark_recovered("an address member that is not an address");
            }
            address
        } else {
            self.skip_value();
            None
        }
    }

    fn member(&mut self, key: Key, name: &[u8], references: &mut Vec<u64>) {
        match key {
            Key::Address => {
                let address = self.address_member();
                self.record.address = address;
            }
            Key::Type => {
                let span = self.string_member();
                if let Some(span) = span {
                    let name = span.of(self.line);
                    self.record.kind = match name {
                        b"ROOT" => RecordKind::Root,
                        b"SHAPE" => RecordKind::Shape,
                        _ => RecordKind::Object,
                    };
                    self.record.object_type = ObjectType::from_name(name);
                    self.record.type_name = Some(span);
                }
            }
            Key::References => {
                if self.peek() == Some(b'[') {
                    self.references(references);
                } else {
                    self.skip_value();
                }
            }
            Key::Flags => {
                if self.peek() == Some(b'{') {
                    self.flags();
                } else {
                    self.skip_value();
                }
            }
            Key::Class => self.record.class = self.address_member(),
            Key::Superclass => self.record.superclass = self.address_member(),
            Key::Default => self.record.default_proc = self.address_member(),
            Key::ReceiverClass => self.record.receiver_class = self.address_member(),
            Key::Root => self.record.root_name = self.string_member(),
            Key::File => self.record.file = self.string_member(),
            Key::Line => self.record.line = self.number_member(),
            Key::Method => self.record.method = self.string_member(),
            Key::Generation => self.record.generation = self.number_member(),
            Key::Memsize => self.record.memsize = self.number_member(),
            Key::Bytesize => self.record.bytesize = self.number_member(),
            Key::Capacity => self.record.capacity = self.number_member(),
            Key::Value => {
                // FLOAT values are bare in no version, but be lenient with numbers.
                if self.peek() == Some(b'"') {
                    self.record.value = Some(self.string());
                } else {
                    let start = self.pos;
                    self.skip_value();
                    self.record.value = Some(Span {
                        start: start as u32,
                        end: self.pos as u32,
                    });
                }
            }
            Key::Encoding => self.record.encoding = self.string_member(),
            Key::Coderange => self.record.coderange = self.string_member(),
            Key::Length => self.record.length = self.number_member(),
            Key::Fd => self.record.fd = self.number_member(),
            Key::ShapeId => self.record.shape_id = self.number_member(),
            Key::SlotSize => self.record.slot_size = self.number_member(),
            Key::VariationCount => self.record.variation_count = self.number_member(),
            Key::Name => self.record.name = self.string_member(),
            Key::RealClassName => self.record.real_class_name = self.string_member(),
            Key::Subtype => self.record.subtype = self.string_member(),
            Key::Mid => self.record.mid = self.string_member(),
            Key::CalledId => self.record.called_id = self.string_member(),
            Key::Id => self.record.shape_id = self.number_member(),
            Key::ParentId => self.record.shape_parent_id = self.number_member(),
            Key::Depth => self.record.shape_depth = self.number_member(),
            Key::ShapeType => self.record.shape_type = self.string_member(),
            Key::EdgeName => self.record.edge_name = self.string_member(),
            Key::Edges => self.record.shape_edges = self.number_member(),
            Key::Other => {
                if self.peek() == Some(b't') || self.peek() == Some(b'f') {
                    if self.boolean() == Some(true) {
                        self.record.flags |= flag::from_name(name);
                    }
                } else {
                    self.skip_value();
                }
            }
        }
    }
}

/// Position of the first `"`: 16 bytes at a time for the short keys and values that make
/// up most of a dump (a call to memchr costs more than it saves there), memchr beyond.
#[inline]
fn find_quote(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < 64 {
        let Some(chunk) = bytes[at..].first_chunk::<16>() else {
            let rest = &bytes[at..];
            return rest.iter().position(|&b| b == b'"').map(|i| at + i);
        };
        if let Some(i) = first_quote_in(u128::from_le_bytes(*chunk)) {
            return Some(at + i);
        }
        at += 16;
    }
    memchr::memchr(b'"', &bytes[at..]).map(|i| at + i)
}

/// Index of the first `"` byte among the 16 bytes of `word` (little-endian), if any:
/// the classic "which byte is zero" bit trick on `word ^ "\"\"…"`. Bytes above the first
/// zero byte can show false positives; the lowest set bit is always right.
#[inline]
fn first_quote_in(word: u128) -> Option<usize> {
    const ONES: u128 = u128::from_le_bytes([0x01; 16]);
    const HIGHS: u128 = u128::from_le_bytes([0x80; 16]);
    const QUOTES: u128 = u128::from_le_bytes([b'"'; 16]);
    let x = word ^ QUOTES;
    let found = x.wrapping_sub(ONES) & !x & HIGHS;
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// Is the quote that follows `before` escaped by a backslash (an odd run of them)?
fn is_escaped(before: &[u8]) -> bool {
    before.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Lowercase hex digit values, as the emitter writes addresses; 0xFF for other bytes.
static HEX_DIGITS: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The value of the lowercase hex digits that start `bytes` (at most 16) and how many
/// there are.
#[inline]
fn hex_prefix(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut digits = 0;
    for &b in bytes.iter().take(16) {
        let digit = HEX_DIGITS[b as usize];
        if digit > 15 {
            break;
        }
        value = (value << 4) | u64::from(digit);
        digits += 1;
    }
    (value, digits)
}

/// `0x` + hex digits, as the emitter writes addresses.
pub fn parse_address(text: &[u8]) -> Option<u64> {
    let hex = text.strip_prefix(b"0x")?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in hex {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | u64::from(digit);
    }
    Some(value)
}

/// Decodes a JSON string body as the emitter escapes it into raw bytes: `\uXXXX` below
/// 0x100 is one byte (Ruby escapes bytes, not code points), above it UTF-8.
pub fn unescape(raw: &[u8]) -> Vec<u8> {
    unescape_with(raw, false)
}

/// As `unescape`; with `decimal`, `\uNNNN` is read as a decimal number, the way Ruby
/// 2.6 and 2.7 wrote control characters (`"\\u%04d"`).
pub fn unescape_with(raw: &[u8], decimal: bool) -> Vec<u8> {
    if memchr::memchr(b'\\', raw).is_none() {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let escape = raw[i + 1];
        i += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'/' => out.push(b'/'),
            b'u' => {
                let code = raw
                    .get(i..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, if decimal { 10 } else { 16 }).ok());
                match code {
                    Some(c) if c < 0x100 => {
                        out.push(c as u8);
                        i += 4;
                    }
                    Some(c) => {
                        let ch = char::from_u32(c).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += 4;
                    }
                    None => out.extend_from_slice(b"\\u"),
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (Record, Vec<u64>) {
        let mut refs = Vec::new();
        let record = parse_line(line.as_bytes(), &mut refs).expect("a record");
        (record, refs)
    }

    #[test]
    fn reads_a_plain_string_record() {
        let line = r#"{"address":"0x7f1e8f19e830", "type":"STRING", "class":"0x7f1e8f17a778", "frozen":true, "bytesize":5, "value":"a\"b\\c", "encoding":"UTF-8", "file":"app.rb", "line":28, "method":"call", "generation":12, "memsize":40, "flags":{"wb_protected":true, "old":true}}"#;
        let (r, refs) = parse(line);
        assert_eq!(r.address, Some(0x7f1e8f19e830));
        assert_eq!(r.object_type, Some(ObjectType::String));
        assert_eq!(r.class, Some(0x7f1e8f17a778));
        assert_eq!(r.file.unwrap().of(line.as_bytes()), b"app.rb");
        assert_eq!(r.line, Some(28));
        assert_eq!(r.generation, Some(12));
        assert_eq!(r.memsize, Some(40));
        assert_eq!(unescape(r.value.unwrap().of(line.as_bytes())), b"a\"b\\c");
        assert_eq!(r.flags, flag::FROZEN | flag::WB_PROTECTED | flag::OLD);
        assert!(!r.recovered);
        assert!(refs.is_empty());
    }

    #[test]
    fn reads_references_and_roots() {
        let (r, refs) =
            parse(r#"{"type":"ROOT", "root":"vm", "references":["0x1", "0xff", "0x1"]}"#);
        assert_eq!(r.kind, RecordKind::Root);
        assert_eq!(refs, vec![1, 255, 1]);
    }

    #[test]
    fn shape_edges_without_space_after_comma() {
        let line = r#"{"address":"0x28d0078", "type":"SHAPE", "id":7, "parent_id":3,"edge_name":"@name", "depth":2, "shape_type":"IVAR", "edges":0, "memsize":24}"#;
        let (r, _) = parse(line);
        assert_eq!(r.kind, RecordKind::Shape);
        assert_eq!(r.shape_id, Some(7));
        assert_eq!(r.shape_parent_id, Some(3));
        assert_eq!(r.edge_name.unwrap().of(line.as_bytes()), b"@name");
        assert!(!r.recovered);
    }

    #[test]
    fn ruby_31_non_ascii_junk_is_recovered() {
        // The 3.0/3.1 bug: `\u00ff`, NULs, junk with raw quotes, then the record goes on.
        let line = b"{\"address\":\"0x10\", \"type\":\"IMEMO\", \"imemo_type\":\"callcache\", \"method\":\"\\u00ff\0\0j\"u\"nk\xe3\x81\", \"generation\":7, \"file\":\"a.rb\", \"line\":3, \"references\":[\"0x20\"], \"memsize\":40}";
        let mut refs = Vec::new();
        let r = parse_line(line, &mut refs).unwrap();
        assert!(r.recovered);
        assert_eq!(r.address, Some(0x10));
        assert_eq!(r.generation, Some(7));
        assert_eq!(r.line, Some(3));
        assert_eq!(r.memsize, Some(40));
        assert_eq!(refs, vec![0x20]);
    }

    #[test]
    fn unescaped_quote_and_backslash_in_paths() {
        let line =
            r#"{"address":"0x10", "type":"STRING", "file":"/srv/a"b\", "line":3, "memsize":40}"#;
        let (r, _) = parse(line);
        assert!(r.recovered);
        assert_eq!(r.file.unwrap().of(line.as_bytes()), br#"/srv/a"b\"#);
        assert_eq!(r.line, Some(3));
        assert_eq!(r.memsize, Some(40));
    }

    #[test]
    fn a_truncated_line_is_incomplete() {
        let (r, refs) = parse(r#"{"address":"0x10", "type":"ARRAY", "references":["0x20", "0x3"#);
        assert!(r.incomplete);
        assert_eq!(refs, vec![0x20]);
    }

    #[test]
    fn overflowing_numbers_are_flagged() {
        let (r, _) =
            parse(r#"{"address":"0x10", "type":"STRING", "memsize":99999999999999999999999}"#);
        assert_eq!(r.overflows, 1);
        assert_eq!(r.memsize, None);
    }

    #[test]
    fn nested_unknown_members_are_skipped_whole() {
        let (r, _) = parse(
            r#"{"address":"0x10", "type":"STRING", "foo":["a", "b"], "bar":{"x":"y", "z":[1]}, "file":"a.rb", "line":3, "memsize":40, "flags":{"x":"y", "age":-1, "old":true}}"#,
        );
        assert_eq!(r.line, Some(3));
        assert_eq!(r.memsize, Some(40));
        assert_eq!(r.flags, flag::OLD);
        assert!(!r.recovered && !r.incomplete);
    }

    #[test]
    fn not_a_record() {
        let mut refs = Vec::new();
        assert!(parse_line(b"<html>", &mut refs).is_err());
        assert!(parse_line(b"{\"a\":1}", &mut refs).is_err());
    }

    #[test]
    fn unescape_bytes_and_code_points() {
        assert_eq!(
            unescape(br"\u0000\u00ff\u007f\n"),
            vec![0, 0xff, 0x7f, b'\n']
        );
        assert_eq!(unescape(br"\u3042"), "\u{3042}".as_bytes());
    }
}
