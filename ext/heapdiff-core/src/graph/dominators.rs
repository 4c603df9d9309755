//! The dominator tree (Lengauer–Tarjan) and retained sizes.

use super::{slot, HeapGraph, NO_ROW};
use crate::cancel::checkpoint_every;

/// The dominator tree: `idom[v]` is the closest object every path from the roots to `v`
/// passes through (`SUPER_ROOT` when only the roots themselves do).
#[derive(Debug)]
pub struct Dominators {
    pub idom: Vec<u32>,
    /// Bytes freed if the object were freed: its memsize plus that of everything it
    /// dominates.
    pub retained: Vec<u64>,
}

/// The virtual root above all GC roots, in `Dominators::idom`.
pub const SUPER_ROOT: u32 = NO_ROW - 1;

impl HeapGraph {
    /// The dominator tree (Lengauer–Tarjan) and retained sizes.
    pub fn dominators(&self, class_edges: bool) -> &Dominators {
        self.dominators[slot(class_edges)].get_or_init(|| compute_dominators(self, class_edges))
    }

    /// The immediate dominator of `row`: Some(row), or None when the roots hold it
    /// directly (or nothing does).
    pub fn dominator(&self, row: usize, class_edges: bool) -> Option<usize> {
        let d = self.dominators(class_edges).idom[row];
        (d != NO_ROW && d != SUPER_ROOT).then_some(d as usize)
    }

    pub fn retained_size(&self, row: usize, class_edges: bool) -> u64 {
        self.dominators(class_edges).retained[row]
    }
}

/// Lengauer–Tarjan over the heap plus a virtual root above all GC roots, in preorder
/// numbers (0 is the virtual root). Iterative throughout: heaps have million-long chains.
fn compute_dominators(graph: &HeapGraph, class_edges: bool) -> Dominators {
    let heap = graph.heap();
    let n = heap.len();
    let mut pre = vec![NO_ROW; n]; // row → preorder number
    let mut vertex: Vec<u32> = vec![NO_ROW]; // preorder → row (0: virtual root)
    let mut parent: Vec<u32> = vec![NO_ROW];
    let mut is_root_target = vec![false; n];
    let mut root_rows: Vec<usize> = Vec::new();
    for (_, t) in heap.root_rows() {
        if !is_root_target[t] {
            is_root_target[t] = true;
            root_rows.push(t);
        }
    }

    // Depth-first numbering. A stack entry is (preorder number, row, next successor
    // index); the virtual root's successors are the root rows.
    let mut stack: Vec<(u32, u32, usize)> = vec![(0, NO_ROW, 0)];
    while let Some(top) = stack.last_mut() {
        checkpoint_every(vertex.len());
        let (p, row, k) = *top;
        top.2 += 1;
        let next = if row == NO_ROW {
            root_rows.get(k).map(|&t| Some(t))
        } else {
            graph.successor_at(row as usize, k, class_edges)
        };
        let t = match next {
            None => {
                stack.pop();
                continue;
            }
            Some(None) => continue, // a dangling reference
            Some(Some(t)) => t,
        };
        if pre[t] != NO_ROW {
            continue;
        }
        let number = vertex.len() as u32;
        pre[t] = number;
        vertex.push(t as u32);
        parent.push(p);
        stack.push((number, t as u32, 0));
    }

    let count = vertex.len();
    let reverse = graph.reverse(class_edges);
    let mut semi: Vec<u32> = (0..count as u32).collect();
    let mut label: Vec<u32> = (0..count as u32).collect();
    let mut ancestor = vec![NO_ROW; count];
    let mut idom = vec![0u32; count];
    let mut bucket_head = vec![NO_ROW; count];
    let mut bucket_next = vec![NO_ROW; count];
    let mut path: Vec<u32> = Vec::new();

    let eval = |v: u32,
                ancestor: &mut Vec<u32>,
                label: &mut Vec<u32>,
                semi: &Vec<u32>,
                path: &mut Vec<u32>|
     -> u32 {
        if ancestor[v as usize] == NO_ROW {
            return v;
        }
        // Path compression, iteratively.
        let mut x = v;
        while ancestor[ancestor[x as usize] as usize] != NO_ROW {
            path.push(x);
            x = ancestor[x as usize];
        }
        while let Some(y) = path.pop() {
            let a = ancestor[y as usize];
            if semi[label[a as usize] as usize] < semi[label[y as usize] as usize] {
                label[y as usize] = label[a as usize];
            }
            ancestor[y as usize] = ancestor[a as usize];
        }
        label[v as usize]
    };

    for w in (1..count).rev() {
        checkpoint_every(w);
        let row = vertex[w] as usize;
        let mut s = semi[w];
        let preds = reverse.neighbours(row).iter().map(|&u| pre[u as usize]);
        let from_root = is_root_target[row].then_some(0u32);
        for pv in preds.chain(from_root) {
            if pv == NO_ROW {
                continue; // a predecessor the roots do not reach
            }
            let u = eval(pv, &mut ancestor, &mut label, &semi, &mut path);
            if semi[u as usize] < s {
                s = semi[u as usize];
            }
        }
        semi[w] = s;
        bucket_next[w] = bucket_head[s as usize];
        bucket_head[s as usize] = w as u32;
        let p = parent[w];
        ancestor[w] = p;
        let mut v = bucket_head[p as usize];
        bucket_head[p as usize] = NO_ROW;
        while v != NO_ROW {
            let u = eval(v, &mut ancestor, &mut label, &semi, &mut path);
            idom[v as usize] = if semi[u as usize] < semi[v as usize] {
                u
            } else {
                p
            };
            v = bucket_next[v as usize];
        }
    }
    for w in 1..count {
        if idom[w] != semi[w] {
            idom[w] = idom[idom[w] as usize];
        }
    }

    // Retained sizes: children before parents, i.e. reverse preorder.
    let mut retained_pre = vec![0u64; count];
    for w in (1..count).rev() {
        retained_pre[w] += heap.columns.memsize.get(vertex[w] as usize);
        let d = idom[w] as usize;
        retained_pre[d] += retained_pre[w];
    }

    let mut idom_rows = vec![NO_ROW; n];
    let mut retained = vec![0u64; n];
    for w in 1..count {
        let row = vertex[w] as usize;
        idom_rows[row] = if idom[w] == 0 {
            SUPER_ROOT
        } else {
            vertex[idom[w] as usize]
        };
        retained[row] = retained_pre[w];
    }
    Dominators {
        idom: idom_rows,
        retained,
    }
}
