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

use hashbrown::HashMap;

use rayon::prelude::*;

use crate::cancel::{checkpoint, checkpoint_every};
use crate::heap::Heap;
use crate::object_type::ObjectType;

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
    /// Each object's class row (`NO_ROW`: none), for the object → class edges.
    class_rows: OnceLock<Vec<u32>>,
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
            class_rows: OnceLock::new(),
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
        let class_rows = self.class_rows.get().map_or(0, |rows| rows.capacity() * 4);
        reverse + trees + dominators + shapes + class_rows
    }

    /// The row of each object's class (`NO_ROW` where `Heap::class_row` has none),
    /// resolved once, on the first pass that follows class edges: every such pass reads
    /// it for every object, and a lookup in the address index costs ~10× a read of
    /// this column. Built here rather than at load, so that the dumps a diff only
    /// compares (never asked what holds an object) do not carry it: 4 bytes an object.
    pub(crate) fn class_rows(&self) -> &[u32] {
        self.class_rows.get_or_init(|| {
            let heap = &self.heap;
            let columns = &heap.columns;
            // Classes are a few thousand records: a map of them answers most lookups
            // for less than the address index (a block map, then a search in the
            // block). Only rows the index itself finds for their address go in, so
            // that both give the same row.
            let classes: HashMap<u64, u32> = (0..heap.len())
                .filter(|&i| {
                    matches!(
                        columns.object_type[i],
                        ObjectType::Class | ObjectType::Module | ObjectType::IClass
                    ) && heap.find(columns.address[i]) == Some(i)
                })
                .map(|i| (columns.address[i], i as u32))
                .collect();
            let mut rows = vec![NO_ROW; heap.len()];
            for (k, block) in rows.chunks_mut(1 << 16).enumerate() {
                checkpoint();
                let base = k << 16;
                block
                    .par_chunks_mut(4096)
                    .enumerate()
                    .for_each(|(j, chunk)| {
                        let first = base + j * 4096;
                        // Neighbours in a dump are often of one class: look it up once.
                        let mut last = (0u64, NO_ROW);
                        for (i, out) in chunk.iter_mut().enumerate() {
                            let row = first + i;
                            let class = columns.class[row];
                            if class == 0 || columns.object_type[row] == ObjectType::Imemo {
                                continue; // as Heap::class_row: an IMEMO's class is bogus before 3.2
                            }
                            if class != last.0 {
                                let found = match classes.get(&class) {
                                    Some(&r) => Some(r as usize),
                                    None => heap.find(class),
                                };
                                last = (class, found.map_or(NO_ROW, |r| r as u32));
                            }
                            *out = last.1;
                        }
                    });
            }
            rows
        })
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
