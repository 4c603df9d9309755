//! JSON string bodies, as the emitter escapes them, back to raw bytes.

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
