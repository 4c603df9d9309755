//! heapdiff's core: loading Ruby heap dumps (`ObjectSpace.dump_all`) into a compact
//! index and diffing them. Plain Rust, no Ruby types: the binding crate wraps it.

pub mod address_index;
pub mod diff;
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

pub use diff::{diff, DiffOptions, Group, Report};
pub use graph::HeapGraph;
pub use heap::Heap;
pub use load::{load, LoadError, LoadOptions};
pub use object_type::ObjectType;
pub use trend::{trend, Trend, Verdict};
