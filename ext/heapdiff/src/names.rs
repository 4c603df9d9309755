//! The code's names for objects: `Heapdiff::Names._address` (a live object's address,
//! as the dump writes it) for the capture side, and the Heap methods that give a
//! loaded heap its names sidecar and read the names back.

use magnus::{
    function, method, prelude::*, rb_sys::AsRawValue, Error, RClass, RModule, Ruby, Value,
};

use heapdiff_core::graph::NameEntry;

use crate::heap::HeapHandle;

pub fn init(ruby: &Ruby, module: RModule, heap: RClass) -> Result<(), Error> {
    let names = module.define_class("Names", ruby.class_object())?;
    names.define_singleton_method("_address", function!(address, 1))?;
    heap.define_method("_set_names", method!(set_names, 1))?;
    heap.define_method("_name_of", method!(name_of, 1))?;
    heap.define_method("_names_count", method!(names_count, 0))?;
    Ok(())
}

/// The address of a heap object: its VALUE, which is what `ObjectSpace.dump_all` writes
/// as `"address"` (on 3.x `object_id` is a counter, not the address). None for special
/// constants (Integers, Symbols, nil, …), which are in no dump. Allocates nothing.
// VALUE is u64 on 64-bit Linux, another width elsewhere: the cast is not always a no-op.
#[allow(clippy::unnecessary_cast)]
fn address(value: Value) -> Option<u64> {
    let raw = value.as_raw();
    (!rb_sys::SPECIAL_CONST_P(raw)).then_some(raw as u64)
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
