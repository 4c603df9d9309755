//! Trends across N snapshots of one process: for every allocation site, how many of its
//! objects each snapshot holds, their memsize, and how many of them are the *same*
//! objects as in the snapshot before (identity as in the diff, see `diff::Pairing`).
//! Counts alone cannot tell a leak from turnover: a site whose objects are replaced
//! between snapshots can show the same count every time while none of them survives.
//!
//! The walk loads the snapshots one after the other and holds at most two heaps at a
//! time: the previous one, to pair objects, and the current one.

use std::sync::Arc;

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::diff::{
    compaction_warning, other_process_warning, site_class, suspected_compaction_warning,
    DiffOptions, Identity, Noise, Pairing, NAMED_CLASS,
};
use crate::graph::HeapGraph;
use crate::heap::Heap;
use crate::intern::NO_STRING;
use crate::object_type::ObjectType;

/// A row of the last heap that belongs to no site (empty slot, zombie, noise).
const NO_SITE: u32 = u32::MAX;

/// What a site's objects do across the snapshots. The rules are `verdict`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Growing,
    Stable,
    Transient,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Stable => "stable",
            Verdict::Transient => "transient",
        }
    }
}

/// One allocation site (type, class, file, line, as the diff groups them) across the
/// snapshots. Every vector has one entry per snapshot, oldest first.
#[derive(Debug, Clone)]
pub struct Site {
    pub object_type: ObjectType,
    pub class_name: Option<String>,
    /// DATA struct name or IMEMO type, when the site's objects agree on one.
    pub subtype: Option<Vec<u8>>,
    pub file: Option<Vec<u8>>,
    pub line: Option<u32>,
    pub counts: Vec<u64>,
    pub memsizes: Vec<u64>,
    /// Objects of each snapshot that are the same objects as in the snapshot before
    /// (0 for the first snapshot).
    pub survived: Vec<u64>,
    /// Of `survived`, the objects whose identity the dumps leave open: no allocation
    /// info in a slot an object of their class held before (reused or not), or an
    /// object compaction may have moved (see `diff::Identity`). The true survivors are
    /// in `survived - uncertain ..= survived`; the verdict counts them as survivors.
    pub uncertain: Vec<u64>,
    pub verdict: Verdict,
}

impl Site {
    /// Last count minus first.
    pub fn growth(&self) -> i64 {
        last(&self.counts) as i64 - self.counts[0] as i64
    }

    pub fn memsize_growth(&self) -> i64 {
        last(&self.memsizes) as i64 - self.memsizes[0] as i64
    }
}

fn last(v: &[u64]) -> u64 {
    v.last().copied().unwrap_or(0)
}

/// Totals of one snapshot, over the objects the sites count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotTotals {
    pub objects: u64,
    pub memsize: u64,
    /// Objects left out as noise (the tracer's, heapdiff's own).
    pub filtered: u64,
    /// Objects of the snapshot before that compaction moved (0 for the first).
    pub moved: u64,
}

#[derive(Debug)]
pub struct Trend {
    /// Ranked: growing sites first, largest growth first; then stable, then
    /// transient ones, largest last count first.
    pub sites: Vec<Site>,
    pub snapshots: Vec<SnapshotTotals>,
    pub warnings: Vec<String>,
    /// The last snapshot, kept for suspects and paths of its objects. A caller that
    /// frees it on its own terms (before the rest of the trend) takes it out.
    pub last: Option<Arc<HeapGraph>>,
    /// The site (index into `sites`) of each row of `last`, or `NO_SITE`.
    last_sites: Vec<u32>,
}

impl Trend {
    /// Rows of `last` that belong to site `site`, at most `limit`.
    pub fn rows(&self, site: usize, limit: usize) -> Vec<u32> {
        let site = site as u32;
        self.last_sites
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s == site)
            .map(|(row, _)| row as u32)
            .take(limit)
            .collect()
    }
}

/// A site's identity across heaps: interned ids differ from one dump to the next, so
/// the class name and the file are kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SiteKey {
    object_type: ObjectType,
    class: ClassIdent,
    file: Option<Vec<u8>>,
    line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClassIdent {
    /// IMEMOs: their class field means nothing.
    None,
    Named(Vec<u8>),
    /// An unnamed class, by address.
    Address(u64),
}

/// Per site while walking: the subtype seen first, and whether another one was seen.
struct Subtype {
    bytes: Option<Vec<u8>>,
    mixed: bool,
}

/// Walks `count` snapshots, oldest first, loading snapshot `k` with `load(k)`. Noise is
/// left out as in the diff (`options`). At most two heaps are alive at once.
pub fn trend<E>(
    count: usize,
    mut load: impl FnMut(usize) -> Result<Heap, E>,
    options: &DiffOptions,
) -> Result<Trend, E> {
    assert!(count >= 1, "a trend needs at least one snapshot");
    let mut keys: HashMap<SiteKey, u32> = HashMap::new();
    let mut sites: Vec<Site> = Vec::new();
    let mut subtypes: Vec<Subtype> = Vec::new();
    let mut snapshots = Vec::with_capacity(count);
    let mut warnings = Vec::new();
    // Survivors whose identity the dumps leave open (see `Site`): in a reused slot
    // without allocation info, and maybe moved by a compaction that erased it.
    let (mut unsure_reused, mut unsure_moved) = (0u64, 0u64);
    let mut last_sites = Vec::new();
    let mut previous: Option<Heap> = None;

    for k in 0..count {
        let heap = load(k)?;
        let mut totals = SnapshotTotals::default();
        {
            let pairing = previous.as_ref().map(|p| Pairing::new(p, &heap));
            // Survivors: the same object at the same address, or an object older than
            // the previous snapshot that compaction moved (the diff's rule for "not new").
            // `Identity::Old` or a `Maybe…` is a survivor: the same object at its
            // address, or older than the previous snapshot (moved by compaction).
            let identity: Vec<Option<Identity>> = match &pairing {
                Some(pairing) => (0..heap.len())
                    .into_par_iter()
                    .with_min_len(1 << 14)
                    .map(|i| Some(pairing.identity(i)))
                    .collect(),
                None => vec![None; heap.len()],
            };
            if let (Some(pairing), Some(previous)) = (&pairing, &previous) {
                totals.moved = pairing.moved;
                // Snapshots of two processes: no compaction to speak of (see the diff).
                let foreign = other_process_warning(previous, &heap);
                let is_foreign = foreign.is_some();
                warnings.extend(foreign);
                if pairing.moved > 0 && !is_foreign {
                    warnings.push(compaction_warning(previous, &heap, pairing.moved));
                }
                if pairing.suspected_compaction > 0 && !is_foreign {
                    warnings.push(suspected_compaction_warning(
                        previous,
                        &heap,
                        pairing.suspected_compaction,
                        0,
                    ));
                }
            }
            let noise = Noise::new(&heap, options);
            let is_last = k + 1 == count;
            if is_last {
                last_sites = vec![NO_SITE; heap.len()];
            }
            // (type, site class, file id, line) in this heap's ids → site.
            let mut local: HashMap<(ObjectType, u64, u32, u32), u32> = HashMap::new();
            let c = &heap.columns;
            for i in 0..heap.len() {
                let object_type = c.object_type[i];
                // Empty slots of a `full: true` dump and garbage awaiting finalizers.
                if matches!(object_type, ObjectType::None | ObjectType::Zombie) {
                    continue;
                }
                if noise.is_noise(i) {
                    totals.filtered += 1;
                    continue;
                }
                let local_key = (object_type, site_class(&heap, i), c.file[i], c.line[i]);
                let s = *local.entry(local_key).or_insert_with(|| {
                    let key = site_key(&heap, local_key);
                    *keys.entry(key).or_insert_with(|| {
                        sites.push(Site {
                            object_type,
                            class_name: heap.class_name(i),
                            subtype: None,
                            file: heap.file(i).map(<[u8]>::to_vec),
                            line: heap.line(i),
                            counts: vec![0; count],
                            memsizes: vec![0; count],
                            survived: vec![0; count],
                            uncertain: vec![0; count],
                            verdict: Verdict::Stable,
                        });
                        subtypes.push(Subtype {
                            bytes: heap.subtype(i).map(<[u8]>::to_vec),
                            mixed: false,
                        });
                        (sites.len() - 1) as u32
                    })
                });
                let site = &mut sites[s as usize];
                site.counts[k] += 1;
                site.memsizes[k] += c.memsize.get(i);
                match identity[i] {
                    Some(Identity::Old) => site.survived[k] += 1,
                    Some(unsure @ (Identity::MaybeReusedSlot | Identity::MaybeMoved)) => {
                        site.survived[k] += 1;
                        site.uncertain[k] += 1;
                        if unsure == Identity::MaybeReusedSlot {
                            unsure_reused += 1;
                        } else {
                            unsure_moved += 1;
                        }
                    }
                    Some(Identity::New) | None => {}
                }
                totals.objects += 1;
                totals.memsize += c.memsize.get(i);
                let subtype = &mut subtypes[s as usize];
                if !subtype.mixed && subtype.bytes.as_deref() != heap.subtype(i) {
                    subtype.mixed = true;
                }
                if is_last {
                    last_sites[i] = s;
                }
            }
        }
        warnings.extend(heap.warnings());
        snapshots.push(totals);
        // The previous heap is dropped here: two at most.
        previous = Some(heap);
    }

    if unsure_reused > 0 {
        warnings.push(format!(
            "{unsure_reused} object(s) have no allocation info and sit where the snapshot before had an object of the same type and class: a new object in a reused slot cannot be told from the old one, so they are counted as survivors and the sites' new objects are ranges (low–high). Tracing was off when they were allocated; turn it on (Heapdiff.trace_allocations!) before the first snapshot for exact counts"
        ));
    }
    if unsure_moved > 0 {
        warnings.push(format!(
            "{unsure_moved} object(s) have no allocation info although tracing was on, after the heap was compacted (Ruby 2.7–3.3 erase the allocation info of moved objects): each may be an old object that moved or a new one, so they are counted as survivors and the sites' new objects are ranges (low–high)"
        ));
    }
    for (site, subtype) in sites.iter_mut().zip(subtypes) {
        site.subtype = subtype.bytes.filter(|_| !subtype.mixed);
        site.verdict = verdict(&site.counts, &site.survived);
    }
    let mut order: Vec<u32> = (0..sites.len() as u32).collect();
    order.sort_by(|&a, &b| rank(&sites[a as usize], &sites[b as usize]));
    let mut new_index = vec![0u32; sites.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old as usize] = new as u32;
    }
    for s in last_sites.iter_mut().filter(|s| **s != NO_SITE) {
        *s = new_index[*s as usize];
    }
    let mut slots: Vec<Option<Site>> = sites.into_iter().map(Some).collect();
    let sites = order
        .iter()
        .map(|&old| slots[old as usize].take().expect("a permutation"))
        .collect();

    Ok(Trend {
        sites,
        snapshots,
        warnings,
        last: Some(Arc::new(HeapGraph::new(
            previous.expect("at least one snapshot"),
        ))),
        last_sites,
    })
}

fn site_key(heap: &Heap, (object_type, class, file, line): (ObjectType, u64, u32, u32)) -> SiteKey {
    let class = if class == 0 {
        ClassIdent::None
    } else if class & NAMED_CLASS != 0 {
        let id = (class & !NAMED_CLASS) as u32;
        ClassIdent::Named(heap.string(id).unwrap_or_default().to_vec())
    } else {
        ClassIdent::Address(class)
    };
    SiteKey {
        object_type,
        class,
        file: (file != NO_STRING)
            .then(|| heap.string(file).map(<[u8]>::to_vec))
            .flatten(),
        line,
    }
}

/// Growing sites first, by count growth then memsize growth; the others by verdict
/// (stable before transient) and last count. Ties by place, for a stable order.
fn rank(a: &Site, b: &Site) -> std::cmp::Ordering {
    a.verdict
        .cmp(&b.verdict)
        .then_with(|| match a.verdict {
            Verdict::Growing => b
                .growth()
                .cmp(&a.growth())
                .then(b.memsize_growth().cmp(&a.memsize_growth())),
            _ => std::cmp::Ordering::Equal,
        })
        .then(last(&b.counts).cmp(&last(&a.counts)))
        .then(last(&b.memsizes).cmp(&last(&a.memsizes)))
        .then_with(|| a.file.cmp(&b.file))
        .then(a.line.cmp(&b.line))
        .then(a.object_type.cmp(&b.object_type))
        .then_with(|| a.class_name.cmp(&b.class_name))
}

/// Snapshots needed before a site can be called growing.
pub const MIN_GROWING_SNAPSHOTS: usize = 3;

/// The verdict for a site's counts per snapshot and survivors (objects of snapshot k
/// that are the same objects as in snapshot k-1):
///
/// - **transient** when most objects do not survive to the next snapshot: over all
///   steps, survivors are fewer than half of the objects the snapshot before held
///   (Σ survived[k] < ½ Σ counts[k-1], k ≥ 1), or no snapshot but the last has any,
///   or the last has none. Objects come and go, whatever the counts do.
/// - **growing** when they do survive and the count grows monotonically or nearly so
///   across at least 3 snapshots. Near-monotonic, with n snapshots (n - 1 steps):
///   the last count is above the first; the count rises in at least ⌈2(n-1)/3⌉ steps
///   (both steps for 3 snapshots, 2 of 3 for 4, 4 of 5
///   for 6); and no step falls by
///   more than a tenth of the count before it.
/// - **stable** otherwise: retained, but not growing (a cache that filled and stays).
pub fn verdict(counts: &[u64], survived: &[u64]) -> Verdict {
    let before: u64 = counts[..counts.len().saturating_sub(1)].iter().sum();
    let kept: u64 = survived.iter().skip(1).sum();
    if before == 0 || last(counts) == 0 || kept * 2 < before {
        return Verdict::Transient;
    }
    if near_monotonic(counts) {
        Verdict::Growing
    } else {
        Verdict::Stable
    }
}

/// See `verdict`.
pub fn near_monotonic(counts: &[u64]) -> bool {
    let n = counts.len();
    if n < MIN_GROWING_SNAPSHOTS || last(counts) <= counts[0] {
        return false;
    }
    let steps = n - 1;
    let rises = counts.windows(2).filter(|w| w[1] > w[0]).count();
    let small_falls = counts.windows(2).all(|w| 10 * w[1] >= 9 * w[0]);
    rises * 3 >= 2 * steps && small_falls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_rising_and_retained_is_growing() {
        assert_eq!(
            verdict(&[1000, 2000, 3000], &[0, 1000, 2000]),
            Verdict::Growing
        );
        assert_eq!(
            verdict(&[1, 2, 3, 4, 5, 6], &[0, 1, 2, 3, 4, 5]),
            Verdict::Growing
        );
    }

    #[test]
    fn two_snapshots_are_never_growing() {
        assert_eq!(verdict(&[10, 20], &[0, 10]), Verdict::Stable);
    }

    #[test]
    fn near_monotonic_allows_a_few_flat_or_slightly_lower_steps() {
        // 6 snapshots: 4 rises of 5 steps are enough, one flat step allowed.
        assert!(near_monotonic(&[10, 20, 20, 30, 40, 50]));
        // A 10% dip is allowed, an 11% one is not.
        assert!(near_monotonic(&[100, 200, 180, 300, 400, 500]));
        assert!(!near_monotonic(&[100, 200, 178, 300, 400, 500]));
        // Two flat steps out of 5: not growing.
        assert!(!near_monotonic(&[10, 20, 20, 20, 40, 50]));
        // 3 snapshots: both steps must rise.
        assert!(!near_monotonic(&[10, 20, 20]));
        // Net growth is required.
        assert!(!near_monotonic(&[10, 10, 10, 10]));
    }

    #[test]
    fn a_cache_that_filled_once_is_stable() {
        assert_eq!(
            verdict(
                &[100, 100, 100, 100, 100, 100],
                &[0, 100, 100, 100, 100, 100]
            ),
            Verdict::Stable
        );
        assert_eq!(
            verdict(&[0, 100, 100, 100, 100, 100], &[0, 0, 100, 100, 100, 100]),
            Verdict::Stable
        );
    }

    #[test]
    fn replaced_objects_are_transient_even_when_the_count_grows() {
        assert_eq!(
            verdict(&[20, 20, 20, 20], &[0, 0, 0, 0]),
            Verdict::Transient
        );
        assert_eq!(verdict(&[10, 20, 30], &[0, 4, 9]), Verdict::Transient);
        // Half survive: not transient.
        assert_eq!(verdict(&[10, 20, 30], &[0, 5, 10]), Verdict::Growing);
        // Seen in the last snapshot only: nothing says it stays.
        assert_eq!(verdict(&[0, 0, 7], &[0, 0, 0]), Verdict::Transient);
        // Kept for a while, then freed: gone by the last snapshot.
        assert_eq!(
            verdict(&[100, 100, 0, 0], &[0, 100, 0, 0]),
            Verdict::Transient
        );
    }
}
