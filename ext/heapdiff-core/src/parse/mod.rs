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
//!
//! The parts, one file each: `record` (the types a line parses to), `flag` (the bits
//! kept per object), `keys` (member names to keys), `line` (the parser), `scan` (byte
//! scanning: quotes, hex), `unescape` (JSON string bodies to bytes), `boundary` (where a
//! record starts and a line ends, for the loader and the redactor alike).

pub mod boundary;
pub mod flag;
mod keys;
mod line;
mod record;
mod scan;
mod unescape;

pub use line::{parse_line, parse_line_into};
pub use record::{Record, RecordKind, Span};
pub use scan::parse_address;
pub use unescape::{unescape, unescape_with};
