//! The dominator tree (Lengauer–Tarjan) and retained sizes.

use super::{slot, HeapGraph, NO_ROW};
use crate::cancel::checkpoint_every;
use crate::heap::Heap;

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
/// Each phase is its own function, so that a profile shows what each costs.
#[inline(never)]
fn compute_dominators(graph: &HeapGraph, class_edges: bool) -> Dominators {
    let heap = graph.heap();
    let n = heap.len();
    let mut is_root_target = vec![false; n];
    let mut root_rows: Vec<usize> = Vec::new();
    for (_, t) in heap.root_rows() {
        if !is_root_target[t] {
            is_root_target[t] = true;
            root_rows.push(t);
        }
    }
    drop(is_root_target);
    let edges = Edges {
        heap,
        class_rows: if class_edges { graph.class_rows() } else { &[] },
        root_rows,
    };
    let mut order = number(&edges);
    let (pred_start, preds) = predecessors(&edges, &mut order);
    let idom = semi_dominators(&order.parent, &pred_start, &preds);
    drop(preds);
    retained_sizes(heap, &order.vertex, &idom)
}

/// The graph the dominator tree is of: the root rows, each object's references
/// (dangling ones are `>= n`), then its class (with class edges).
struct Edges<'a> {
    heap: &'a Heap,
    /// Each object's class row (`NO_ROW`: none); empty without class edges.
    class_rows: &'a [u32],
    root_rows: Vec<usize>,
}

impl Edges<'_> {
    fn refs(&self, row: usize) -> &[u32] {
        self.heap.reference_rows_with_dangling(row)
    }

    fn class_of(&self, row: usize) -> u32 {
        self.class_rows.get(row).copied().unwrap_or(NO_ROW)
    }
}

/// A depth-first numbering from the virtual root.
struct Preorder {
    /// Row → preorder number (`NO_ROW`: not reached).
    pre: Vec<u32>,
    /// Preorder number → row (0: the virtual root).
    vertex: Vec<u32>,
    /// Preorder number → its DFS tree parent's number.
    parent: Vec<u32>,
    /// Row → how many edges from reached vertices (and the virtual root) lead to it:
    /// the numbering follows each of them once, so it counts them for `predecessors`.
    in_degree: Vec<u32>,
}

#[inline(never)]
fn number(edges: &Edges) -> Preorder {
    let heap = edges.heap;
    let n = heap.len();
    let class_edges = !edges.class_rows.is_empty();
    let mut order = Preorder {
        pre: vec![NO_ROW; n],
        vertex: Vec::with_capacity(n + 1),
        parent: Vec::with_capacity(n + 1),
        in_degree: vec![0; n],
    };
    order.vertex.push(NO_ROW);
    order.parent.push(NO_ROW);
    // A stack entry is (preorder number, row, position of its next reference in
    // `ref_targets`, end of its references); one past the end comes its class, with
    // class edges. Each root row not numbered yet starts a search: the virtual
    // root's successors are the root rows, in order.
    let mut stack: Vec<(u32, u32, u32, u32)> = Vec::new();
    // Numbers `t`, reached from the vertex numbered `p`, and puts it on the stack.
    #[inline(always)]
    fn enter(
        heap: &Heap,
        order: &mut Preorder,
        stack: &mut Vec<(u32, u32, u32, u32)>,
        t: usize,
        p: u32,
    ) {
        let number = order.vertex.len() as u32;
        checkpoint_every(number as usize);
        order.pre[t] = number;
        order.vertex.push(t as u32);
        order.parent.push(p);
        stack.push((number, t as u32, heap.ref_start[t], heap.ref_start[t + 1]));
    }
    for &root in &edges.root_rows {
        order.in_degree[root] += 1;
        if order.pre[root] != NO_ROW {
            continue;
        }
        enter(heap, &mut order, &mut stack, root, 0);
        while let Some(top) = stack.last_mut() {
            let (p, row, k, end) = *top;
            top.2 += 1;
            let t = if k < end {
                heap.ref_targets[k as usize]
            } else if k == end && class_edges {
                edges.class_rows[row as usize]
            } else {
                stack.pop();
                continue;
            };
            let t = t as usize;
            if t >= n {
                continue; // a dangling reference, or no class
            }
            order.in_degree[t] += 1;
            if order.pre[t] != NO_ROW {
                continue;
            }
            enter(heap, &mut order, &mut stack, t, p);
        }
    }
    order
}

/// Calls `f(w, t)` for each edge between reached vertices, in preorder numbers: the
/// virtual root's to the root rows, then each vertex's, in preorder.
fn for_each_edge(edges: &Edges, order: &Preorder, mut f: impl FnMut(u32, u32)) {
    let n = edges.heap.len();
    let pre = &order.pre;
    for &t in &edges.root_rows {
        f(0, pre[t]);
    }
    for (w, &row) in order.vertex.iter().enumerate().skip(1) {
        checkpoint_every(w);
        let row = row as usize;
        for &t in edges.refs(row) {
            if (t as usize) < n {
                f(w as u32, pre[t as usize]);
            }
        }
        let c = edges.class_of(row);
        if c != NO_ROW {
            f(w as u32, pre[c as usize]);
        }
    }
}

/// The predecessors of each vertex, in preorder numbers, indexed by preorder number:
/// the semi-dominator loop reads them in reverse preorder, so they lie in the order it
/// reads them, and need no row → number lookup there. Only reached vertices are
/// predecessors of reached ones (an unreached predecessor cannot matter).
#[inline(never)]
fn predecessors(edges: &Edges, order: &mut Preorder) -> (Vec<u32>, Vec<u32>) {
    let count = order.vertex.len();
    let mut pred_start = vec![0u32; count + 1];
    // Nothing leads to the virtual root (0); the others' counts the numbering made.
    for w in 1..count {
        pred_start[w + 1] = pred_start[w] + order.in_degree[order.vertex[w] as usize];
    }
    order.in_degree = Vec::new();
    let mut fill = pred_start.clone();
    let mut preds = vec![0u32; pred_start[count] as usize];
    for_each_edge(edges, order, |w, t| {
        preds[fill[t as usize] as usize] = w;
        fill[t as usize] += 1;
    });
    (pred_start, preds)
}

/// The immediate dominator of each vertex, in preorder numbers: Lengauer–Tarjan's
/// semi-dominators with path compression (the simple version).
#[inline(never)]
fn semi_dominators(parent: &[u32], pred_start: &[u32], preds: &[u32]) -> Vec<u32> {
    let count = parent.len();
    let mut semi: Vec<u32> = (0..count as u32).collect();
    let mut label: Vec<u32> = (0..count as u32).collect();
    let mut ancestor = vec![NO_ROW; count];
    let mut idom = vec![0u32; count];
    let mut bucket_head = vec![NO_ROW; count];
    let mut bucket_next = vec![NO_ROW; count];
    let mut path: Vec<u32> = Vec::new();

    for w in (1..count).rev() {
        checkpoint_every(w);
        let mut s = semi[w];
        for &pv in &preds[pred_start[w] as usize..pred_start[w + 1] as usize] {
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
    idom
}

/// The vertex of least semi-dominator on the forest path above `v` (`v` itself at a
/// forest root). Most calls end at one of the two first checks: the path compression
/// is kept out of line, so that they are a few instructions inline.
#[inline(always)]
fn eval(v: u32, ancestor: &mut [u32], label: &mut [u32], semi: &[u32], path: &mut Vec<u32>) -> u32 {
    let a = ancestor[v as usize];
    if a == NO_ROW {
        return v;
    }
    if ancestor[a as usize] != NO_ROW {
        compress(v, ancestor, label, semi, path);
    }
    label[v as usize]
}

/// Path compression, iteratively (chains are millions long).
#[inline(never)]
fn compress(v: u32, ancestor: &mut [u32], label: &mut [u32], semi: &[u32], path: &mut Vec<u32>) {
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
}

/// Retained sizes (children before parents, i.e. reverse preorder), and the tree in rows.
#[inline(never)]
fn retained_sizes(heap: &Heap, vertex: &[u32], idom: &[u32]) -> Dominators {
    let n = heap.len();
    let count = vertex.len();
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
