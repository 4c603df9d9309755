//! heapdiff's core: loading Ruby heap dumps (`ObjectSpace.dump_all`) into a compact
//! index and diffing them. Plain Rust, no Ruby types: the binding crate wraps it.

pub mod address_index;
pub mod cancel;
pub mod diff;
pub mod error;
pub mod graph;
pub mod heap;
pub mod intern;
pub mod load;
pub mod object_type;
pub mod parse;
pub mod redact;
pub mod source;
pub mod summary;
pub mod trend;

/// The longest record (one line of a dump, in bytes) heapdiff reads. Real records
/// hold at most one string's value; without a limit, a small gzip file that inflates
/// to one line of gigabytes would make the loader allocate all of it. Longer records
/// are a ParseError naming their line.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

pub use diff::{diff, DiffOptions, Group, Report};
pub use error::{Error, Result};
pub use graph::HeapGraph;
pub use heap::Heap;
pub use load::{load, LoadOptions};
pub use object_type::ObjectType;
pub use trend::{trend, Trend, Verdict};
