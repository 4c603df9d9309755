//! The code's names for objects: what a snapshot's names sidecar says holds them
//! (`Foo::BAR`, `$global`, `@cache of Foo`, `Thread.current[:key]`, …), and the few
//! names the dump itself gives (a singleton class, the finalizer table, an at_exit
//! block).
//!
//! A name from the sidecar is kept only where the dump agrees with it: its address is
//! an object of this dump, of the class the process saw. The sidecar is written at the
//! moment of the dump, with no GC in between (see `capture/names.rb`), so an address
//! that is in the dump is the same object.

use hashbrown::HashMap;

use super::HeapGraph;
use crate::heap::Heap;
use crate::object_type::ObjectType;

/// One line of the names sidecar, as the Ruby side read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    /// The named object's address.
    pub address: u64,
    /// The object whose slot this is (the class of a constant or class ivar, the
    /// thread of a thread-local), or None (a global).
    pub owner: Option<u64>,
    /// `constant`, `global`, `class_ivar`, `fiber_local`, `thread_variable`, `thread`.
    pub kind: String,
    /// The Ruby expression: `Registry::ENTRIES`, `Thread.current[:buffer]`, …
    pub expr: String,
    /// What the expression needs to be read right: `fiber-local, thread "worker"`.
    pub context: Option<String>,
    /// The value's class name as the process saw it (None for anonymous classes).
    pub class_name: Option<String>,
}

/// A code name of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub kind: String,
    pub expr: String,
    pub context: Option<String>,
    /// The owner's row, when the dump has it.
    pub owner: Option<usize>,
}

/// Which kind names an object best when no path decides: the most stable holder first.
const KIND_ORDER: &[&str] = &[
    "constant",
    "global",
    "class_ivar",
    "thread_variable",
    "fiber_local",
    "thread",
];

fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// The names of a heap's objects, by row.
#[derive(Debug, Default)]
pub struct Names {
    by_row: HashMap<u32, Vec<Name>>,
    /// Entries whose address is no object of the dump, or one of another class.
    pub dropped: usize,
}

impl Names {
    /// Resolves `entries` against `heap`: keeps those whose address is one of its
    /// objects, of the class the process saw.
    pub fn resolve(heap: &Heap, entries: Vec<NameEntry>) -> Names {
        let mut names = Names::default();
        for entry in entries {
            let Some(row) = heap.find(entry.address) else {
                names.dropped += 1;
                continue;
            };
            if let (Some(seen), Some(dumped)) = (&entry.class_name, heap.class_name(row)) {
                if *seen != dumped {
                    names.dropped += 1;
                    continue;
                }
            }
            let owner = entry.owner.and_then(|o| heap.find(o));
            names.by_row.entry(row as u32).or_default().push(Name {
                kind: entry.kind,
                expr: entry.expr,
                context: entry.context,
                owner,
            });
        }
        for list in names.by_row.values_mut() {
            list.sort_by_key(|n| kind_rank(&n.kind));
        }
        names
    }

    /// The names of `row`, best first.
    pub fn of(&self, row: usize) -> &[Name] {
        self.by_row.get(&(row as u32)).map_or(&[], Vec::as_slice)
    }

    /// How many objects have a name.
    pub fn len(&self) -> usize {
        self.by_row.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_row.is_empty()
    }
}

impl HeapGraph {
    /// Gives this graph the names of a sidecar. Returns how many entries were kept,
    /// or None when the graph has names already (they are set once, right after
    /// loading).
    pub fn set_names(&self, entries: Vec<NameEntry>) -> Option<usize> {
        let names = Names::resolve(&self.heap, entries);
        let kept = names.by_row.values().map(Vec::len).sum();
        self.names.set(names).ok().map(|()| kept)
    }

    /// The names this graph was given (none for a plain dump).
    pub fn names(&self) -> &Names {
        static EMPTY: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
        self.names
            .get()
            .unwrap_or_else(|| EMPTY.get_or_init(Names::default))
    }

    /// The name of the edge into `row` on a path whose earlier rows are `before`
    /// (root first) and which starts at a root of category `root`: a sidecar name
    /// whose owner is the previous row (or, for a thread's locals, is on the path); a
    /// global for the first step; a thread's name wherever it is; else what the dump itself tells (a singleton class reached through its
    /// object, a finalizer, an at_exit block). None when nothing is known.
    pub(crate) fn path_name(&self, root: &[u8], before: &[usize], row: usize) -> Option<Name> {
        let names = self.names().of(row);
        let prev = before.last().copied();
        let found = names
            .iter()
            .find(|n| n.owner.is_some() && n.owner == prev)
            .or_else(|| {
                names
                    .iter()
                    .find(|n| before.is_empty() && n.owner.is_none() && root == b"global_tbl")
            })
            .or_else(|| {
                // A thread holds its variables through a hash, and (Ruby 3.3) its
                // fiber-locals through its root fiber: the owner is further up.
                names.iter().find(|n| {
                    matches!(n.kind.as_str(), "fiber_local" | "thread_variable")
                        && n.owner.is_some_and(|o| before.contains(&o))
                })
            })
            .or_else(|| names.iter().find(|n| n.kind == "thread"));
        if let Some(name) = found {
            return Some(name.clone());
        }
        self.dump_name(root, prev, row)
    }

    /// Names the dump alone gives the edge `prev → row`.
    fn dump_name(&self, root: &[u8], prev: Option<usize>, row: usize) -> Option<Name> {
        let derived = |kind: &str, expr: String| {
            Some(Name {
                kind: kind.into(),
                expr,
                context: None,
                owner: prev,
            })
        };
        let Some(prev) = prev else {
            return match root {
                // The finalizer table: what it marks is the finalizers of some object.
                b"finalizers" => derived(
                    "finalizer",
                    "finalizer table (ObjectSpace.define_finalizer)".into(),
                ),
                b"end_proc" => derived("at_exit", "at_exit block".into()),
                _ => None,
            };
        };
        let heap = &self.heap;
        let singleton = heap.columns.object_type[row] == ObjectType::Class
            && heap.columns.flags[row] & crate::parse::flag::SINGLETON as u16 != 0;
        if singleton && heap.class_row(prev) == Some(row) {
            let owner = match heap.columns.object_type[prev] {
                ObjectType::Class | ObjectType::Module => heap
                    .class_name_of_class(heap.columns.address[prev])
                    .unwrap_or_default(),
                _ => format!(
                    "#<{} {}>",
                    heap.class_name(prev).unwrap_or_else(|| "?".into()),
                    crate::heap::hex(heap.columns.address[prev])
                ),
            };
            return derived("singleton_class", format!("singleton class of {owner}"));
        }
        None
    }

    /// The best name of `row` whatever the path: for describing a holder that no
    /// path step names.
    pub fn best_name(&self, row: usize) -> Option<&Name> {
        self.names().of(row).first()
    }
}
