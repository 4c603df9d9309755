//! Record framing inside a batch: where records start, and how a batch is cut into
//! pieces of whole records for the parallel parse.

use crate::parse::boundary::is_record_start;

/// Smallest piece handed to one parsing task: a quarter of a batch (read.rs), so that
/// two workers each get pieces of every batch.
const MIN_PIECE_BYTES: usize = 256 << 10;

/// Does the stream begin (after blank space) with `{`, as every dump does?
pub(super) fn starts_like_a_record(data: &[u8]) -> bool {
    data.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{')
}

/// Position of the `{` that starts the last record (just after a `\n`), if any. A
/// record cut by the end of `data` cannot be judged yet, so only a start followed by
/// enough bytes to see its first member counts.
pub(super) fn last_record_start(data: &[u8]) -> Option<usize> {
    let mut end = data.len();
    while let Some(nl) = memchr::memrchr(b'\n', &data[..end]) {
        if data.len() - (nl + 1) >= 11 && is_record_start(&data[nl + 1..]) {
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
pub(super) fn next_record(data: &[u8], from: usize) -> (Option<usize>, u64) {
    let mut at = from;
    let mut newlines = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[at..]) {
        newlines += 1;
        let next = at + nl + 1;
        if data.get(next) == Some(&b'{') && is_record_start(&data[next..]) {
            return (Some(next), newlines);
        }
        at = next;
    }
    (None, newlines)
}

/// Cuts a batch into pieces of whole records for the parallel parse.
pub(super) fn split_pieces(data: &[u8]) -> Vec<(usize, usize)> {
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
