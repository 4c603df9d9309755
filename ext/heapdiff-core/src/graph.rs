//! The object graph of one heap, for "why is it retained": the shortest paths from the
//! GC roots, the reverse references, and the dominator tree with retained sizes.
//!
//! Everything here is computed on first use and kept (the heap is immutable), once per
//! choice of `class_edges`: dumps leave out the object → class edge, and adding it
//! shows class-level state (caches in class ivars and constants) as a retainer.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::cancel::checkpoint;
use crate::heap::Heap;
use crate::object_type::ObjectType;

/// No vertex / not reached.
pub const NONE: u32 = u32::MAX;

/// The root category of conservative stack scanning.
const CONSERVATIVE_ROOT: &[u8] = b"machine_context";

/// Where a path starts: the root record (its index in `Heap::roots`).
const ROOT_FLAG: u32 = 1 << 31;

/// Lazily built analyses of a heap, one slot per `class_edges` choice.
#[derive(Debug, Default)]
pub struct GraphCache {
    reverse: [OnceLock<Csr>; 2],
    tree: [OnceLock<RootTree>; 2],
    dominators: [OnceLock<Dominators>; 2],
}

/// A compressed sparse row adjacency: the neighbours of `v` are
/// `targets[start[v]..start[v + 1]]`.
#[derive(Debug)]
pub struct Csr {
    pub start: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Csr {
    pub fn neighbours(&self, v: usize) -> &[u32] {
        &self.targets[self.start[v] as usize..self.start[v + 1] as usize]
    }
}

/// The breadth-first tree from the roots: for each object, the object it was first
/// reached from (so a shortest path), or the root record that marks it.
#[derive(Debug)]
pub struct RootTree {
    parent: Vec<u32>,
}

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
pub const SUPER_ROOT: u32 = NONE - 1;

/// One step of a path: the object, and what the edge into it is, where the dump says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub row: usize,
    /// `@name` (an ivar, from the object's shape), `[i]` (an array element), or None.
    pub label: Option<String>,
}

/// A path from a GC root to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The root category (`vm`, `machine_context`, …).
    pub root: String,
    pub steps: Vec<Step>,
}

fn slot(class_edges: bool) -> usize {
    usize::from(class_edges)
}

impl Heap {
    /// Calls `f` with each object `v` references (and its class, with `class_edges`).
    fn for_each_successor(&self, v: usize, class_edges: bool, mut f: impl FnMut(usize)) {
        for t in self.referents(v) {
            f(t);
        }
        if class_edges {
            if let Some(c) = self.class_row(v) {
                f(c);
            }
        }
    }

    /// The row of the object's class, when the dump has it (not for IMEMO, whose class
    /// member is bogus before 3.2).
    pub fn class_row(&self, v: usize) -> Option<usize> {
        let class = self.columns.class[v];
        if class == 0 || self.columns.object_type[v] == ObjectType::Imemo {
            return None;
        }
        self.find(class)
    }

    /// The `k`-th successor of row `v`: None past the last, Some(None) for a dangling
    /// reference, Some(Some(row)) otherwise. The class edge, if asked for, comes last.
    fn successor_at(&self, v: usize, k: usize, class_edges: bool) -> Option<Option<usize>> {
        let refs = self.reference_rows_with_dangling(v);
        match k.cmp(&refs.len()) {
            std::cmp::Ordering::Less => {
                let t = refs[k] as usize;
                Some((t < self.len()).then_some(t))
            }
            std::cmp::Ordering::Equal if class_edges => Some(self.class_row(v)),
            _ => None,
        }
    }

    /// Rows the roots mark, each root record's in order, duplicates kept.
    fn root_rows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.len() as u32;
        self.roots.iter().enumerate().flat_map(move |(r, root)| {
            self.root_targets[root.start as usize..root.end as usize]
                .iter()
                .filter(move |&&t| t < n)
                .map(move |&t| (r, t as usize))
        })
    }

    /// Who references each object: the reverse of the reference graph.
    pub fn reverse(&self, class_edges: bool) -> &Csr {
        self.graph.reverse[slot(class_edges)].get_or_init(|| {
            let n = self.len();
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

    /// Objects that reference row `v` (each once).
    pub fn retainers(&self, v: usize, class_edges: bool) -> Vec<usize> {
        let mut rows: Vec<usize> = self
            .reverse(class_edges)
            .neighbours(v)
            .iter()
            .map(|&u| u as usize)
            .collect();
        rows.dedup();
        rows
    }

    /// The breadth-first tree from the roots, level by level: the successors of a level
    /// are gathered in parallel (the bulk of the work, reading every reference), then
    /// claimed in frontier order on one thread, so parents are exactly those of a plain
    /// sequential BFS, whatever the thread count.
    fn root_tree(&self, class_edges: bool) -> &RootTree {
        self.graph.tree[slot(class_edges)].get_or_init(|| {
            let n = self.len();
            let mut parent = vec![NONE; n];
            let mut seen = vec![0u64; n.div_ceil(64)];
            let claim = |t: usize, from: u32, parent: &mut Vec<u32>, seen: &mut Vec<u64>| {
                let (word, bit) = (t / 64, 1u64 << (t % 64));
                if seen[word] & bit != 0 {
                    return false;
                }
                seen[word] |= bit;
                parent[t] = from;
                true
            };
            // Precise roots first; the conservatively scanned machine stack only for
            // what they do not reach: a stale stack slot that happens to point at a
            // leaked object says nothing about why it is retained.
            for conservative in [false, true] {
                let mut frontier: Vec<u32> = Vec::new();
                for (r, t) in self.root_rows() {
                    let is_stack = self.root_name(&self.roots[r]) == CONSERVATIVE_ROOT;
                    if is_stack == conservative
                        && claim(t, ROOT_FLAG | r as u32, &mut parent, &mut seen)
                    {
                        frontier.push(t as u32);
                    }
                }
                while !frontier.is_empty() {
                    checkpoint();
                    let seen_now = &seen;
                    let candidates: Vec<Vec<(u32, u32)>> = frontier
                        .par_chunks(4096)
                        .map(|chunk| {
                            let mut out = Vec::new();
                            for &v in chunk {
                                let v = v as usize;
                                for &t in self.reference_rows_with_dangling(v) {
                                    let t = t as usize;
                                    if t < n && seen_now[t / 64] & (1 << (t % 64)) == 0 {
                                        out.push((t as u32, v as u32));
                                    }
                                }
                                if class_edges {
                                    if let Some(c) = self.class_row(v) {
                                        if seen_now[c / 64] & (1 << (c % 64)) == 0 {
                                            out.push((c as u32, v as u32));
                                        }
                                    }
                                }
                            }
                            out
                        })
                        .collect();
                    let mut next = Vec::new();
                    for (t, v) in candidates.into_iter().flatten() {
                        if claim(t as usize, v, &mut parent, &mut seen) {
                            next.push(t);
                        }
                    }
                    frontier = next;
                }
            }
            RootTree { parent }
        })
    }

    /// Has the breadth-first tree been built (so that a path query is cheap)?
    pub fn has_root_tree(&self, class_edges: bool) -> bool {
        self.graph.tree[slot(class_edges)].get().is_some()
    }

    /// The shortest path from a root to row `v`, or None when no root reaches it.
    pub fn path_to_root(&self, v: usize, class_edges: bool) -> Option<Path> {
        let tree = self.root_tree(class_edges);
        let mut rows = vec![v];
        let mut at = v;
        loop {
            let p = tree.parent[at];
            if p == NONE {
                return None;
            }
            if p & ROOT_FLAG != 0 {
                let root = &self.roots[(p & !ROOT_FLAG) as usize];
                rows.reverse();
                return Some(self.labelled_path(self.root_name(root), &rows));
            }
            at = p as usize;
            rows.push(at);
            if rows.len() > self.len() {
                return None; // cannot happen in a BFS tree; guards against a cycle
            }
        }
    }

    /// Up to `limit` shortest paths to row `v` that reach it through different
    /// retainers, shortest first.
    pub fn paths_to_root(&self, v: usize, limit: usize, class_edges: bool) -> Vec<Path> {
        let mut paths: Vec<Path> = Vec::new();
        if let Some(path) = self.path_to_root(v, class_edges) {
            if path.steps.len() == 1 {
                paths.push(path); // marked by a root directly
            }
        }
        for r in self.retainers(v, class_edges) {
            if r == v {
                continue;
            }
            if let Some(mut path) = self.path_to_root(r, class_edges) {
                if path.steps.iter().any(|s| s.row == v) {
                    continue; // that way runs through `v` itself
                }
                let label = self.edge_label(r, v);
                path.steps.push(Step { row: v, label });
                paths.push(path);
            }
        }
        paths.sort_by_key(|p| p.steps.len());
        paths.truncate(limit);
        paths
    }

    fn labelled_path(&self, root: &[u8], rows: &[usize]) -> Path {
        let steps = rows
            .iter()
            .enumerate()
            .map(|(k, &row)| Step {
                row,
                label: if k == 0 {
                    None
                } else {
                    self.edge_label(rows[k - 1], row)
                },
            })
            .collect();
        Path {
            root: String::from_utf8_lossy(root).into_owned(),
            steps,
        }
    }

    /// What the edge `from → to` is, where the dump can tell: for an OBJECT, the ivar
    /// whose slot holds `to` (from the shape chain, when every ivar is a reference so
    /// that references and ivars line up); for an ARRAY whose every element is a
    /// reference, the index. Anything else has no label rather than a guessed one.
    pub fn edge_label(&self, from: usize, to: usize) -> Option<String> {
        let refs = self.reference_rows_with_dangling(from);
        let position = refs.iter().position(|&t| t == to as u32)?;
        match self.columns.object_type[from] {
            ObjectType::Object => {
                let names = self.ivar_names(from)?;
                (names.len() == refs.len()).then(|| names[position].clone())
            }
            ObjectType::Array => {
                let length = self.length(from)? as usize;
                (length == refs.len()).then(|| format!("[{position}]"))
            }
            _ => None,
        }
    }

    fn reference_rows_with_dangling(&self, v: usize) -> &[u32] {
        &self.ref_targets[self.ref_start[v] as usize..self.ref_start[v + 1] as usize]
    }

    /// The ivar names of an OBJECT in slot order, from its shape chain (Ruby 3.2+).
    pub fn ivar_names(&self, v: usize) -> Option<Vec<String>> {
        if self.columns.flags[v] & crate::record::flag::TOO_COMPLEX_SHAPE as u16 != 0 {
            return None; // ivars live in a hash table, in no shape order
        }
        let shape_id = self.shape_id(v)?;
        let by_id = self.shape_index();
        let mut names = Vec::new();
        let mut id = u64::from(shape_id);
        for _ in 0..=self.shapes.len() {
            let shape = &self.shapes[*by_id.get(&id)?];
            if let Some(name) = self.string(shape.edge_name) {
                if self.string(shape.shape_type) == Some(b"IVAR") {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
            // The chain ends at a shape without a parent, or with a parent id that
            // is no shape (3.4 writes 65535, the invalid id, above T_OBJECT shapes).
            match shape.parent_id.filter(|p| by_id.contains_key(p)) {
                Some(parent) => id = parent,
                None => {
                    names.reverse();
                    return Some(names);
                }
            }
        }
        None
    }

    fn shape_index(&self) -> &hashbrown::HashMap<u64, usize> {
        self.shape_ids.get_or_init(|| {
            self.shapes
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id, i))
                .collect()
        })
    }

    pub fn shape_id(&self, v: usize) -> Option<u32> {
        let id = self.columns.shape_id[v];
        (id != crate::heap::ABSENT && !self.shapes.is_empty()).then_some(id)
    }

    /// The dominator tree (Lengauer–Tarjan) and retained sizes.
    pub fn dominators(&self, class_edges: bool) -> &Dominators {
        self.graph.dominators[slot(class_edges)]
            .get_or_init(|| compute_dominators(self, class_edges))
    }

    /// The immediate dominator of row `v`: Some(row), or None when the roots hold it
    /// directly (or nothing does).
    pub fn dominator(&self, v: usize, class_edges: bool) -> Option<usize> {
        let d = self.dominators(class_edges).idom[v];
        (d != NONE && d != SUPER_ROOT).then_some(d as usize)
    }

    pub fn retained_size(&self, v: usize, class_edges: bool) -> u64 {
        self.dominators(class_edges).retained[v]
    }
}

/// A `checkpoint` once in 64K steps of a loop: cheap enough for the hottest ones.
fn checkpoint_every(step: usize) {
    if step.is_multiple_of(1 << 16) {
        checkpoint();
    }
}

/// Lengauer–Tarjan over the heap plus a virtual root above all GC roots, in preorder
/// numbers (0 is the virtual root). Iterative throughout: heaps have million-long chains.
fn compute_dominators(heap: &Heap, class_edges: bool) -> Dominators {
    let n = heap.len();
    let mut pre = vec![NONE; n]; // row → preorder number
    let mut vertex: Vec<u32> = vec![NONE]; // preorder → row (0: virtual root)
    let mut parent: Vec<u32> = vec![NONE];
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
    let mut stack: Vec<(u32, u32, usize)> = vec![(0, NONE, 0)];
    while let Some(top) = stack.last_mut() {
        checkpoint_every(vertex.len());
        let (p, row, k) = *top;
        top.2 += 1;
        let next = if row == NONE {
            root_rows.get(k).map(|&t| Some(t))
        } else {
            heap.successor_at(row as usize, k, class_edges)
        };
        let t = match next {
            None => {
                stack.pop();
                continue;
            }
            Some(None) => continue, // a dangling reference
            Some(Some(t)) => t,
        };
        if pre[t] != NONE {
            continue;
        }
        let number = vertex.len() as u32;
        pre[t] = number;
        vertex.push(t as u32);
        parent.push(p);
        stack.push((number, t as u32, 0));
    }

    let count = vertex.len();
    let reverse = heap.reverse(class_edges);
    let mut semi: Vec<u32> = (0..count as u32).collect();
    let mut label: Vec<u32> = (0..count as u32).collect();
    let mut ancestor = vec![NONE; count];
    let mut idom = vec![0u32; count];
    let mut bucket_head = vec![NONE; count];
    let mut bucket_next = vec![NONE; count];
    let mut path: Vec<u32> = Vec::new();

    let eval = |v: u32,
                ancestor: &mut Vec<u32>,
                label: &mut Vec<u32>,
                semi: &Vec<u32>,
                path: &mut Vec<u32>|
     -> u32 {
        if ancestor[v as usize] == NONE {
            return v;
        }
        // Path compression, iteratively.
        let mut x = v;
        while ancestor[ancestor[x as usize] as usize] != NONE {
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
            if pv == NONE {
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
        bucket_head[p as usize] = NONE;
        while v != NONE {
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

    let mut idom_rows = vec![NONE; n];
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
