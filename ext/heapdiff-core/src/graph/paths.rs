//! Shortest paths from the GC roots: the breadth-first tree, and paths labelled with
//! the ivar or array index of each edge where the dump can tell.

use rayon::prelude::*;

use std::sync::PoisonError;

use super::{slot, HeapGraph, Name, NO_ROW};
use crate::cancel::checkpoint;
use crate::object_type::ObjectType;

/// The root category of conservative stack scanning.
const CONSERVATIVE_ROOT: &[u8] = b"machine_context";

/// Frontier objects whose successors are gathered at once (in parallel).
const GATHER_BLOCK: usize = 1 << 16;

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

/// A breadth-first search from the roots that stops once the object asked about is
/// claimed, and goes on from there for the next question: a parent, once claimed, is
/// final, so the tree it grows is the one a complete search builds. Levels: the
/// successors of a level are gathered in parallel (the bulk of the work, reading every
/// reference), then claimed in frontier order on one thread, so parents are exactly
/// those of a plain sequential BFS, whatever the thread count.
///
/// Phases, in order: precise roots first; the conservatively scanned machine stack
/// only for what they do not reach (a stale stack slot that happens to point at a
/// leaked object says nothing about why it is retained). With class edges,
/// references are followed alone first, then the class edges of everything reached: a
/// path takes an object → class edge only where nothing else holds what it leads to
/// (a singleton class, say).
#[derive(Debug)]
pub(crate) struct Search {
    parent: Vec<u32>,
    seen: Vec<u64>,
    /// The next phase to start (`phases().len()`: all started).
    phase: usize,
    /// The level being claimed: (object, its parent) in frontier order, in the parts
    /// the gathering threads made (not joined into one: a copy of every candidate),
    /// and how far they were claimed or passed over: the part, the position in it.
    candidates: Vec<Vec<(u32, u32)>>,
    part: usize,
    cursor: usize,
    /// What the level claimed so far: the next level's frontier.
    next: Vec<u32>,
    /// The level whose successors are being gathered, a block at a time, and how much
    /// of it was gathered.
    frontier: Vec<u32>,
    gathered: usize,
    /// The frontier `next` will be in the current phase: whether it follows class edges,
    /// and whether it follows only them.
    class_edges: bool,
    only_class_edges: bool,
}

/// Each phase: which roots it starts from (None: everything reached so far), and
/// whether it follows class edges.
fn phases(class_edges: bool) -> &'static [(Option<bool>, bool)] {
    if class_edges {
        &[(Some(false), false), (None, true), (Some(true), true)]
    } else {
        &[(Some(false), false), (Some(true), false)]
    }
}

impl Search {
    pub(super) fn heap_bytes(&self) -> usize {
        self.parent.capacity() * 4
            + self.seen.capacity() * 8
            + self.candidates.iter().map(Vec::capacity).sum::<usize>() * 8
            + self.next.capacity() * 4
            + self.frontier.capacity() * 4
    }

    fn is_seen(&self, t: usize) -> bool {
        self.seen[t / 64] & (1 << (t % 64)) != 0
    }

    /// Claims the level's candidates in order, each object for the first that reaches
    /// it, until `until` is claimed (then true) or none are left.
    fn claim_candidates(&mut self, until: Option<usize>) -> bool {
        let until = until.map_or(NO_ROW, |row| row as u32);
        let Search {
            parent,
            seen,
            candidates,
            part,
            cursor,
            next,
            ..
        } = self;
        while let Some(candidates) = candidates.get(*part) {
            while let Some(&(t, from)) = candidates.get(*cursor) {
                *cursor += 1;
                let (word, bit) = (t as usize / 64, 1 << (t % 64));
                if seen[word] & bit != 0 {
                    continue;
                }
                seen[word] |= bit;
                parent[t as usize] = from;
                next.push(t);
                if t == until {
                    return true;
                }
            }
            *part += 1;
            *cursor = 0;
        }
        false
    }
}

impl HeapGraph {
    fn new_search(&self) -> Search {
        let n = self.heap.len();
        Search {
            parent: vec![NO_ROW; n],
            seen: vec![0u64; n.div_ceil(64)],
            phase: 0,
            candidates: Vec::new(),
            part: 0,
            cursor: 0,
            next: Vec::new(),
            frontier: Vec::new(),
            gathered: 0,
            class_edges: false,
            only_class_edges: false,
        }
    }

    /// Runs the search until `until` is claimed (None: to the end). Returns true when
    /// the search is complete. Its state is whole at each `checkpoint`, so that a
    /// cancelled query leaves a search the next one can go on with.
    fn advance(&self, search: &mut Search, class_edges: bool, until: Option<usize>) -> bool {
        let n = self.heap.len();
        let phases = phases(class_edges);
        loop {
            if until.is_some_and(|row| search.parent[row] != NO_ROW) {
                return false;
            }
            if search.claim_candidates(until) {
                return false;
            }
            checkpoint();
            if search.gathered == search.frontier.len() && search.next.is_empty() {
                // The phase is over: start the next one.
                let Some(&(roots, follow_class)) = phases.get(search.phase) else {
                    return true;
                };
                search.phase += 1;
                search.class_edges = follow_class;
                // Everything reached so far had all its references claimed already:
                // a frontier of all of it adds only class edges, so its references
                // need not be read again.
                search.only_class_edges = roots.is_none();
                search.candidates.clear();
                search.part = 0;
                search.cursor = 0;
                match roots {
                    None => {
                        let reached = (0..n as u32).filter(|&v| search.is_seen(v as usize));
                        search.next = reached.collect();
                    }
                    Some(conservative) => {
                        let mut roots = Vec::new();
                        for (r, t) in self.heap.root_rows() {
                            let is_stack =
                                self.heap.root_name(&self.heap.roots[r]) == CONSERVATIVE_ROOT;
                            if is_stack == conservative {
                                roots.push((t as u32, ROOT_FLAG | r as u32));
                            }
                        }
                        search.candidates.push(roots);
                    }
                }
                continue;
            }
            if search.gathered == search.frontier.len() {
                // The level is claimed: the next one is the frontier.
                search.frontier = std::mem::take(&mut search.next);
                search.gathered = 0;
            }
            // Gather a block of the frontier's successors: a query stops as soon as
            // its object is claimed, often early in a level of half the heap.
            let end = search.frontier.len().min(search.gathered + GATHER_BLOCK);
            let block = &search.frontier[search.gathered..end];
            let class_rows = if search.class_edges {
                self.class_rows()
            } else {
                &[]
            };
            let only_class_edges = search.only_class_edges;
            let seen_now = &search.seen;
            search.candidates = block
                .par_chunks(4096)
                .map(|chunk| {
                    // Objects have about three references: room for most chunks' candidates.
                    let per_object = if only_class_edges { 1 } else { 4 };
                    let mut out = Vec::with_capacity(chunk.len() * per_object);
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
                        if let Some(&c) = class_rows.get(v) {
                            let c = c as usize;
                            if c < n && seen_now[c / 64] & (1 << (c % 64)) == 0 {
                                out.push((c as u32, v as u32));
                            }
                        }
                    }
                    out
                })
                .collect();
            search.part = 0;
            search.cursor = 0;
            search.gathered = end;
            if search.gathered == search.frontier.len() {
                search.only_class_edges = false;
            }
        }
    }

    /// The breadth-first tree from the roots, whole (see `Search`): the search goes on
    /// to its end and is kept as the tree.
    fn root_tree(&self, class_edges: bool) -> &RootTree {
        self.tree[slot(class_edges)].get_or_init(|| {
            let mut guard = self.search[slot(class_edges)]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let search = guard.get_or_insert_with(|| self.new_search());
            self.advance(search, class_edges, None);
            let search = guard.take().expect("searched");
            RootTree {
                parent: search.parent,
            }
        })
    }

    /// The rows of the shortest path to `row`, root first, and the root record that
    /// marks its first one; None when no root reaches it. Searches only as far as
    /// `row` while the tree is not whole.
    fn tree_path(&self, row: usize, class_edges: bool) -> Option<(usize, Vec<usize>)> {
        let walk = |parent: &[u32]| {
            let mut rows = vec![row];
            loop {
                let p = parent[*rows.last().expect("a row")];
                if p == NO_ROW {
                    return None;
                }
                if p & ROOT_FLAG != 0 {
                    rows.reverse();
                    return Some(((p & !ROOT_FLAG) as usize, rows));
                }
                rows.push(p as usize);
                if rows.len() > parent.len() {
                    return None; // cannot happen in a BFS tree; guards against a cycle
                }
            }
        };
        if let Some(tree) = self.tree[slot(class_edges)].get() {
            return walk(&tree.parent);
        }
        {
            let mut guard = self.search[slot(class_edges)]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.tree[slot(class_edges)].get().is_none() {
                let search = guard.get_or_insert_with(|| self.new_search());
                if !self.advance(search, class_edges, Some(row)) {
                    return walk(&search.parent);
                }
            }
        }
        // Not reached before the search's end: keep the whole tree.
        walk(&self.root_tree(class_edges).parent)
    }

    /// Does a GC root reach `row` (through references, and object → class edges with
    /// `class_edges`)? Searches from the roots as far as `row` on first use.
    pub fn is_reachable(&self, row: usize, class_edges: bool) -> bool {
        match self.tree[slot(class_edges)].get() {
            // The diff asks this of many objects: no path walk once the tree is whole.
            Some(tree) => tree.parent[row] != NO_ROW,
            None => self.tree_path(row, class_edges).is_some(),
        }
    }

    /// The category (`vm`, `finalizers`, `global_tbl`, …) of the root that the
    /// shortest path to `row` starts from, or None when no root reaches it.
    pub fn root_category(&self, row: usize, class_edges: bool) -> Option<&[u8]> {
        let (root, _) = self.tree_path(row, class_edges)?;
        Some(self.heap.root_name(&self.heap.roots[root]))
    }

    /// Has the breadth-first tree been built whole (so that a path query is cheap)?
    pub fn has_root_tree(&self, class_edges: bool) -> bool {
        self.tree[slot(class_edges)].get().is_some()
    }

    /// The shortest path from a root to `row`, or None when no root reaches it.
    pub fn path_to_root(&self, row: usize, class_edges: bool) -> Option<Path> {
        let (root, rows) = self.tree_path(row, class_edges)?;
        let root = &self.heap.roots[root];
        Some(self.labelled_path(self.heap.root_name(root), &rows))
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
