//! The line parser: one dump line to a `Record`, leniently (see the module above).

use super::flag;
use super::keys::{pack_key, Key};
use super::record::{Record, RecordKind, Span};
use super::scan::{
    find_quote, hex_prefix, is_escaped, member_name_in_chunk, parse_address, quote_in_chunk,
};
use crate::error::Error;
use crate::object_type::ObjectType;

/// Parses one line (without its newline). References are appended to `references`
/// as raw addresses; the caller knows where this record's references start.
/// A line that is no record is an `Error::Parse` with no file and line 0: only the
/// caller knows where the line is.
pub fn parse_line(line: &[u8], references: &mut Vec<u64>) -> Result<Record, Error> {
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
) -> Result<(), Error> {
    let mut parser = LineParser {
        line,
        pos: 0,
        record,
    };
    parser.parse(references)?;
    let record = &*parser.record;
    if record.kind == RecordKind::Object && (record.address.is_none() || record.type_name.is_none())
    {
        return Err(Error::not_a_record(if record.type_name.is_none() {
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

/// The separators between members (`, "` or `,"`, the quote opening the next name). A
/// string's closing quote is followed by one of them and a member name, or by the
/// record's closing `}`; a quote followed by anything else is part of the value (a
/// file path can contain `"`).
const MEMBER_SEPARATORS: [&[u8]; 2] = [b", \"", b",\""];

/// `NAME_BYTES[n]` keeps the first `n` bytes of a 16-byte word: a look-up where
/// `(1u128 << 8 * n) - 1`, a shift of a two-register integer, took ten instructions a
/// member name (callgrind).
static NAME_BYTES: [u128; 16] = {
    let mut masks = [0u128; 16];
    let mut n = 1;
    while n < 16 {
        masks[n] = (1u128 << (8 * n)) - 1;
        n += 1;
    }
    masks
};

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

    fn parse(&mut self, references: &mut Vec<u64>) -> Result<(), Error> {
        self.skip_spaces();
        if self.peek() != Some(b'{') {
            return Err(Error::not_a_record("does not start with '{'"));
        }
        self.pos += 1;
        let mut members = 0usize;
        'members: loop {
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
                        return Err(Error::not_a_record("not a JSON object"));
                    }
                    if !self.resync() {
                        self.mark_recovered("unreadable bytes at the end of the line");
                        break;
                    }
                    self.mark_recovered("unreadable bytes between members");
                    continue;
                }
            }
            // At a name's quote. The emitter's layout, `"name":value, "name":value`, runs
            // here member after member: its separator `, "` leads straight to the next
            // name, without the space skip and the dispatch above.
            loop {
                let Some((key, name)) = self.key() else {
                    if members == 0 {
                        return Err(Error::not_a_record("not a JSON object"));
                    }
                    self.record.incomplete = true;
                    break 'members;
                };
                members += 1;
                self.member(key, name, references);
                if !self.line[self.pos..].starts_with(b", \"") {
                    break;
                }
                self.pos += 2;
            }
        }
        Ok(())
    }

    /// Reads `"key":` and returns what the key is and its name; leaves `pos` at the
    /// value. Inlined: called once a member, its call and the return of the name through
    /// memory cost a sixth of what it does (callgrind).
    #[inline(always)]
    fn key(&mut self) -> Option<(Key, &'a [u8])> {
        let start = self.pos + 1;
        let rest = &self.line[start..];
        let (len, packed) = match rest.first_chunk::<16>() {
            // The common case, a short name with 16 bytes of line after it: find the
            // quote and pack the name in a few integer operations.
            Some(chunk) => {
                let word = u128::from_le_bytes(*chunk);
                match quote_in_chunk(chunk) {
                    Some(len) => {
                        let name_bits = NAME_BYTES[len & 15];
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
        if let Some(verdict) = member_name_in_chunk(rest) {
            return verdict;
        }
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
                            // The emitter's `, "`: on to the next quote, without the
                            // loop's space skip and `,` arm.
                            if self.line[self.pos..].starts_with(b", \"") {
                                self.pos += 2;
                            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::unescape;

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
