//! The index of one heap dump: a column per field, one row per heap object, and the
//! references between objects as a CSR graph of row indices. No per-object allocation;
//! strings that repeat (files, methods, class names) are interned, and string values are
//! not copied at all: they are read back from the file when asked for (see `source`).

use hashbrown::HashMap;

use std::collections::TryReserveError;
use std::sync::OnceLock;

use crate::address_index::AddressIndex;
use crate::intern::Interner;
use crate::object_type::ObjectType;
use crate::source::Source;

/// Marks an absent `u32` number (line, generation, length, shape id).
pub const ABSENT: u32 = u32::MAX;

/// One row per heap object, in dump order. Only what analysis needs is kept here
/// (about 60 bytes an object); the rest of a record is read back from the file.
#[derive(Default, Debug)]
pub struct Columns {
    pub address: Vec<u64>,
    pub object_type: Vec<ObjectType>,
    pub flags: Vec<u16>,
    /// Class address, 0 when the record has none.
    pub class: Vec<u64>,
    pub file: Vec<u32>,
    pub line: Vec<u32>,
    pub method: Vec<u32>,
    pub generation: Vec<u32>,
    pub memsize: Memsizes,
    /// STRING/SYMBOL bytesize (ABSENT when missing or 4 GiB and over: read it back).
    pub bytesize: Vec<u32>,
    /// ARRAY length, HASH size, OBJECT ivars.
    pub length: Vec<u32>,
    /// DATA `struct` or IMEMO `imemo_type`.
    pub subtype: Vec<u32>,
    pub shape_id: Vec<u32>,
    /// Byte offset of the record's line in the (decompressed) dump.
    pub offset: Vec<u64>,
}

/// Object memsizes in 4 bytes each: one over 4 GiB (never seen, but possible) is kept
/// aside. Saves 4 bytes an object, 4% of a loaded heap.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Memsizes {
    small: Vec<u32>,
    /// (row, memsize) of the rows whose `small` entry is `u32::MAX`, by row.
    large: Vec<(u32, u64)>,
}

impl Memsizes {
    pub fn push(&mut self, memsize: u64) {
        match u32::try_from(memsize) {
            Ok(small) if small != u32::MAX => self.small.push(small),
            _ => {
                self.large.push((self.small.len() as u32, memsize));
                self.small.push(u32::MAX);
            }
        }
    }

    pub fn get(&self, row: usize) -> u64 {
        match self.small[row] {
            u32::MAX => self
                .large
                .binary_search_by_key(&(row as u32), |&(r, _)| r)
                .map_or(u64::from(u32::MAX), |i| self.large[i].1),
            small => u64::from(small),
        }
    }

    pub fn len(&self) -> usize {
        self.small.len()
    }

    pub fn is_empty(&self) -> bool {
        self.small.is_empty()
    }
}

/// Grows `v` by at most an eighth beyond what is needed, instead of doubling: the
/// columns are the bulk of the memory and are sized from an estimate up front.
/// Bytes a vector holds on the heap.
fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Fails, leaving `v` as it was, when the memory cannot be had: the sizes come from
/// the dump.
fn extend_lean<T: Copy>(
    v: &mut Vec<T>,
    items: impl ExactSizeIterator<Item = T>,
) -> Result<(), TryReserveError> {
    let need = v.len() + items.len();
    if need > v.capacity() {
        v.try_reserve_exact(need - v.len() + need / 8)?;
    }
    v.extend(items);
    Ok(())
}

impl Columns {
    pub fn len(&self) -> usize {
        self.address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.address.is_empty()
    }

    /// Bytes of the columns' buffers.
    pub fn heap_bytes(&self) -> usize {
        vec_bytes(&self.address)
            + vec_bytes(&self.object_type)
            + vec_bytes(&self.flags)
            + vec_bytes(&self.class)
            + vec_bytes(&self.file)
            + vec_bytes(&self.line)
            + vec_bytes(&self.method)
            + vec_bytes(&self.generation)
            + vec_bytes(&self.memsize.small)
            + vec_bytes(&self.memsize.large)
            + vec_bytes(&self.bytesize)
            + vec_bytes(&self.length)
            + vec_bytes(&self.subtype)
            + vec_bytes(&self.shape_id)
            + vec_bytes(&self.offset)
    }

    /// Room for `n` more objects in every column, or an error when it cannot be had.
    pub fn try_reserve(&mut self, n: usize) -> Result<(), TryReserveError> {
        self.address.try_reserve_exact(n)?;
        self.object_type.try_reserve_exact(n)?;
        self.flags.try_reserve_exact(n)?;
        self.class.try_reserve_exact(n)?;
        self.file.try_reserve_exact(n)?;
        self.line.try_reserve_exact(n)?;
        self.method.try_reserve_exact(n)?;
        self.generation.try_reserve_exact(n)?;
        self.memsize.small.try_reserve_exact(n)?;
        self.bytesize.try_reserve_exact(n)?;
        self.length.try_reserve_exact(n)?;
        self.subtype.try_reserve_exact(n)?;
        self.shape_id.try_reserve_exact(n)?;
        self.offset.try_reserve_exact(n)
    }

    /// Appends `other`, mapping its interned ids through `strings` and its offsets by
    /// `offset_base`. Fails when the columns cannot grow (then they are left unequal
    /// in length: the caller gives up on them).
    pub fn append(
        &mut self,
        other: &Columns,
        strings: &[u32],
        offset_base: u64,
    ) -> Result<(), TryReserveError> {
        let remap = |ids: &'_ [u32]| {
            ids.iter()
                .map(|&id| strings[id as usize])
                .collect::<Vec<_>>()
        };
        extend_lean(&mut self.address, other.address.iter().copied())?;
        extend_lean(&mut self.object_type, other.object_type.iter().copied())?;
        extend_lean(&mut self.flags, other.flags.iter().copied())?;
        extend_lean(&mut self.class, other.class.iter().copied())?;
        extend_lean(&mut self.file, remap(&other.file).into_iter())?;
        extend_lean(&mut self.line, other.line.iter().copied())?;
        extend_lean(&mut self.method, remap(&other.method).into_iter())?;
        extend_lean(&mut self.generation, other.generation.iter().copied())?;
        self.memsize.large.try_reserve(other.memsize.large.len())?;
        self.memsize.large.extend(
            other
                .memsize
                .large
                .iter()
                .map(|&(row, size)| (row + self.memsize.small.len() as u32, size)),
        );
        extend_lean(&mut self.memsize.small, other.memsize.small.iter().copied())?;
        extend_lean(&mut self.bytesize, other.bytesize.iter().copied())?;
        extend_lean(&mut self.length, other.length.iter().copied())?;
        extend_lean(&mut self.subtype, remap(&other.subtype).into_iter())?;
        extend_lean(&mut self.shape_id, other.shape_id.iter().copied())?;
        extend_lean(
            &mut self.offset,
            other.offset.iter().map(|&o| o + offset_base),
        )
    }

    pub fn shrink_to_fit(&mut self) {
        self.address.shrink_to_fit();
        self.object_type.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.class.shrink_to_fit();
        self.file.shrink_to_fit();
        self.line.shrink_to_fit();
        self.method.shrink_to_fit();
        self.generation.shrink_to_fit();
        self.memsize.small.shrink_to_fit();
        self.bytesize.shrink_to_fit();
        self.length.shrink_to_fit();
        self.subtype.shrink_to_fit();
        self.shape_id.shrink_to_fit();
        self.offset.shrink_to_fit();
    }
}

/// A ROOT record: a root category and the objects it marks.
#[derive(Debug, Clone)]
pub struct Root {
    pub name: u32,
    /// Range into `Heap::root_targets`.
    pub start: u32,
    pub end: u32,
}

/// A SHAPE record (Ruby 3.2+). Shapes are VM structs, not heap objects: they are never
/// counted as objects nor matched against object addresses.
#[derive(Debug, Clone)]
pub struct Shape {
    pub address: u64,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub depth: Option<u64>,
    pub shape_type: u32,
    pub edge_name: u32,
    pub memsize: u64,
}

/// What loading counted, for warnings and for the user to check nothing was lost.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub bytes: u64,
    pub lines: u64,
    pub blank_lines: u64,
    pub objects: u64,
    pub root_records: u64,
    pub shapes: u64,
    /// Lines that were not valid JSON as written but whose record was recovered.
    pub recovered_lines: u64,
    /// Line numbers of the first recovered lines, and why (for the warnings).
    pub recovered_samples: Vec<(u64, &'static str)>,
    /// The last line stops before its closing brace (the writer died mid-dump).
    pub truncated_last_line: Option<u64>,
    /// Records cut short before their end (not the last line).
    pub incomplete_lines: u64,
    pub overflowed_numbers: u64,
    pub unknown_types: u64,
    /// Records whose address an earlier record has.
    pub duplicate_addresses: u64,
    /// References to addresses that have no record (allocated during the dump, or a
    /// `since:` dump).
    pub dangling_references: u64,
    pub references: u64,
    pub gzip: bool,
    /// Written by Ruby 2.6/2.7 (anonymous classes carry a `#<Class:0x…>` name there),
    /// whose `\u` escapes are decimal.
    pub decimal_escapes: bool,
    /// The (gzip) stream ended early, with this error: the dump is cut short.
    pub stream_cut_short: Option<String>,
    /// The file's size when loading began and when it ended, if it shrank meanwhile.
    pub shrank_while_read: Option<(u64, u64)>,
}

/// Keeps this many example line numbers per kind of warning.
pub const SAMPLE_LIMIT: usize = 10;

/// One loaded heap dump.
#[derive(Debug)]
pub struct Heap {
    pub source: Source,
    pub columns: Columns,
    /// CSR: the references of the object at `row` are
    /// `ref_targets[ref_start[row]..ref_start[row + 1]]`.
    /// A target `t >= len()` is a dangling reference: `dangling[t - len()]`.
    pub ref_start: Vec<u32>,
    pub ref_targets: Vec<u32>,
    pub dangling: Vec<u64>,
    pub roots: Vec<Root>,
    pub root_targets: Vec<u32>,
    pub shapes: Vec<Shape>,
    pub strings: Interner,
    /// CLASS/MODULE address → `name` (or `real_class_name`) id.
    pub class_names: HashMap<u64, u32>,
    /// Singleton class or ICLASS address → its superclass, to find an object's real
    /// class.
    pub class_parents: HashMap<u64, u64>,
    pub index: AddressIndex,
    pub stats: LoadStats,
    /// SHAPE id → position in `shapes`, built on first use.
    pub shape_ids: OnceLock<HashMap<u64, usize>>,
}

impl Heap {
    /// Bytes the index holds in its columns, references and address index: nearly all
    /// of a loaded heap, which the binding reports to Ruby's GC. The graph caches
    /// built on first use (paths, dominators) come on top.
    pub fn heap_bytes(&self) -> usize {
        self.columns.heap_bytes()
            + vec_bytes(&self.ref_start)
            + vec_bytes(&self.ref_targets)
            + vec_bytes(&self.dangling)
            + vec_bytes(&self.root_targets)
            + vec_bytes(&self.roots)
            + vec_bytes(&self.shapes)
            + self.strings.heap_bytes()
            + (self.class_names.capacity() + self.class_parents.capacity()) * (8 + 8 + 1)
            + self.index.heap_bytes()
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The row of the object at `address`, if the dump has it.
    pub fn find(&self, address: u64) -> Option<usize> {
        self.index.find(&self.columns.address, address)
    }

    pub fn string(&self, id: u32) -> Option<&[u8]> {
        self.strings.get(id)
    }

    /// References of the object at `row` as row indices (dangling ones left out).
    pub fn referents(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.len() as u32;
        self.ref_targets[self.ref_start[row] as usize..self.ref_start[row + 1] as usize]
            .iter()
            .filter(move |&&t| t < n)
            .map(|&t| t as usize)
    }

    /// References of the object at `row` as addresses, in dump order, dangling ones included.
    pub fn reference_addresses(&self, row: usize) -> Vec<u64> {
        let n = self.len();
        self.ref_targets[self.ref_start[row] as usize..self.ref_start[row + 1] as usize]
            .iter()
            .map(|&t| {
                let t = t as usize;
                if t < n {
                    self.columns.address[t]
                } else {
                    self.dangling[t - n]
                }
            })
            .collect()
    }

    pub fn root_name(&self, root: &Root) -> &[u8] {
        self.string(root.name).unwrap_or(b"?")
    }

    /// Addresses a root record marks (dangling ones included).
    pub fn root_addresses(&self, root: &Root) -> Vec<u64> {
        let n = self.len();
        self.root_targets[root.start as usize..root.end as usize]
            .iter()
            .map(|&t| {
                let t = t as usize;
                if t < n {
                    self.columns.address[t]
                } else {
                    self.dangling[t - n]
                }
            })
            .collect()
    }

    /// The name of a class or module object, as Ruby would show it: its name, or
    /// `#<Class:0x…>` when it is anonymous.
    pub fn class_name_of_class(&self, class_address: u64) -> Option<String> {
        if class_address == 0 {
            return None;
        }
        if let Some(&id) = self.class_names.get(&class_address) {
            return self
                .string(id)
                .map(|s| String::from_utf8_lossy(s).into_owned());
        }
        match self.find(class_address) {
            Some(i) => match self.columns.object_type[i] {
                ObjectType::Module => Some(format!("#<Module:{}>", hex(class_address))),
                ObjectType::Class | ObjectType::IClass => {
                    let singleton =
                        self.columns.flags[i] & crate::parse::flag::SINGLETON as u16 != 0;
                    let kind = if singleton { "singleton " } else { "" };
                    Some(format!("#<{kind}Class:{}>", hex(class_address)))
                }
                _ => None,
            },
            None => None,
        }
    }

    /// The class name of the object at `row` (None for records without a class, such as IMEMO):
    /// its real class, past singleton classes and included modules.
    pub fn class_name(&self, row: usize) -> Option<String> {
        let t = self.columns.object_type[row];
        if t == ObjectType::Imemo {
            // Before 3.2 IMEMO carry a bogus class (0x8, 0x11); it means nothing.
            return None;
        }
        self.class_name_of_class(self.real_class(self.columns.class[row]))
    }

    /// The first class up the superclass chain that is neither a singleton class nor an
    /// ICLASS: what `obj.class` answers.
    pub fn real_class(&self, mut class: u64) -> u64 {
        for _ in 0..64 {
            match self.class_parents.get(&class) {
                Some(&parent) if parent != 0 => class = parent,
                _ => break,
            }
        }
        class
    }

    pub fn file(&self, row: usize) -> Option<&[u8]> {
        self.string(self.columns.file[row])
    }

    pub fn method(&self, row: usize) -> Option<&[u8]> {
        self.string(self.columns.method[row])
    }

    pub fn subtype(&self, row: usize) -> Option<&[u8]> {
        self.string(self.columns.subtype[row])
    }

    pub fn line(&self, row: usize) -> Option<u32> {
        absent_to_none(self.columns.line[row])
    }

    pub fn generation(&self, row: usize) -> Option<u32> {
        absent_to_none(self.columns.generation[row])
    }

    pub fn bytesize(&self, row: usize) -> Option<u32> {
        absent_to_none(self.columns.bytesize[row])
    }

    pub fn length(&self, row: usize) -> Option<u32> {
        absent_to_none(self.columns.length[row])
    }

    /// The row of the object's class, when the dump has it (not for IMEMO, whose class
    /// member is bogus before 3.2).
    pub fn class_row(&self, row: usize) -> Option<usize> {
        let class = self.columns.class[row];
        if class == 0 || self.columns.object_type[row] == ObjectType::Imemo {
            return None;
        }
        self.find(class)
    }

    /// Rows the roots mark, each root record's in order, duplicates kept.
    pub(crate) fn root_rows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.len() as u32;
        self.roots.iter().enumerate().flat_map(move |(r, root)| {
            self.root_targets[root.start as usize..root.end as usize]
                .iter()
                .filter(move |&&t| t < n)
                .map(move |&t| (r, t as usize))
        })
    }

    pub(crate) fn reference_rows_with_dangling(&self, row: usize) -> &[u32] {
        &self.ref_targets[self.ref_start[row] as usize..self.ref_start[row + 1] as usize]
    }

    /// The ivar names of an OBJECT in slot order, from its shape chain (Ruby 3.2+).
    pub fn ivar_names(&self, row: usize) -> Option<Vec<String>> {
        if self.columns.flags[row] & crate::parse::flag::TOO_COMPLEX_SHAPE as u16 != 0 {
            return None; // ivars live in a hash table, in no shape order
        }
        let shape_id = self.shape_id(row)?;
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

    pub fn shape_id(&self, row: usize) -> Option<u32> {
        let id = self.columns.shape_id[row];
        (id != crate::heap::ABSENT && !self.shapes.is_empty()).then_some(id)
    }

    /// Human-readable warnings about what loading recovered or could not use.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.stats;
        let path = self.source.display();
        let mut out = Vec::new();
        // A file cut while it was read ends in a broken last line: that line is no
        // recovered record, no dump cut short by its writer.
        let last_line_explained = s.shrank_while_read.is_some();
        if let Some((before, after)) = s.shrank_while_read {
            out.push(format!(
                "{path}: the file shrank from {before} to {after} bytes while it was read (truncated or rewritten by another process): the records read before the cut were kept"
            ));
        }
        let recovered_elsewhere = !(last_line_explained
            && s.recovered_lines == 1
            && s.recovered_samples.first().map(|&(line, _)| line) == Some(s.lines));
        if s.recovered_lines > 0 && recovered_elsewhere {
            let samples: Vec<String> = s
                .recovered_samples
                .iter()
                .take(3)
                .map(|(line, why)| format!("line {line} ({why})"))
                .collect();
            out.push(format!(
                "{path}: {} record(s) were not valid JSON and were recovered (Ruby 3.0/3.1 non-ASCII bug or unescaped quotes): {}{}",
                s.recovered_lines,
                samples.join(", "),
                if s.recovered_lines > 3 { ", …" } else { "" }
            ));
        }
        if let Some(why) = &s.stream_cut_short {
            out.push(format!(
                "{path}: the gzip stream ends early ({why}): the {} records before the cut were kept",
                s.objects + s.root_records + s.shapes
            ));
        }
        if let (Some(line), false) = (s.truncated_last_line, last_line_explained) {
            out.push(format!(
                "{path}: line {line}: the last line is truncated (the dump was cut short); its record was kept as far as it goes"
            ));
        }
        if s.incomplete_lines > 0 {
            out.push(format!(
                "{path}: {} record(s) stop before their end; kept as far as they go",
                s.incomplete_lines
            ));
        }
        if s.overflowed_numbers > 0 {
            out.push(format!(
                "{path}: {} number(s) do not fit in 64 bits and were left out",
                s.overflowed_numbers
            ));
        }
        if s.unknown_types > 0 {
            out.push(format!(
                "{path}: {} record(s) have a type heapdiff does not know; kept as UNKNOWN",
                s.unknown_types
            ));
        }
        if s.duplicate_addresses > 0 {
            out.push(format!(
                "{path}: {} record(s) repeat the address of an earlier record; lookups find the last",
                s.duplicate_addresses
            ));
        }
        // A few dangling references are normal (objects allocated while dumping); many,
        // or a dump without roots, mean a partial `since:` dump.
        if s.dangling_references > 0
            && (s.root_records == 0 || s.dangling_references * 100 > s.references)
        {
            out.push(format!(
                "{path}: {} reference(s) point to addresses with no record (objects allocated during the dump, or a partial since: dump)",
                s.dangling_references
            ));
        }
        out
    }
}

fn absent_to_none(v: u32) -> Option<u32> {
    (v != ABSENT).then_some(v)
}

pub fn hex(address: u64) -> String {
    format!("0x{address:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memsizes_over_4_gib_are_kept_whole_across_appends() {
        let huge = 5u64 << 30;
        let mut first = Columns::default();
        let mut second = Columns::default();
        for (columns, sizes) in [
            (&mut first, [40, huge, u64::from(u32::MAX)]),
            (&mut second, [huge + 1, 80, 0]),
        ] {
            for size in sizes {
                columns.address.push(0);
                columns.memsize.push(size);
            }
        }
        let mut all = Columns::default();
        all.append(&first, &[0], 0).unwrap();
        all.append(&second, &[0], 0).unwrap();
        let sizes: Vec<u64> = (0..all.memsize.len()).map(|i| all.memsize.get(i)).collect();
        assert_eq!(sizes, [40, huge, u64::from(u32::MAX), huge + 1, 80, 0]);
    }
}
