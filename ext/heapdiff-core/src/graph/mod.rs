//! The object graph of one heap, for "why is it retained": the shortest paths from the
//! GC roots, the reverse references, and the dominator tree with retained sizes.
//!
//! Everything here is computed on first use and kept (the heap is immutable), once per
//! choice of `class_edges`: dumps leave out the object → class edge, and adding it
//! shows class-level state (caches in class ivars and constants) as a retainer.

mod dominators;
pub mod names;
mod paths;
pub mod suspects;

pub use dominators::{Dominators, SUPER_ROOT};
pub use names::{Name, NameEntry, Names};
pub use paths::{Path, Step};

use paths::{RootTree, Search};

use std::sync::{Mutex, OnceLock};

use crate::cancel::checkpoint_every;
use crate::heap::Heap;

/// No vertex / not reached.
pub const NO_ROW: u32 = u32::MAX;

/// A loaded heap with the analyses of its object graph, each built on first use and
/// kept, one slot per `class_edges` choice. The graph depends on the heap, never the
/// other way: `Heap` answers what one object is; `HeapGraph` answers what holds it.
#[derive(Debug)]
pub struct HeapGraph {
    heap: Heap,
    reverse: [OnceLock<Csr>; 2],
    tree: [OnceLock<RootTree>; 2],
    /// The breadth-first search from the roots while it is not whole (see `Search`).
    search: [Mutex<Option<Search>>; 2],
    dominators: [OnceLock<Dominators>; 2],
    /// The code's names for objects, from a snapshot's names sidecar (set once).
    names: OnceLock<Names>,
}

/// A compressed sparse row adjacency: the neighbours of `row` are
/// `targets[start[row]..start[row + 1]]`.
#[derive(Debug)]
pub struct Csr {
    pub start: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Csr {
    fn heap_bytes(&self) -> usize {
        (self.start.capacity() + self.targets.capacity()) * std::mem::size_of::<u32>()
    }

    pub fn neighbours(&self, row: usize) -> &[u32] {
        &self.targets[self.start[row] as usize..self.start[row + 1] as usize]
    }
}

pub(crate) fn slot(class_edges: bool) -> usize {
    usize::from(class_edges)
}

impl HeapGraph {
    pub fn new(heap: Heap) -> HeapGraph {
        HeapGraph {
            heap,
            reverse: Default::default(),
            tree: Default::default(),
            search: Default::default(),
            dominators: Default::default(),
            names: OnceLock::new(),
        }
    }

    /// The heap this graph is over.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Bytes held by what was built on first use so far: the reverse graphs, the
    /// breadth-first trees, the dominator trees and the heap's shape index. They come
    /// on top of `Heap::heap_bytes`, and grow as queries are answered.
    pub fn cache_bytes(&self) -> usize {
        fn built<T>(slots: &[OnceLock<T>], bytes: impl Fn(&T) -> usize) -> usize {
            slots.iter().filter_map(OnceLock::get).map(bytes).sum()
        }
        let reverse = built(&self.reverse, Csr::heap_bytes);
        let trees = built(&self.tree, RootTree::heap_bytes)
            + self
                .search
                .iter()
                .filter_map(|s| s.try_lock().ok()?.as_ref().map(Search::heap_bytes))
                .sum::<usize>();
        let dominators = built(&self.dominators, |d| {
            d.idom.capacity() * 4 + d.retained.capacity() * 8
        });
        let shapes = self
            .heap
            .shape_ids
            .get()
            .map_or(0, |ids| ids.capacity() * (8 + 8 + 1));
        reverse + trees + dominators + shapes
    }

    /// The row of each object's class (`NO_ROW`, which is `heap::NO_CLASS`, where
    /// `Heap::class_row` has none).
    pub(crate) fn class_rows(&self) -> &[u32] {
        &self.heap.class_rows
    }

    /// The row of the class of the object at `row`, from `class_rows`.
    pub(crate) fn class_of(&self, row: usize) -> Option<usize> {
        let c = self.class_rows()[row];
        (c != NO_ROW).then_some(c as usize)
    }

    /// Calls `f` with each object the one at `row` references (and its class, with `class_edges`).
    fn for_each_successor(&self, row: usize, class_edges: bool, mut f: impl FnMut(usize)) {
        for t in self.heap.referents(row) {
            f(t);
        }
        if class_edges {
            if let Some(c) = self.class_of(row) {
                f(c);
            }
        }
    }

    /// Who references each object: the reverse of the reference graph.
    pub fn reverse(&self, class_edges: bool) -> &Csr {
        self.reverse[slot(class_edges)].get_or_init(|| {
            let n = self.heap.len();
            let mut counts = vec![0u32; n + 1];
            for v in 0..n {
                checkpoint_every(v);
                self.for_each_successor(v, class_edges, |t| counts[t + 1] += 1);
            }
            for i in 0..n {
                counts[i + 1] += counts[i];
            }
            let mut fill = counts.clone();
            let mut targets = vec![0u32; counts[n] as usize];
            for v in 0..n {
                checkpoint_every(v);
                self.for_each_successor(v, class_edges, |t| {
                    targets[fill[t] as usize] = v as u32;
                    fill[t] += 1;
                });
            }
            Csr {
                start: counts,
                targets,
            }
        })
    }

    /// Objects that reference the object at `row` (each once).
    pub fn retainers(&self, row: usize, class_edges: bool) -> Vec<usize> {
        let mut rows: Vec<usize> = self
            .reverse(class_edges)
            .neighbours(row)
            .iter()
            .map(|&u| u as usize)
            .collect();
        rows.dedup();
        rows
    }
}
