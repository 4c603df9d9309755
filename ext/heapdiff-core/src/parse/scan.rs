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
        if let Some(i) = quote_in_chunk(chunk) {
            return Some(at + i);
        }
        at += 16;
    }
    memchr::memchr(b'"', &bytes[at..]).map(|i| at + i)
}

/// Index of the first `"` among 16 bytes: one SSE2 compare on x86_64, where it is part
/// of the baseline; `first_quote_in`'s bit trick elsewhere.
#[inline]
pub(super) fn quote_in_chunk(chunk: &[u8; 16]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        let quotes = bytes16::classes(chunk).quotes;
        (quotes != 0).then(|| quotes.trailing_zeros() as usize)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        first_quote_in(u128::from_le_bytes(*chunk))
    }
}

/// Index of the first `"` byte among the 16 bytes of `word` (little-endian), if any:
/// the classic "which byte is zero" bit trick on `word ^ "\"\"…"`. Bytes above the first
/// zero byte can show false positives; the lowest set bit is always right.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
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

/// Which of 16 bytes are what, one bit a byte (bit i for byte i): two SSE2 compares and a
/// `movemask` a class of bytes, where a loop takes a load, a compare and a branch a byte.
/// SSE2 is part of every x86_64; elsewhere the callers read a byte at a time.
#[cfg(target_arch = "x86_64")]
mod bytes16 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cvtsi128_si64,
        _mm_madd_epi16, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi16, _mm_set1_epi32,
        _mm_set1_epi64x, _mm_set1_epi8, _mm_set_epi64x, _mm_slli_epi16, _mm_slli_epi64,
        _mm_srli_epi16, _mm_srli_epi64, _mm_srli_si128,
    };

    struct Bytes16(__m128i);

    /// The classes of `chunk`'s bytes the parser asks about: quotes, name characters.
    #[inline]
    pub(super) fn classes(chunk: &[u8; 16]) -> Classes {
        // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 build and CPU has it.
        unsafe { Classes::of(chunk) }
    }

    /// Which of `chunk`'s bytes are hex digits (one bit a byte), and the value of all 16
    /// read as hex digits, the first the most significant (a byte that is no digit
    /// gives some nibble, which the caller shifts out).
    #[inline]
    pub(super) fn hex_digits_and_value(chunk: &[u8; 16]) -> (u32, u64) {
        // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 build and CPU has it.
        unsafe { Bytes16::new(chunk).hex_digits_and_value() }
    }

    /// One bit a byte (bit i for byte i) for each class.
    pub(super) struct Classes {
        pub(super) quotes: u32,
        pub(super) name_chars: u32,
    }

    impl Classes {
        #[inline]
        #[target_feature(enable = "sse2")]
        fn of(chunk: &[u8; 16]) -> Classes {
            let bytes = Bytes16::new(chunk);
            Classes {
                quotes: bytes.quotes(),
                name_chars: bytes.name_chars(),
            }
        }
    }

    impl Bytes16 {
        #[inline]
        #[target_feature(enable = "sse2")]
        fn new(chunk: &[u8; 16]) -> Bytes16 {
            let (low, high) = chunk.split_at(8);
            let low = u64::from_le_bytes(low.try_into().expect("8 bytes"));
            let high = u64::from_le_bytes(high.try_into().expect("8 bytes"));
            Bytes16(_mm_set_epi64x(high as i64, low as i64))
        }

        /// Bytes in `lo..=hi` (both ASCII: bytes from 0x80 up compare as negative, below
        /// `lo`).
        #[inline]
        #[target_feature(enable = "sse2")]
        fn in_range(&self, lo: u8, hi: u8) -> __m128i {
            let at_least = _mm_cmpgt_epi8(self.0, _mm_set1_epi8(lo as i8 - 1));
            let at_most = _mm_cmpgt_epi8(_mm_set1_epi8(hi as i8 + 1), self.0);
            _mm_and_si128(at_least, at_most)
        }

        #[inline]
        #[target_feature(enable = "sse2")]
        fn mask(bytes: __m128i) -> u32 {
            _mm_movemask_epi8(bytes) as u32
        }

        /// `0`-`9` and `a`-`f`, the digits of the emitter's addresses.
        #[inline]
        #[target_feature(enable = "sse2")]
        fn hex_digits(&self) -> u32 {
            Self::mask(_mm_or_si128(
                self.in_range(b'0', b'9'),
                self.in_range(b'a', b'f'),
            ))
        }

        /// `a`-`z` and `_`, the characters of member names.
        #[inline]
        #[target_feature(enable = "sse2")]
        fn name_chars(&self) -> u32 {
            Self::mask(_mm_or_si128(
                self.in_range(b'a', b'z'),
                _mm_cmpeq_epi8(self.0, _mm_set1_epi8(b'_' as i8)),
            ))
        }

        #[inline]
        #[target_feature(enable = "sse2")]
        fn hex_digits_and_value(&self) -> (u32, u64) {
            (self.hex_digits(), self.hex_value())
        }

        /// The 16 bytes' value as hex digits: each byte's nibble (its low four bits,
        /// plus 9 for `a`-`f`, whose bit 6 is set), then pairs, fours and eights of
        /// nibbles joined by shifts and one multiply-add, where the integer way took
        /// about twenty operations for each eight (callgrind).
        #[inline]
        #[target_feature(enable = "sse2")]
        fn hex_value(&self) -> u64 {
            let letters = _mm_cmpeq_epi8(
                _mm_and_si128(self.0, _mm_set1_epi8(0x40)),
                _mm_set1_epi8(0x40),
            );
            let nibbles = _mm_and_si128(
                _mm_add_epi8(
                    _mm_and_si128(self.0, _mm_set1_epi8(0x0F)),
                    _mm_and_si128(letters, _mm_set1_epi8(9)),
                ),
                _mm_set1_epi8(0x0F),
            );
            // 16-bit lanes: first nibble * 16 + second (little-endian: the first is
            // the low byte).
            let pairs = _mm_or_si128(
                _mm_and_si128(_mm_slli_epi16(nibbles, 4), _mm_set1_epi16(0x00F0)),
                _mm_srli_epi16(nibbles, 8),
            );
            // 32-bit lanes: first pair * 256 + second.
            let fours = _mm_madd_epi16(pairs, _mm_set1_epi32(0x0001_0100));
            // 64-bit lanes: first four * 65536 + second.
            let eights = _mm_or_si128(
                _mm_and_si128(_mm_slli_epi64(fours, 16), _mm_set1_epi64x(0xFFFF_0000)),
                _mm_srli_epi64(fours, 32),
            );
            let first = _mm_cvtsi128_si64(eights) as u64;
            let last = _mm_cvtsi128_si64(_mm_srli_si128(eights, 8)) as u64;
            (first << 32) | last
        }

        #[inline]
        #[target_feature(enable = "sse2")]
        fn quotes(&self) -> u32 {
            Self::mask(_mm_cmpeq_epi8(self.0, _mm_set1_epi8(b'"' as i8)))
        }
    }
}

/// Is `rest` a plausible member name and its end, `[a-z_]+":`, judged from its first 16
/// bytes? `None` when they do not decide (a name of 15 bytes or more, fewer than 16
/// bytes left, or no SSE2): the caller then reads the name a byte at a time.
#[inline]
pub(super) fn member_name_in_chunk(rest: &[u8]) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        let chunk = rest.first_chunk::<16>()?;
        let classes = bytes16::classes(chunk);
        let len = classes.quotes.trailing_zeros() as usize;
        if len >= 15 {
            return None;
        }
        let name = (1u32 << len) - 1;
        Some(len > 0 && classes.name_chars & name == name && chunk[len + 1] == b':')
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = rest;
        None
    }
}

/// The value of the lowercase hex digits that start `bytes` (at most 16) and how many
/// there are. An address is 12 digits: with 16 bytes of line at hand (and SSE2) they
/// are found and combined in SSE2 registers, instead of a loop of table look-ups; near
/// the end of a line, one byte at a time.
#[inline]
pub(super) fn hex_prefix(bytes: &[u8]) -> (u64, usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(chunk) = bytes.first_chunk::<16>() {
        let (digits, value) = bytes16::hex_digits_and_value(chunk);
        let digits = (!digits).trailing_zeros() as usize;
        if digits == 0 {
            return (0, 0);
        }
        // Sixteen digits' value, less the bytes after the last digit.
        return (value >> (4 * (16 - digits)), digits);
    }
    hex_prefix_bytewise(bytes)
}

/// `hex_prefix` one byte at a time, for fewer than 16 bytes.
fn hex_prefix_bytewise(bytes: &[u8]) -> (u64, usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small fixed-seed generator: the tests need many varied inputs, not randomness.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Up to 23 bytes drawn from `alphabet`.
    fn bytes_from(seed: &mut u64, alphabet: &[u8]) -> Vec<u8> {
        let n = (next(seed) % 24) as usize;
        (0..n)
            .map(|_| alphabet[(next(seed) % alphabet.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn hex_prefix_agrees_with_the_bytewise_reading() {
        // Mostly hex digits, with the bytes next to their ranges and high bytes.
        let alphabet = b"0123456789abcdef0123456789abcdef/:`gAF\"\x80\xb0\xe6\xff\x00";
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            let bytes = bytes_from(&mut seed, alphabet);
            assert_eq!(
                hex_prefix(&bytes),
                hex_prefix_bytewise(&bytes),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert_eq!(
            hex_prefix(b"7f1afb6f2058\", \"0x7f"),
            (0x7f1a_fb6f_2058, 12)
        );
        assert_eq!(hex_prefix(b"ffffffffffffffff1234"), (u64::MAX, 16));
        assert_eq!(hex_prefix(b"x0000000000000000000"), (0, 0));
    }

    /// What `LineParser::is_member_start` checks, a byte at a time.
    fn member_name_bytewise(rest: &[u8]) -> bool {
        let i = rest
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
            .count();
        i > 0 && rest.get(i) == Some(&b'"') && rest.get(i + 1) == Some(&b':')
    }

    #[test]
    fn member_name_in_chunk_agrees_with_the_bytewise_reading() {
        let alphabet = b"abcxyz_____\"\"::`{^ A\x80\xe1\xfa\xdf";
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut decided = 0;
        let mut accepted = 0;
        for _ in 0..300_000 {
            let bytes = bytes_from(&mut seed, alphabet);
            if let Some(verdict) = member_name_in_chunk(&bytes) {
                decided += 1;
                accepted += usize::from(verdict);
                assert_eq!(
                    verdict,
                    member_name_bytewise(&bytes),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        assert!(decided > 10_000 && accepted > 100, "{decided} {accepted}");
        assert_eq!(member_name_in_chunk(b"file\":\"a.rb\", \"li"), Some(true));
        assert_eq!(member_name_in_chunk(b"shape_id\":12, \"x\""), Some(true));
        assert_eq!(member_name_in_chunk(b"File\":\"a.rb\", \"li"), Some(false));
        assert_eq!(member_name_in_chunk(b"\":\"a.rb\", \"line\""), Some(false));
        assert_eq!(member_name_in_chunk(b"file\" :\"a.rb\", \"l"), Some(false));
    }
}
