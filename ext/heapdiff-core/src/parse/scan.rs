//! Byte scanning for the parser: quotes (16 bytes at a time), escapes, hex numbers.

/// Position of the first `"`: 16 bytes at a time for the short keys and values that make
/// up most of a dump (a call to memchr costs more than it saves there), memchr beyond.
#[inline]
pub(super) fn find_quote(bytes: &[u8]) -> Option<usize> {
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
pub(super) fn first_quote_in(word: u128) -> Option<usize> {
    const ONES: u128 = u128::from_le_bytes([0x01; 16]);
    const HIGHS: u128 = u128::from_le_bytes([0x80; 16]);
    const QUOTES: u128 = u128::from_le_bytes([b'"'; 16]);
    let x = word ^ QUOTES;
    let found = x.wrapping_sub(ONES) & !x & HIGHS;
    (found != 0).then(|| found.trailing_zeros() as usize / 8)
}

/// Is the quote that follows `before` escaped by a backslash (an odd run of them)?
pub(super) fn is_escaped(before: &[u8]) -> bool {
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
pub(super) fn hex_prefix(bytes: &[u8]) -> (u64, usize) {
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
