//! The code's names for objects: the Heap methods that give a loaded heap its names
//! sidecar (`lib/heapdiff/capture/names.rb` writes it) and read the names back.

use magnus::{method, prelude::*, Error, RClass, Ruby};

use heapdiff_core::graph::NameEntry;

use crate::heap::HeapHandle;

pub fn init(heap: RClass) -> Result<(), Error> {
    heap.define_method("_set_names", method!(set_names, 1))?;
    heap.define_method("_name_of", method!(name_of, 1))?;
    heap.define_method("_names_count", method!(names_count, 0))?;
    Ok(())
}

/// One sidecar entry as Ruby passes it:
/// `[address, owner address or nil, kind, expr, context or nil, class name or nil]`.
type RawEntry = (
    u64,
    Option<u64>,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Gives the heap its names (once). Returns how many were kept (their address is an
/// object of the dump, of the same class), or nil when it had names already.
fn set_names(
    ruby: &Ruby,
    rb_self: &HeapHandle,
    entries: Vec<RawEntry>,
) -> Result<Option<usize>, Error> {
    let graph = rb_self.graph(ruby)?;
    let entries = entries
        .into_iter()
        .map(
            |(address, owner, kind, expr, context, class_name)| NameEntry {
                address,
                owner,
                kind,
                expr,
                context,
                class_name,
            },
        )
        .collect();
    Ok(graph.set_names(entries))
}

/// The best name of row `i`: `[kind, expr, context]`, or nil.
fn name_of(
    ruby: &Ruby,
    rb_self: &HeapHandle,
    i: usize,
) -> Result<Option<(String, String, Option<String>)>, Error> {
    let graph = rb_self.graph(ruby)?;
    crate::convert::check_index(ruby, "row", i, graph.heap().len())?;
    Ok(graph
        .best_name(i)
        .map(|n| (n.kind.clone(), n.expr.clone(), n.context.clone())))
}

/// How many objects of the heap have a name.
fn names_count(ruby: &Ruby, rb_self: &HeapHandle) -> Result<usize, Error> {
    Ok(rb_self.graph(ruby)?.names().len())
}
