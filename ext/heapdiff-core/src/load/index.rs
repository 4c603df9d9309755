//! The index builder: appends the parsed pieces in file order, then resolves
//! addresses to rows and names the classes.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::address_index::AddressIndex;
use crate::heap::{Columns, Heap, LoadStats, Root, Shape, SAMPLE_LIMIT};
use crate::intern::Interner;
use crate::object_type::ObjectType;
use crate::parse::flag;
use crate::source::Source;

use super::cancelled;
use super::piece::ParsedPiece;
use crate::error::Error;

/// Accumulates chunks in file order.
pub(super) struct IndexBuilder {
    path: PathBuf,
    pub(super) columns: Columns,
    strings: Interner,
    references: Vec<u64>,
    ref_start: Vec<u32>,
    roots: Vec<(u32, Vec<u64>)>,
    shapes: Vec<Shape>,
    class_names: HashMap<u64, u32>,
    class_parents: HashMap<u64, u64>,
    pub(super) stats: LoadStats,
}

impl IndexBuilder {
    pub(super) fn new(path: &Path) -> IndexBuilder {
        IndexBuilder {
            path: path.to_path_buf(),
            columns: Columns::default(),
            strings: Interner::new(),
            references: Vec::new(),
            ref_start: vec![0],
            roots: Vec::new(),
            shapes: Vec::new(),
            class_names: HashMap::new(),
            class_parents: HashMap::new(),
            stats: LoadStats::default(),
        }
    }

    /// Appends a parsed piece. Fails on a line that is no record (but for a last line
    /// cut short), and with `Error::TooLarge` when the index cannot grow.
    pub(super) fn append(&mut self, chunk: ParsedPiece) -> Result<(), Error> {
        let line_base = self.stats.lines;
        let too_large =
            |what: &str, bytes: usize| Error::out_of_memory(&self.path, line_base + 1, what, bytes);
        if let Some((line, error, final_unterminated)) = chunk.bad_line {
            let line = line_base + line;
            let is_first_record = self.columns.is_empty()
                && self.roots.is_empty()
                && chunk.stats.objects == 0
                && chunk.roots.is_empty();
            if final_unterminated && !is_first_record {
                // The writer died mid-record: warn, and keep everything before it.
                self.stats.truncated_last_line = Some(line);
            } else {
                return Err(error.at(&self.path, line));
            }
        }
        let map = self.strings.absorb(&chunk.strings);
        let n_before = self.columns.len();
        self.columns
            .append(&chunk.columns, &map, chunk.offset)
            .map_err(|_| too_large("the index", chunk.columns.heap_bytes()))?;
        let ref_base = self.references.len() as u64;
        if ref_base + chunk.references.len() as u64 >= u64::from(u32::MAX) {
            return Err(Error::parse(
                &self.path,
                line_base + chunk.lines,
                "more than 4 billion references",
            ));
        }
        let refs_bytes = 12 * chunk.references.len();
        self.references
            .try_reserve(chunk.references.len())
            .and_then(|()| self.ref_start.try_reserve(chunk.reference_ends.len()))
            .map_err(|_| too_large("the references", refs_bytes))?;
        self.references.extend_from_slice(&chunk.references);
        self.ref_start
            .extend(chunk.reference_ends.iter().map(|&e| e + ref_base as u32));
        debug_assert_eq!(self.ref_start.len(), n_before + chunk.columns.len() + 1);
        for (name, targets) in chunk.roots {
            self.roots.push((map[name as usize], targets));
        }
        for mut shape in chunk.shapes {
            shape.shape_type = map[shape.shape_type as usize];
            shape.edge_name = map[shape.edge_name as usize];
            self.shapes.push(shape);
        }
        for (address, name) in chunk.class_names {
            self.class_names.insert(address, map[name as usize]);
        }
        self.class_parents.extend(chunk.class_parents);
        let s = &mut self.stats;
        let c = chunk.stats;
        s.lines += chunk.lines;
        s.blank_lines += c.blank_lines;
        s.objects += c.objects;
        s.root_records += c.root_records;
        s.shapes += c.shapes;
        s.recovered_lines += c.recovered_lines;
        for (line, why) in c.recovered_samples {
            if s.recovered_samples.len() < SAMPLE_LIMIT {
                s.recovered_samples.push((line_base + line, why));
            }
        }
        if let Some(line) = c.truncated_last_line {
            s.truncated_last_line = Some(line_base + line);
        }
        s.incomplete_lines += c.incomplete_lines;
        s.decimal_escapes |= c.decimal_escapes;
        s.overflowed_numbers += c.overflowed_numbers;
        s.unknown_types += c.unknown_types;
        Ok(())
    }

    pub(super) fn finish(self, source: Source, cancel: Option<&AtomicBool>) -> Result<Heap, Error> {
        let IndexBuilder {
            mut columns,
            references,
            ref_start,
            roots: raw_roots,
            shapes,
            mut class_names,
            class_parents,
            mut strings,
            mut stats,
            ..
        } = self;
        columns.shrink_to_fit();
        let n = columns.len();
        let index = AddressIndex::build(&columns.address);
        stats.duplicate_addresses = index.duplicates();
        name_metaclasses(&columns, &index, &mut class_names, &mut strings);
        if cancelled(cancel) {
            return Err(Error::Cancelled);
        }
        stats.references = references.len() as u64;
        let mut dangling: Vec<u64> = Vec::new();
        let mut dangling_ids: HashMap<u64, u32> = HashMap::new();
        let ref_targets = resolve(
            &references,
            &index,
            &columns.address,
            n,
            &mut dangling,
            &mut dangling_ids,
        );
        drop(references);
        let mut root_targets = Vec::new();
        let mut roots = Vec::with_capacity(raw_roots.len());
        for (name, addresses) in raw_roots {
            let start = root_targets.len() as u32;
            root_targets.extend(resolve(
                &addresses,
                &index,
                &columns.address,
                n,
                &mut dangling,
                &mut dangling_ids,
            ));
            roots.push(Root {
                name,
                start,
                end: root_targets.len() as u32,
            });
        }
        stats.dangling_references = ref_targets
            .iter()
            .chain(root_targets.iter())
            .filter(|&&t| t as usize >= n)
            .count() as u64;
        Ok(Heap {
            source,
            columns,
            ref_start,
            ref_targets,
            dangling,
            roots,
            root_targets,
            shapes,
            strings,
            class_names,
            class_parents,
            index,
            stats,
            shape_ids: Default::default(),
        })
    }
}

/// Names each named class's metaclass `#<Class:Name>`, as Ruby does: a metaclass record
/// has no name of its own, but its class points at it.
fn name_metaclasses(
    columns: &Columns,
    index: &AddressIndex,
    class_names: &mut HashMap<u64, u32>,
    strings: &mut Interner,
) {
    let mut names = Vec::new();
    for i in 0..columns.len() {
        if !matches!(
            columns.object_type[i],
            ObjectType::Class | ObjectType::Module
        ) {
            continue;
        }
        let (Some(&name), meta) = (class_names.get(&columns.address[i]), columns.class[i]) else {
            continue;
        };
        let is_singleton = index
            .find(&columns.address, meta)
            .is_some_and(|m| columns.flags[m] & flag::SINGLETON as u16 != 0);
        if is_singleton && !class_names.contains_key(&meta) {
            names.push((meta, name));
        }
    }
    for (meta, name) in names {
        let mut text = b"#<Class:".to_vec();
        text.extend_from_slice(strings.get(name).unwrap_or(b"?"));
        text.push(b'>');
        let id = strings.intern(&text);
        class_names.insert(meta, id);
    }
}

/// Turns addresses into row indices; an address with no record becomes `n + k`, where
/// `dangling[k]` is the address.
fn resolve(
    addresses: &[u64],
    index: &AddressIndex,
    address_column: &[u64],
    n: usize,
    dangling: &mut Vec<u64>,
    dangling_ids: &mut HashMap<u64, u32>,
) -> Vec<u32> {
    let mut targets: Vec<u32> = addresses
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&a| index.find(address_column, a).map_or(u32::MAX, |i| i as u32))
        .collect();
    for (t, &address) in targets.iter_mut().zip(addresses) {
        if *t == u32::MAX {
            let id = *dangling_ids.entry(address).or_insert_with(|| {
                dangling.push(address);
                (n + dangling.len() - 1) as u32
            });
            *t = id;
        }
    }
    targets
}
