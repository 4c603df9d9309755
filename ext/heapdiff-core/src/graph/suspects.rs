//! Leak suspects: for a group of retained objects, the objects where their paths from
//! the roots converge, found on the dominator tree. Freeing such a holder frees the
//! objects it holds; that is what a leak hunter wants to look at.

use hashbrown::{HashMap, HashSet};

use super::{HeapGraph, NO_ROW, SUPER_ROOT};

/// How far up the dominator tree to look from each object. Holders sit within a few
/// steps in practice; the cap bounds the work on pathological chains.
const MAX_CLIMB: usize = 512;

/// Where part of a group is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holding object's row, or None when the roots hold these objects directly.
    pub row: Option<usize>,
    /// When the roots hold them directly: the category of the roots (`vm`,
    /// `finalizers`, `end_proc`, `global_tbl`, `machine_context`, …) their shortest
    /// paths start from.
    pub root: Option<String>,
    /// How many of the group's objects it holds.
    pub count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Suspect {
    /// Largest first.
    pub holders: Vec<Holder>,
    /// Bytes freed if the group's objects were freed: their retained sizes, each
    /// object counted once even when another member holds it.
    pub retained_size: u64,
    /// Members that no root reaches (garbage the dump caught before the sweep).
    pub unreachable: u64,
}

/// Finds the holders of `members` (rows of the graph's heap). A holder is the nearest dominator
/// of a member that is not itself a member and that dominates a real part of the
/// group: at least a tenth of it, and at least two objects (one for a group of one).
pub fn suspects(graph: &HeapGraph, members: &[u32], class_edges: bool) -> Suspect {
    let dominators = graph.dominators(class_edges);
    let idom = &dominators.idom;
    let member_set: HashSet<u32> = members.iter().copied().collect();
    let threshold = if members.len() >= 2 {
        (members.len() as u64).div_ceil(10).max(2)
    } else {
        1
    };

    // How many members each dominator-tree ancestor dominates.
    let mut dominated: HashMap<u32, u64> = HashMap::new();
    let mut suspect = Suspect::default();
    for &m in members {
        let mut at = idom[m as usize];
        if at == NO_ROW {
            suspect.unreachable += 1;
            continue;
        }
        let mut held_by_member = false;
        for _ in 0..MAX_CLIMB {
            if at == SUPER_ROOT || at == NO_ROW {
                break;
            }
            if member_set.contains(&at) {
                held_by_member = true;
            } else {
                *dominated.entry(at).or_insert(0) += 1;
            }
            at = idom[at as usize];
        }
        if !held_by_member {
            suspect.retained_size += dominators.retained[m as usize];
        }
    }

    let mut holders: HashMap<(Option<usize>, Option<&[u8]>), u64> = HashMap::new();
    for &m in members {
        let mut at = idom[m as usize];
        if at == NO_ROW {
            continue;
        }
        let mut holder = None;
        for _ in 0..MAX_CLIMB {
            if at == SUPER_ROOT || at == NO_ROW {
                break;
            }
            if !member_set.contains(&at) && dominated.get(&at).copied().unwrap_or(0) >= threshold {
                holder = Some(at as usize);
                break;
            }
            at = idom[at as usize];
        }
        let root = match holder {
            Some(_) => None,
            None => graph.root_category(m as usize, class_edges),
        };
        *holders.entry((holder, root)).or_insert(0) += 1;
    }
    suspect.holders = holders
        .into_iter()
        .map(|((row, root), count)| Holder {
            row,
            root: root.map(|r| String::from_utf8_lossy(r).into_owned()),
            count,
        })
        .collect();
    suspect.holders.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.row.cmp(&b.row))
            .then_with(|| a.root.cmp(&b.root))
    });
    suspect
}
