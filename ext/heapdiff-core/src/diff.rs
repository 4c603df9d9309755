//! The diff: objects of `after` that `before` did not have and, given a third dump, that
//! `later` still has, grouped by allocation site.
//!
//! Identity is not the address alone. Ruby reuses the slots of freed objects, so the same
//! address in two dumps can be two different objects. Two records are the same object
//! when they sit at the same address with the same type and class, and, where allocation
//! tracing recorded them, the same generation (GC count at allocation) and file:line.
//! Compaction moves objects; it is detected from objects that are older than a dump yet
//! missing from it, reported as a warning, and handled (see `Pairing`).
//!
//! Retained means reachable: an object of the last dump counts only when a GC root
//! reaches it there (object → class edges included, since a dump leaves them out of
//! `references`). New objects that no root reaches are garbage the dump caught before
//! a GC swept it (dumps taken without a full GC); they are counted apart.
//!
//! Where the dumps cannot tell whether an object is new (no allocation info on either
//! side of a reused slot, or erased by compaction), the object is counted in the
//! group's `uncertain` count: the true count lies between `count` and
//! `count + uncertain`, and a warning names the cause.

use hashbrown::{HashMap, HashSet};
use rayon::prelude::*;

use crate::graph::HeapGraph;
use crate::heap::{Heap, ABSENT};
use crate::intern::NO_STRING;
use crate::object_type::ObjectType;
use crate::parse::flag;

/// The C struct name of the allocation tracer's own DATA object.
const TRACER_STRUCT: &[u8] = b"ObjectTracing/allocation_info_tracer";

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Keep what is filtered by default: the allocation tracer's own object and objects
    /// allocated by heapdiff itself.
    pub include_noise: bool,
    /// Objects allocated in files under these prefixes are heapdiff's own (noise).
    pub own_paths: Vec<Vec<u8>>,
}

/// One allocation site (type, class, file, line) and the objects retained there.
#[derive(Debug, Clone)]
pub struct Group {
    pub object_type: ObjectType,
    pub class_name: Option<String>,
    /// DATA struct name or IMEMO type, when the group's objects agree on one.
    pub subtype: Option<Vec<u8>>,
    pub file: Option<Vec<u8>>,
    pub line: Option<u32>,
    /// Objects known to be retained here.
    pub count: u64,
    /// Objects that may also be retained here: the dumps cannot tell whether they are
    /// new (see the module comment). The true count is in `count..=count + uncertain`.
    pub uncertain: u64,
    pub memsize: u64,
    /// Rows in the last heap (`later`, or `after` for a two-dump diff), where the
    /// objects are retained.
    pub members: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub groups: Vec<Group>,
    pub total_count: u64,
    pub total_memsize: u64,
    pub warnings: Vec<String>,
    /// Objects left out as noise (tracer, heapdiff's own allocations).
    pub filtered: u64,
    /// Three-dump diffs: new objects in `after` that `later` no longer has.
    pub freed_before_later: u64,
    /// New objects present in the last dump that no root reaches there: garbage not
    /// yet collected when the dump was taken.
    pub unreachable: u64,
    /// Sum of the groups' `uncertain` counts.
    pub total_uncertain: u64,
}

/// Objects of `after` that `before` did not have and, given `later`, that `later` still
/// has, grouped by allocation site (type, class, file, line), largest count first.
///
/// Identity is the address plus what a reused slot would change (see `Pairing`), not
/// the address alone. Objects allocated by heapdiff itself (`options.own_paths`) and
/// the allocation tracer's DATA object are counted in `Report::filtered` unless
/// `options.include_noise`. Rows in the report are rows of `after`. Never fails:
/// oddities (compaction moves) become `Report::warnings`.
pub fn diff(
    before: &Heap,
    after: &Heap,
    later: Option<&HeapGraph>,
    options: &DiffOptions,
) -> Report {
    // The third dump comes with its graph: reachability there decides what is
    // retained, and the breadth-first tree it builds serves the paths asked next.
    let last_graph = later;
    let later = later.map(HeapGraph::heap);
    let mut warnings = Vec::new();
    // Between dumps of two processes, objects missing at their address say nothing of
    // compaction: the compaction warnings of that pair would name a cause that did not
    // happen, so the process warning stands alone.
    let foreign_first = other_process_warning(before, after);
    let foreign_second = later.and_then(|later| other_process_warning(after, later));
    let (first_is_foreign, second_is_foreign) = (foreign_first.is_some(), foreign_second.is_some());
    warnings.extend(foreign_first);
    warnings.extend(foreign_second);
    let first = Pairing::new(before, after);
    if first.moved > 0 && !first_is_foreign {
        warnings.push(compaction_warning(before, after, first.moved));
    }
    let second = later.map(|later| Pairing::new(after, later));
    if let (Some(second), Some(later)) = (&second, later) {
        if second.moved > 0 && !second_is_foreign {
            warnings.push(compaction_warning(after, later, second.moved));
        }
    }
    let noise = Noise::new(after, options);
    let live = |i: usize| {
        // NONE records are the empty slots of a `full: true` dump and ZOMBIEs are
        // garbage waiting for a finalizer: neither is a live new object.
        !matches!(
            after.columns.object_type[i],
            ObjectType::None | ObjectType::Zombie
        ) && !noise.is_noise(i)
    };

    // New in `after`: not in `before`, and not older than `before` (an older object
    // missing from `before` was moved by compaction, not allocated since). Objects
    // whose identity the dumps leave open go to `maybe_new`.
    let (new, maybe_new): (Vec<u32>, Vec<u32>) = {
        let classified: Vec<(u32, Identity)> = (0..after.len() as u32)
            .into_par_iter()
            .with_min_len(1 << 14)
            .filter_map(|i| {
                let identity = first.identity(i as usize);
                (identity != Identity::Old
                    && !matches!(
                        after.columns.object_type[i as usize],
                        ObjectType::None | ObjectType::Zombie
                    ))
                .then_some((i, identity))
            })
            .collect();
        let mut new = Vec::new();
        let mut maybe_new = Vec::new();
        for (i, identity) in classified {
            match identity {
                Identity::New => new.push(i),
                _ => maybe_new.push(i),
            }
        }
        (new, maybe_new)
    };
    // Without tracing, a suspected compaction may have moved old objects to addresses
    // where they look new: as many of them per type and class as `before` lost
    // objects of that type and class are uncertain (old ones first, being the likelier
    // movers).
    let (new, maybe_new, unsure_suspected) = if first.suspected_compaction > 0 {
        let mut lost: HashMap<(ObjectType, u32), u64> = HashMap::new();
        let to_after = translate(before, after);
        for j in 0..before.len() {
            if before.generation(j).is_none() && first.counterpart_in_later(j).is_none() {
                *lost
                    .entry(class_key(before, j, Some(&to_after)))
                    .or_insert(0) += 1;
            }
        }
        let is_old = |i: u32| u32::from(after.columns.flags[i as usize]) & flag::OLD != 0;
        let mut candidates = new;
        candidates.sort_by_key(|&i| !is_old(i));
        let (mut new, mut maybe_new, mut unsure) = (Vec::new(), maybe_new, 0u64);
        for i in candidates {
            let untraced = after.generation(i as usize).is_none();
            let slot = untraced
                .then(|| lost.get_mut(&class_key(after, i as usize, None)))
                .flatten();
            match slot {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    unsure += 1;
                    maybe_new.push(i);
                }
                _ => new.push(i),
            }
        }
        new.sort_unstable();
        (new, maybe_new, unsure)
    } else {
        (new, maybe_new, 0)
    };
    if first.suspected_compaction > 0 && !first_is_foreign {
        warnings.push(suspected_compaction_warning(
            before,
            after,
            first.suspected_compaction,
            unsure_suspected,
        ));
    }
    if let (Some(second), Some(later)) = (&second, later) {
        if second.suspected_compaction > 0 && !second_is_foreign {
            warnings.push(suspected_compaction_warning(
                after,
                later,
                second.suspected_compaction,
                0,
            ));
        }
    }
    let filtered = new.iter().filter(|&&i| noise.is_noise(i as usize)).count() as u64;
    let new: Vec<u32> = new.into_iter().filter(|&i| live(i as usize)).collect();
    let maybe_new: Vec<u32> = maybe_new
        .into_iter()
        .filter(|&i| live(i as usize))
        .collect();
    let unsure_reused = first.count_unsure(&maybe_new, Identity::MaybeReusedSlot);
    let unsure_moved = first.count_unsure(&maybe_new, Identity::MaybeMoved);

    // Each candidate with its row in the last heap: (row in `after`, row in last).
    let last = later.unwrap_or(after);
    let mut freed_before_later = 0;
    let mut certain: Vec<(u32, u32)> = Vec::with_capacity(new.len());
    let mut uncertain: Vec<(u32, Option<u32>)>;
    if let (Some(second), Some(later)) = (&second, later) {
        uncertain = Vec::new();
        // Still alive in `later`: found at its address, or, when `later` was compacted,
        // matched by content among `later`'s moved objects.
        let found: Vec<Option<usize>> = new
            .par_iter()
            .with_min_len(1 << 12)
            .map(|&i| second.counterpart_in_later(i as usize))
            .collect();
        let mut moved_pool = if second.moved > 0 {
            second.moved_by_content(later)
        } else {
            HashMap::new()
        };
        let mut erased_pool = if second.moved > 0 || second.suspected_compaction > 0 {
            second.moved_without_allocation_info(later)
        } else {
            HashMap::new()
        };
        let mut estimated = 0u64;
        for (&i, &j) in new.iter().zip(&found) {
            let i_row = i as usize;
            let j = j.or_else(|| {
                take(
                    &mut moved_pool,
                    content_key(after, i_row, Some(&second.earlier_to_later)),
                )
            });
            if let Some(j) = j {
                certain.push((i, j as u32));
            } else if take(
                &mut erased_pool,
                class_key(after, i_row, Some(&second.earlier_to_later)),
            )
            .is_some()
            {
                // Only type and class are left to match by: maybe this one, maybe
                // another object of its class that compaction moved.
                estimated += 1;
                uncertain.push((i, None));
            } else {
                freed_before_later += 1;
            }
        }
        // The uncertain ones must still be in `later` to be retained: at their
        // address, or, after a compaction, maybe among the objects of their class.
        for &i in &maybe_new {
            if let Some(j) = second.counterpart_in_later(i as usize) {
                uncertain.push((i, Some(j as u32)));
            } else if take(
                &mut erased_pool,
                class_key(after, i as usize, Some(&second.earlier_to_later)),
            )
            .is_some()
            {
                estimated += 1;
                uncertain.push((i, None));
            }
        }
        if estimated > 0 {
            let why = if second.moved > 0 {
                "compaction moved them and Ruby 2.7–3.3 erase the allocation site of moved objects"
            } else {
                "they are not at their address there and have no allocation info (see the compaction warning)"
            };
            warnings.push(format!(
                "{estimated} object(s) could be found in {} only by type and class: {why}, so they are counted as uncertain (a range in their groups)",
                later.source.display()
            ));
        }
    } else {
        certain = new.iter().map(|&i| (i, i)).collect();
        uncertain = maybe_new.iter().map(|&i| (i, Some(i))).collect();
    }

    // Retained means reachable in the last dump. (A two-dump diff reports what was
    // allocated in between and is present in `after`, garbage or not.)
    let mut unreachable = 0u64;
    if let Some(graph) = last_graph {
        certain.retain(|&(_, j)| {
            let reachable = graph.is_reachable(j as usize, true);
            unreachable += u64::from(!reachable);
            reachable
        });
        uncertain.retain(|&(_, j)| j.is_none_or(|j| graph.is_reachable(j as usize, true)));
    }
    if unreachable > 0 {
        warnings.push(format!(
            "{unreachable} new object(s) in {} are garbage the GC had not collected when it was dumped: no GC root reaches them, so they are not counted as retained. A dump written right after a full GC (GC.start, as Heapdiff.snapshot does) has next to none",
            last.source.display()
        ));
    }
    if unsure_reused > 0 {
        warnings.push(format!(
            "{unsure_reused} object(s) in {} have no allocation info in either dump and sit where {} had an object of the same type and class: a new object in a reused slot cannot be told from the old one, so groups show ranges (low–high). Tracing was off when they were allocated; turn it on (Heapdiff.trace_allocations! or ObjectSpace.trace_object_allocations_start) before the first dump for exact counts",
            after.source.display(),
            before.source.display()
        ));
    }
    if unsure_moved > 0 {
        warnings.push(format!(
            "{unsure_moved} object(s) in {} have no allocation info although tracing was on, after the heap was compacted since {} (Ruby 2.7–3.3 erase the allocation info of moved objects): each may be an old object or a new one that moved, so groups show ranges (low–high)",
            after.source.display(),
            before.source.display()
        ));
    }

    let groups = group(after, last, &certain, &uncertain);
    Report {
        total_count: groups.iter().map(|g| g.count).sum(),
        total_uncertain: groups.iter().map(|g| g.uncertain).sum(),
        total_memsize: groups.iter().map(|g| g.memsize).sum(),
        groups,
        warnings,
        filtered,
        freed_before_later,
        unreachable,
    }
}

/// Ruby allocates its object heap in pages aligned to 64 KiB (`HEAP_PAGE_ALIGN_LOG` 16
/// in gc.c, Ruby 3.1–3.4; the default's in 4.0): an object's page is its address
/// shifted by 16.
const PAGE_SHIFT: u32 = 16;

/// A warning when `earlier` and `later` share almost no heap pages. A process keeps
/// most of its pages from one dump to the next (Ruby frees few), while two processes
/// started apart have their heaps elsewhere (address space layout randomisation), so
/// addresses, and identity with them, mean unrelated objects. This is the check for
/// dumps without a sidecar naming their process (Ruby checks sidecars first). It
/// cannot tell forked workers apart: they share their parent's pages.
pub(crate) fn other_process_warning(earlier: &Heap, later: &Heap) -> Option<String> {
    let pages = |heap: &Heap| {
        let mut pages = HashSet::new();
        let mut last = u64::MAX;
        // A dump lists objects page by page: insert each page once per run.
        for &address in &heap.columns.address {
            let page = address >> PAGE_SHIFT;
            if page != last {
                pages.insert(page);
                last = page;
            }
        }
        pages
    };
    let (a, b) = (pages(earlier), pages(later));
    let smaller = a.len().min(b.len());
    let shared = a.intersection(&b).count();
    // Below a few pages the heaps are too small to say anything.
    (smaller >= 4 && shared * 10 < smaller).then(|| {
        format!(
            "{} and {} share {shared} of their {} and {} heap pages: dumps of one process keep most of theirs, so these look like dumps of different processes (a restart, another worker or host), whose addresses name unrelated objects. Diff dumps of one process: heapdiff's snapshots name their process in a sidecar",
            earlier.source.display(),
            later.source.display(),
            a.len(),
            b.len()
        )
    })
}

/// No warning names a cause that may not have happened: without tracing, old objects
/// at new addresses come from compaction or from promotion since the earlier dump.
pub(crate) fn suspected_compaction_warning(
    earlier: &Heap,
    later: &Heap,
    relocated: u64,
    unsure: u64,
) -> String {
    let counted = if unsure > 0 {
        format!(" {unsure} object(s) that look new may be old ones that moved, so groups show ranges (low–high).")
    } else {
        String::new()
    };
    format!(
        "{relocated} old object(s) in {} sit at addresses that held no such object in {}: the heap was compacted between the two dumps (GC.compact or GC.auto_compact), or that many objects were allocated and promoted in between. Without allocation tracing a moved object cannot be told from a new one.{counted} Turn tracing on for exact counts",
        later.source.display(),
        earlier.source.display()
    )
}

pub(crate) fn compaction_warning(earlier: &Heap, later: &Heap, moved: u64) -> String {
    format!(
        "{moved} object(s) in {} were allocated before {} was taken but are not at their address in it: the heap was compacted between the two dumps (GC.compact or GC.auto_compact). They are matched by allocation site and generation instead of address; objects without allocation tracing cannot be matched that way.",
        later.source.display(),
        earlier.source.display()
    )
}

/// What the dumps say of an object of the later dump, compared with the earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The same object as one in the earlier dump, or older than it (moved).
    Old,
    /// Allocated after the earlier dump was taken.
    New,
    /// At the address of an object of the same type and class in the earlier dump,
    /// with no allocation info on either side and nothing that tells them apart: the
    /// same object, or a new one in the reused slot.
    MaybeReusedSlot,
    /// No allocation info while tracing was on throughout, after a compaction between
    /// the dumps: compaction may have moved it and erased its allocation info (Ruby
    /// 2.7–3.3), so it may be an old object or a new one.
    MaybeMoved,
}

/// How two dumps of one process relate: which rows are the same object.
pub(crate) struct Pairing<'a> {
    earlier: &'a Heap,
    later: &'a Heap,
    /// Maps the later heap's interned ids to the earlier heap's (files, by bytes).
    later_to_earlier: Vec<u32>,
    /// And the other way round.
    earlier_to_later: Vec<u32>,
    /// The largest generation in `earlier`: objects of a smaller generation existed
    /// when `earlier` was taken.
    earlier_max_generation: Option<u32>,
    /// Objects of `later` older than `earlier` that `earlier` does not have at their
    /// address: the evidence of compaction.
    pub(crate) moved: u64,
    /// Tracing was on before `earlier` and still is in `later` (`later` has traced
    /// objects younger than everything in `earlier`).
    tracing_throughout: bool,
    /// Without tracing, compaction leaves no trace but this: old objects (see
    /// `old_relocated`) at addresses that held no such object in `earlier`. Their
    /// count when it is large enough to suspect compaction, else 0.
    pub(crate) suspected_compaction: u64,
}

/// Old objects at new addresses, as a share of `later`'s old objects, above which an
/// untraced heap is suspected of compaction (and at least `SUSPECT_MIN` of them): new
/// objects promoted between the dumps are a few, a compaction moves thousands.
const SUSPECT_PER_MILLE: u64 = 10;
const SUSPECT_MIN: u64 = 100;

impl<'a> Pairing<'a> {
    pub(crate) fn new(earlier: &'a Heap, later: &'a Heap) -> Pairing<'a> {
        let later_to_earlier = translate(later, earlier);
        let earlier_to_later = translate(earlier, later);
        let earlier_max_generation = earlier
            .columns
            .generation
            .par_iter()
            .copied()
            .filter(|&g| g != ABSENT)
            .max();
        let tracing_throughout = earlier_max_generation.is_some_and(|max| {
            later
                .columns
                .generation
                .par_iter()
                .any(|&g| g != ABSENT && g > max)
        });
        let mut pairing = Pairing {
            earlier,
            later,
            later_to_earlier,
            earlier_to_later,
            earlier_max_generation,
            moved: 0,
            tracing_throughout,
            suspected_compaction: 0,
        };
        pairing.moved = (0..later.len())
            .into_par_iter()
            .with_min_len(1 << 14)
            .filter(|&i| pairing.counterpart(i).is_none() && pairing.is_older_than_earlier(i))
            .count() as u64;
        if !pairing.tracing_throughout {
            // A compaction moves old objects: `earlier` loses old objects of a class at
            // their addresses and `later` has as many old ones of that class at
            // addresses that held none. Promotion and death between the dumps do the
            // same only where both happen to one class.
            let untraced_old = |heap: &Heap, i: usize| {
                u32::from(heap.columns.flags[i]) & flag::OLD != 0 && heap.generation(i).is_none()
            };
            let mut relocated: HashMap<(ObjectType, u32), u64> = HashMap::new();
            let mut old = 0u64;
            for i in 0..later.len() {
                if untraced_old(later, i) {
                    old += 1;
                    if pairing.counterpart(i).is_none() {
                        *relocated.entry(class_key(later, i, None)).or_insert(0) += 1;
                    }
                }
            }
            let mut lost: HashMap<(ObjectType, u32), u64> = HashMap::new();
            for j in 0..earlier.len() {
                if untraced_old(earlier, j) && pairing.counterpart_in_later(j).is_none() {
                    let key = class_key(earlier, j, Some(&pairing.earlier_to_later));
                    *lost.entry(key).or_insert(0) += 1;
                }
            }
            let moved: u64 = relocated
                .iter()
                .map(|(key, &n)| n.min(lost.get(key).copied().unwrap_or(0)))
                .sum();
            if moved >= SUSPECT_MIN && moved * 1000 >= old * SUSPECT_PER_MILLE {
                pairing.suspected_compaction = moved;
            }
        }
        pairing
    }

    /// Did `row` of `later` exist before `earlier` was taken? Traced objects tell by
    /// their generation. An untraced object in `later` when tracing was on before
    /// `earlier` (and still is in `later`) predates tracing: Ruby 2.7–3.3 drop the
    /// allocation info of objects that compaction moves.
    pub(crate) fn is_older_than_earlier(&self, row: usize) -> bool {
        match (self.later.generation(row), self.earlier_max_generation) {
            (Some(g), Some(max)) => g < max,
            (None, Some(_)) => self.tracing_throughout,
            _ => false,
        }
    }

    /// The row of `earlier` that is the same object as `row` of `later`.
    pub(crate) fn counterpart(&self, row: usize) -> Option<usize> {
        let j = self.earlier.find(self.later.columns.address[row])?;
        (same_object(self.later, row, self.earlier, j, &self.later_to_earlier)
            && !evidence_of_reuse(self.earlier, j, self.later, row))
        .then_some(j)
    }

    /// The row of `later` that is the same object as `row` of `earlier`.
    pub(crate) fn counterpart_in_later(&self, row: usize) -> Option<usize> {
        let j = self.later.find(self.earlier.columns.address[row])?;
        (same_object(self.earlier, row, self.later, j, &self.earlier_to_later)
            && !evidence_of_reuse(self.earlier, row, self.later, j))
        .then_some(j)
    }

    /// Is `row` of `later` new since `earlier`, and how sure can one be?
    pub(crate) fn identity(&self, row: usize) -> Identity {
        match self.counterpart(row) {
            // With tracing on throughout, a new object has allocation info unless
            // compaction erased it; otherwise nothing tells a reused slot.
            Some(j)
                if self.later.generation(row).is_none() && self.earlier.generation(j).is_none() =>
            {
                // (Compaction could in principle move a new object, erasing its
                // allocation info, onto the slot of a dead untraced object of its
                // class; that residual case is taken to be the same object.)
                if self.tracing_throughout {
                    Identity::Old
                } else {
                    Identity::MaybeReusedSlot
                }
            }
            Some(_) => Identity::Old,
            None if self.is_older_than_earlier(row) => {
                if self.later.generation(row).is_none() {
                    Identity::MaybeMoved
                } else {
                    Identity::Old
                }
            }
            None => Identity::New,
        }
    }

    /// How many of `rows` (of `later`) have this uncertain identity.
    pub(crate) fn count_unsure(&self, rows: &[u32], identity: Identity) -> u64 {
        rows.iter()
            .filter(|&&i| self.identity(i as usize) == identity)
            .count() as u64
    }

    /// `later`'s untraced objects missing from `earlier` while tracing was on
    /// throughout: moved by a compaction that erased their allocation info (2.7–3.3).
    /// Counted by type and class name (`later`'s ids).
    fn moved_without_allocation_info(&self, later: &Heap) -> HashMap<(ObjectType, u32), Vec<u32>> {
        let mut pool: HashMap<_, Vec<u32>> = HashMap::new();
        if !self.tracing_throughout && self.suspected_compaction == 0 {
            return pool;
        }
        // Without tracing, a moved object may land where an object of its class was
        // and look like that one: every untraced object of the class is a candidate.
        let any_untraced = self.suspected_compaction > 0 && !self.tracing_throughout;
        for i in 0..later.len() {
            if later.generation(i).is_none() && (any_untraced || self.counterpart(i).is_none()) {
                pool.entry(class_key(later, i, None))
                    .or_default()
                    .push(i as u32);
            }
        }
        pool
    }

    /// `later`'s objects that may have moved, counted by content, keyed in `later`'s
    /// ids. Unlike the detection, this takes objects of `earlier`'s last GC epoch too
    /// (generation equal to its largest): the newest objects of `earlier` are there.
    fn moved_by_content(&self, later: &Heap) -> HashMap<ContentKey, Vec<u32>> {
        let mut pool: HashMap<_, Vec<u32>> = HashMap::new();
        for i in 0..later.len() {
            let not_newer = match (later.generation(i), self.earlier_max_generation) {
                (Some(g), Some(max)) => g <= max,
                _ => false,
            };
            if not_newer && self.counterpart(i).is_none() {
                pool.entry(content_key(later, i, None))
                    .or_default()
                    .push(i as u32);
            }
        }
        pool
    }
}

/// Takes one object (its row) matching `key` from a pool; None when none is left.
fn take<K: std::hash::Hash + Eq>(pool: &mut HashMap<K, Vec<u32>>, key: K) -> Option<usize> {
    pool.get_mut(&key)?.pop().map(|row| row as usize)
}

/// Type and class name (in `to_other`'s ids): all that is left to match an object whose
/// allocation info compaction erased.
fn class_key(heap: &Heap, row: usize, to_other: Option<&[u32]>) -> (ObjectType, u32) {
    let name = heap
        .class_names
        .get(&heap.real_class(heap.columns.class[row]))
        .map_or(NO_STRING, |&id| to_other.map_or(id, |map| map[id as usize]));
    (heap.columns.object_type[row], name)
}

/// Type, class, file, line, generation: what identifies a traced object apart from
/// its address.
type ContentKey = (ObjectType, u64, u32, u32, u32);

/// The content key of `row` of `heap`, with the file id translated into the other
/// heap's ids (`None`: kept in `heap`'s own).
fn content_key(heap: &Heap, row: usize, to_other: Option<&[u32]>) -> ContentKey {
    let c = &heap.columns;
    let file = to_other.map_or(c.file[row], |map| map[c.file[row] as usize]);
    (
        c.object_type[row],
        c.class[row],
        file,
        c.line[row],
        c.generation[row],
    )
}

/// Are row `i` of `a` and row `j` of `b` (at the same address) the same object?
/// `a_to_b` translates `a`'s interned ids into `b`'s.
fn same_object(a: &Heap, i: usize, b: &Heap, j: usize, a_to_b: &[u32]) -> bool {
    let (ca, cb) = (&a.columns, &b.columns);
    if ca.object_type[i] != cb.object_type[j] {
        return false;
    }
    // IMEMO class fields are bogus before 3.2; compare classes elsewhere only, and the
    // real ones: `extend` swaps an object's class for its singleton class.
    if ca.object_type[i] != ObjectType::Imemo
        && ca.class[i] != cb.class[j]
        && a.real_class(ca.class[i]) != b.real_class(cb.class[j])
    {
        return false;
    }
    let (ga, gb) = (ca.generation[i], cb.generation[j]);
    if ga != ABSENT && gb != ABSENT && ga != gb {
        return false;
    }
    // Tracing records the allocation site; untraced objects have none on both sides.
    a_to_b[ca.file[i] as usize] == cb.file[j] && ca.line[i] == cb.line[j]
}

/// Is there evidence that row `l` of `later` is not the object at row `e` of `earlier`
/// (same address, type and class)? Only what no object undergoes counts: an old object
/// becomes young again only when it loses its write-barrier protection (demotion), and
/// an interned (fstring) string never changes nor stops being interned.
fn evidence_of_reuse(earlier: &Heap, e: usize, later: &Heap, l: usize) -> bool {
    let (fe, fl) = (
        u32::from(earlier.columns.flags[e]),
        u32::from(later.columns.flags[l]),
    );
    let demoted = fe & flag::OLD != 0 && fl & flag::OLD == 0;
    if demoted && fl & flag::WB_PROTECTED != 0 {
        return true;
    }
    fe & flag::FSTRING != 0
        && (fl & flag::FSTRING == 0 || earlier.columns.bytesize[e] != later.columns.bytesize[l])
}

/// For each interned id of `from` (index), the id of the same bytes in `to`, or a value
/// that matches nothing (`u32::MAX`) when `to` has no such string. NO_STRING maps to NO_STRING.
fn translate(from: &Heap, to: &Heap) -> Vec<u32> {
    let mut map = Vec::with_capacity(from.strings.len() + 1);
    map.push(NO_STRING);
    for id in 1..=from.strings.len() as u32 {
        let bytes = from.strings.get(id).expect("ids are dense");
        map.push(to.strings.lookup(bytes).unwrap_or(u32::MAX));
    }
    map
}

/// Objects filtered by default.
pub(crate) struct Noise<'a> {
    heap: &'a Heap,
    enabled: bool,
    tracer_struct: Option<u32>,
    /// Interned file ids that lie under heapdiff's own paths.
    own_files: Vec<bool>,
}

impl<'a> Noise<'a> {
    pub(crate) fn new(heap: &'a Heap, options: &DiffOptions) -> Noise<'a> {
        let mut own_files = vec![false; heap.strings.len() + 1];
        for (id, own) in own_files.iter_mut().enumerate().skip(1) {
            let bytes = heap.strings.get(id as u32).expect("ids are dense");
            *own = is_dump_machinery(bytes)
                || options
                    .own_paths
                    .iter()
                    .any(|prefix| !prefix.is_empty() && bytes.starts_with(prefix));
        }
        Noise {
            heap,
            enabled: !options.include_noise,
            tracer_struct: heap.strings.lookup(TRACER_STRUCT),
            own_files,
        }
    }

    pub(crate) fn is_noise(&self, row: usize) -> bool {
        if !self.enabled {
            return false;
        }
        let c = &self.heap.columns;
        if c.object_type[row] == ObjectType::Data
            && self.tracer_struct.is_some()
            && Some(c.subtype[row]) == self.tracer_struct
        {
            return true;
        }
        self.own_files[c.file[row] as usize]
    }
}

/// Files whose allocations are the dump's own doing: Ruby's objspace.rb wraps
/// `dump_all` and allocates as it runs.
fn is_dump_machinery(file: &[u8]) -> bool {
    file.ends_with(b"/objspace.rb")
}

/// The class part of `row`'s allocation site, in `heap`'s ids: the real class's
/// interned name with the top bit set (`NAMED_CLASS`), else its address, 0 for IMEMOs.
/// By *name*: a class reloaded under the same name (Rails' code reloading) is the
/// same site to a reader. Unnamed classes go by address.
pub(crate) fn site_class(heap: &Heap, row: usize) -> u64 {
    let c = &heap.columns;
    match c.object_type[row] {
        ObjectType::Imemo => 0,
        _ => {
            let class = heap.real_class(c.class[row]);
            match heap.class_names.get(&class) {
                Some(&name) => u64::from(name) | NAMED_CLASS,
                None => class,
            }
        }
    }
}

/// Marks a `site_class` that is an interned class name, not an address.
pub(crate) const NAMED_CLASS: u64 = 1 << 63;

/// Groups the retained objects by allocation site (type, class, file, line), largest
/// count first. Each object comes as (row in `after`, where its site is read; row in
/// `last`, where it is retained). `uncertain` objects add to their site's `uncertain`
/// count only (their row in `last` is unknown when they were matched by class alone).
fn group(
    after: &Heap,
    last: &Heap,
    certain: &[(u32, u32)],
    uncertain: &[(u32, Option<u32>)],
) -> Vec<Group> {
    let c = &after.columns;
    let mut by_site: HashMap<(ObjectType, u64, u32, u32), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut subtypes: Vec<Option<u32>> = Vec::new();
    let objects = certain
        .iter()
        .map(|&(i, j)| (i, Some(j), true))
        .chain(uncertain.iter().map(|&(i, j)| (i, j, false)));
    for (row, last_row, is_certain) in objects {
        let i = row as usize;
        let key = (c.object_type[i], site_class(after, i), c.file[i], c.line[i]);
        let g = *by_site.entry(key).or_insert_with(|| {
            groups.push(Group {
                object_type: c.object_type[i],
                class_name: after.class_name(i),
                subtype: None,
                file: after.file(i).map(<[u8]>::to_vec),
                line: after.line(i),
                count: 0,
                uncertain: 0,
                memsize: 0,
                members: Vec::new(),
            });
            subtypes.push(Some(c.subtype[i]));
            groups.len() - 1
        });
        let group = &mut groups[g];
        if !is_certain {
            group.uncertain += 1;
            continue;
        }
        group.count += 1;
        let j = last_row.expect("a certain object has its row") as usize;
        group.memsize += last.columns.memsize.get(j);
        group.members.push(j as u32);
        if subtypes[g] != Some(c.subtype[i]) {
            subtypes[g] = None;
        }
    }
    for (group, subtype) in groups.iter_mut().zip(subtypes) {
        group.subtype = subtype
            .filter(|&id| id != NO_STRING)
            .and_then(|id| after.string(id))
            .map(<[u8]>::to_vec);
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.uncertain.cmp(&a.uncertain))
            .then(b.memsize.cmp(&a.memsize))
            .then_with(|| a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
            .then(a.object_type.cmp(&b.object_type))
            .then_with(|| a.class_name.cmp(&b.class_name))
    });
    groups
}
