//! Shortest paths from the GC roots: the breadth-first tree, and paths labelled with
//! the ivar or array index of each edge where the dump can tell.

use rayon::prelude::*;

use super::{slot, HeapGraph, Name, NO_ROW};
use crate::cancel::checkpoint;
use crate::object_type::ObjectType;

/// The root category of conservative stack scanning.
const CONSERVATIVE_ROOT: &[u8] = b"machine_context";

/// Where a path starts: the root record (its index in `Heap::roots`).
const ROOT_FLAG: u32 = 1 << 31;

/// The breadth-first tree from the roots: for each object, the object it was first
/// reached from (so a shortest path), or the root record that marks it.
#[derive(Debug)]
pub(crate) struct RootTree {
    parent: Vec<u32>,
}

impl RootTree {
    pub(super) fn heap_bytes(&self) -> usize {
        self.parent.capacity() * std::mem::size_of::<u32>()
    }
}

/// One step of a path: the object, and what the edge into it is, where the dump says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub row: usize,
    /// The code's name of the edge (`Foo::BAR`, `Thread.current[:key]`, `@name` from
    /// the object's shape, …), `[i]` (an array element), or None.
    pub label: Option<String>,
    /// Where `label` is a code name: what it is (see `Name`).
    pub name: Option<Name>,
}

/// A path from a GC root to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The root category (`vm`, `machine_context`, …).
    pub root: String,
    pub steps: Vec<Step>,
}

impl HeapGraph {
    /// The breadth-first tree from the roots, level by level: the successors of a level
    /// are gathered in parallel (the bulk of the work, reading every reference), then
    /// claimed in frontier order on one thread, so parents are exactly those of a plain
    /// sequential BFS, whatever the thread count.
    fn root_tree(&self, class_edges: bool) -> &RootTree {
        self.tree[slot(class_edges)].get_or_init(|| {
            let n = self.heap.len();
            let class_rows = if class_edges { self.class_rows() } else { &[] };
            let mut parent = vec![NO_ROW; n];
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
            // leaked object says nothing about why it is retained. With class edges,
            // references are followed alone first, then the class edges of everything
            // reached: a path takes an object → class edge only where nothing else
            // holds what it leads to (a singleton class, say).
            // Each phase: which roots it starts from (None: everything reached so
            // far), and whether it follows class edges.
            let phases: &[(Option<bool>, bool)] = if class_edges {
                &[(Some(false), false), (None, true), (Some(true), true)]
            } else {
                &[(Some(false), false), (Some(true), false)]
            };
            for &(roots, class_edges) in phases {
                let mut frontier: Vec<u32> = Vec::new();
                // Everything reached so far had all its references claimed already:
                // a frontier of all of it adds only class edges, so its references
                // need not be read again (half the work of the tree with class edges).
                let mut only_class_edges = roots.is_none();
                match roots {
                    None => frontier.extend(
                        (0..n as u32).filter(|&v| seen[v as usize / 64] & (1 << (v % 64)) != 0),
                    ),
                    Some(conservative) => {
                        for (r, t) in self.heap.root_rows() {
                            let is_stack =
                                self.heap.root_name(&self.heap.roots[r]) == CONSERVATIVE_ROOT;
                            if is_stack == conservative
                                && claim(t, ROOT_FLAG | r as u32, &mut parent, &mut seen)
                            {
                                frontier.push(t as u32);
                            }
                        }
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
                                let refs: &[u32] = if only_class_edges {
                                    &[]
                                } else {
                                    self.heap.reference_rows_with_dangling(v)
                                };
                                for &t in refs {
                                    let t = t as usize;
                                    if t < n && seen_now[t / 64] & (1 << (t % 64)) == 0 {
                                        out.push((t as u32, v as u32));
                                    }
                                }
                                if class_edges {
                                    let c = class_rows[v] as usize;
                                    if c < n && seen_now[c / 64] & (1 << (c % 64)) == 0 {
                                        out.push((c as u32, v as u32));
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
                    only_class_edges = false;
                }
            }
            RootTree { parent }
        })
    }

    /// Does a GC root reach `row` (through references, and object → class edges with
    /// `class_edges`)? Builds the breadth-first tree from the roots on first use.
    pub fn is_reachable(&self, row: usize, class_edges: bool) -> bool {
        self.root_tree(class_edges).parent[row] != NO_ROW
    }

    /// The category (`vm`, `finalizers`, `global_tbl`, …) of the root that the
    /// shortest path to `row` starts from, or None when no root reaches it.
    pub fn root_category(&self, row: usize, class_edges: bool) -> Option<&[u8]> {
        let tree = self.root_tree(class_edges);
        let mut at = row;
        // A tree path visits each row once at most.
        for _ in 0..=self.heap.len() {
            let p = tree.parent[at];
            if p == NO_ROW {
                return None;
            }
            if p & ROOT_FLAG != 0 {
                return Some(
                    self.heap
                        .root_name(&self.heap.roots[(p & !ROOT_FLAG) as usize]),
                );
            }
            at = p as usize;
        }
        None
    }

    /// Has the breadth-first tree been built (so that a path query is cheap)?
    pub fn has_root_tree(&self, class_edges: bool) -> bool {
        self.tree[slot(class_edges)].get().is_some()
    }

    /// The shortest path from a root to `row`, or None when no root reaches it.
    pub fn path_to_root(&self, row: usize, class_edges: bool) -> Option<Path> {
        let tree = self.root_tree(class_edges);
        let mut rows = vec![row];
        let mut at = row;
        loop {
            let p = tree.parent[at];
            if p == NO_ROW {
                return None;
            }
            if p & ROOT_FLAG != 0 {
                let root = &self.heap.roots[(p & !ROOT_FLAG) as usize];
                rows.reverse();
                return Some(self.labelled_path(self.heap.root_name(root), &rows));
            }
            at = p as usize;
            rows.push(at);
            if rows.len() > self.heap.len() {
                return None; // cannot happen in a BFS tree; guards against a cycle
            }
        }
    }

    /// Up to `limit` shortest paths to `row` that reach it through different
    /// retainers, shortest first.
    pub fn paths_to_root(&self, row: usize, limit: usize, class_edges: bool) -> Vec<Path> {
        let mut paths: Vec<Path> = Vec::new();
        if let Some(path) = self.path_to_root(row, class_edges) {
            if path.steps.len() == 1 {
                paths.push(path); // marked by a root directly
            }
        }
        for r in self.retainers(row, class_edges) {
            if r == row {
                continue;
            }
            if let Some(mut path) = self.path_to_root(r, class_edges) {
                if path.steps.iter().any(|s| s.row == row) {
                    continue; // that way runs through `row` itself
                }
                let before: Vec<usize> = path.steps.iter().map(|s| s.row).collect();
                path.steps
                    .push(self.step(path.root.as_bytes(), &before, row));
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
            .map(|(k, &row)| self.step(root, &rows[..k], row))
            .collect();
        Path {
            root: String::from_utf8_lossy(root).into_owned(),
            steps,
        }
    }

    /// The step into `row` after `before` (root first): its code name where one is
    /// known, else what the dump tells of the edge.
    fn step(&self, root: &[u8], before: &[usize], row: usize) -> Step {
        if let Some(name) = self.path_name(root, before, row) {
            return Step {
                row,
                label: Some(name.expr.clone()),
                name: Some(name),
            };
        }
        let label = before.last().and_then(|&prev| {
            self.edge_label(prev, row).or_else(|| {
                // A suspended fiber's locals and stack both hang off it, and Ruby
                // cannot read another fiber's locals: say which of the two it may be.
                (self.heap.subtype(prev) == Some(b"fiber"))
                    .then(|| "fiber-local or stack of the fiber".to_string())
            })
        });
        // An ivar from the shape is a code name: of which object, the dump says.
        let name = label.as_deref().filter(|l| l.starts_with('@')).map(|l| {
            let owner = before.last().copied();
            let of = owner.map_or_else(String::new, |o| {
                let class = self.heap.class_name(o).unwrap_or_else(|| "?".into());
                format!(
                    " of #<{class} {}>",
                    crate::heap::hex(self.heap.columns.address[o])
                )
            });
            Name {
                kind: "ivar".into(),
                expr: format!("{l}{of}"),
                context: None,
                owner,
            }
        });
        Step { row, label, name }
    }

    /// What the edge `from → to` is, where the dump can tell: for an OBJECT, the ivar
    /// whose slot holds `to` (from the shape chain, when every ivar is a reference so
    /// that references and ivars line up); for an ARRAY whose every element is a
    /// reference, the index. Anything else has no label rather than a guessed one.
    pub fn edge_label(&self, from: usize, to: usize) -> Option<String> {
        let refs = self.heap.reference_rows_with_dangling(from);
        let position = refs.iter().position(|&t| t == to as u32)?;
        match self.heap.columns.object_type[from] {
            ObjectType::Object => {
                let names = self.heap.ivar_names(from)?;
                (names.len() == refs.len()).then(|| names[position].clone())
            }
            ObjectType::Array => {
                let length = self.heap.length(from)? as usize;
                (length == refs.len()).then(|| format!("[{position}]"))
            }
            _ => None,
        }
    }
}
