//! Where a record starts and where a line's content ends: one home for the two rules
//! that the loader and the redactor both apply to the raw text of a dump.

/// Does a record start at the beginning of `bytes`? Every record the emitter writes
/// begins with its `address` or its `type` member. Checking the member name, not just
/// the `{`, matters: the junk of a broken line can hold a newline followed by `{`.
pub fn is_record_start(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{\"address\":") || bytes.starts_with(b"{\"type\":")
}

/// `line` without its line terminator (`\n`, `\r\n`). The redactor copies what is left
/// byte for byte, so it takes off nothing else: a space before the newline is the
/// line's own.
pub fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = line.split_last() {
        if matches!(last, b'\n' | b'\r') {
            line = rest;
        } else {
            break;
        }
    }
    line
}

/// `segment` without trailing whitespace. The loader cuts the text from one record
/// start to the next, so a segment carries the blank lines that follow its record
/// (spaces and tabs included); the record's own text never ends in whitespace, as the
/// emitter closes every record with `}`.
pub fn trim_segment_end(mut segment: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = segment.split_last() {
        if matches!(last, b'\n' | b'\r' | b' ' | b'\t') {
            segment = rest;
        } else {
            break;
        }
    }
    segment
}
