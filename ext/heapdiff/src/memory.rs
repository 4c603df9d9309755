//! The memory of loaded heaps, as Ruby sees it. Ruby's GC does not see what Rust
//! allocates: a `Tracked` graph reports its bytes (`rb_gc_adjust_memory_usage`), so that
//! dropped heaps lead to a collection like any large Ruby allocation would, and the
//! bytes are reported back as freed when the graph goes. Once freed, `give_back`
//! returns glibc's free pages to the system.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use heapdiff_core::HeapGraph;
use magnus::{Error, Ruby};

use crate::errors::{error, Raise};

/// A heap's graph and the bytes of it reported to Ruby's GC: the index
/// (`Heap::heap_bytes`) and the analyses built on first use (`HeapGraph::cache_bytes`).
/// Shared in an `Arc` by every handle that uses the graph (a `Heap`, the `Report` and
/// `Trend` made from it). Only made, synced and dropped with the GVL held: the handles
/// drop it when closed or swept, and work without the GVL borrows it.
pub struct Tracked {
    graph: Arc<HeapGraph>,
    reported: AtomicIsize,
    // Last, so it drops after the graph (fields drop in order).
    _give_back: GiveBack,
}

impl Tracked {
    /// Tracks `graph` (that no other `Tracked` reports) and reports its bytes now.
    pub fn new(graph: Arc<HeapGraph>) -> Arc<Tracked> {
        let tracked = Tracked {
            graph,
            reported: AtomicIsize::new(0),
            _give_back: GiveBack,
        };
        tracked.sync();
        Arc::new(tracked)
    }

    /// The graph, where a `&HeapGraph` is wanted (deref does the rest).
    pub fn graph(&self) -> &HeapGraph {
        &self.graph
    }

    /// Reports what the graph holds now, against what was reported before. Call it
    /// after work that may have built an analysis (a path, a dominator, a diff).
    pub fn sync(&self) {
        let bytes = self.graph.heap().heap_bytes() + self.graph.cache_bytes();
        let now = isize::try_from(bytes).unwrap_or(isize::MAX);
        let before = self.reported.swap(now, Ordering::Relaxed);
        adjust_gc_memory(now - before);
    }
}

impl Deref for Tracked {
    type Target = HeapGraph;

    fn deref(&self) -> &HeapGraph {
        &self.graph
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        adjust_gc_memory(-self.reported.load(Ordering::Relaxed));
    }
}

/// A handle's hold on a tracked graph (a Heap's own, a Report's or Trend's last
/// dump): None once the handle is closed. Only touched with the GVL held.
pub struct Held(RefCell<Option<Arc<Tracked>>>);

impl Held {
    pub fn new(graph: Option<Arc<Tracked>>) -> Held {
        Held(RefCell::new(graph))
    }

    /// The graph; raises Heapdiff::Error "heapdiff: the `what` is closed" once closed.
    pub fn get(&self, ruby: &Ruby, what: &str) -> Result<Arc<Tracked>, Error> {
        match &*self.0.borrow() {
            Some(graph) => Ok(graph.clone()),
            None => Err(error(
                ruby,
                Raise::Error,
                format!("heapdiff: the {what} is closed"),
            )),
        }
    }

    /// Lets go of the graph: it is freed now unless another handle holds it too.
    pub fn close(&self) {
        let graph = self.0.borrow_mut().take();
        drop(graph);
    }

    pub fn is_closed(&self) -> bool {
        self.0.borrow().is_none()
    }
}

/// Tells Ruby's GC about memory it did not allocate. Called with the GVL held: when a
/// graph is tracked or grows, or when it is freed (closed, or swept by the GC itself,
/// where Ruby allows it: it only lowers a counter).
fn adjust_gc_memory(bytes: isize) {
    if bytes != 0 {
        // SAFETY: a plain counter update in Ruby's GC; the GVL is held.
        unsafe { rb_sys::rb_gc_adjust_memory_usage(bytes as rb_sys::ssize_t) };
    }
}

/// Gives the memory of a freed heap back when dropped. A loaded heap is tens to
/// hundreds of megabytes in many allocations, made partly on worker threads; once
/// freed, glibc keeps most of it in its arenas, so the host process's RSS would stay
/// high (and wander by tens of megabytes from load to load) long after heapdiff is done.
pub struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        give_back();
    }
}

/// Returns the free pages of every arena (`malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory on their own, or offer no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
