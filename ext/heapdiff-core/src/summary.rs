//! What one heap holds: object counts and memsizes by type, class, allocation site and
//! file, and the string values that more than one STRING object holds. One pass over
//! the columns, then one front-to-back read of the STRING lines for their values.

use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;

use crate::error::Error;
use crate::heap::{Heap, ABSENT};
use crate::intern::NO_STRING;
use crate::object_type::ObjectType;
use crate::parse::{parse_line, unescape_with};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub memsize: u64,
}

impl Tally {
    fn add(&mut self, memsize: u64) {
        self.count += 1;
        self.memsize += memsize;
    }
}

/// A string value held by more than one STRING object.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub value: Vec<u8>,
    /// The encoding the dump names for the first of them.
    pub encoding: Option<Vec<u8>>,
    pub tally: Tally,
}

/// Where objects were allocated: file and line (a line may be missing). Not a
/// `trend::Site`, which is a whole allocation site (type, class, file, line) over time.
pub type Location = (Vec<u8>, Option<u32>);

/// Every table is unsorted; the caller ranks it as it needs.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub total: Tally,
    pub by_type: Vec<(ObjectType, Tally)>,
    /// Class name, else DATA struct / IMEMO type, else type name: what the object is.
    pub by_class: Vec<(String, Tally)>,
    /// (file, line); None for objects allocated while tracing was off.
    pub by_location: Vec<(Option<Location>, Tally)>,
    pub by_file: Vec<(Option<Vec<u8>>, Tally)>,
    pub duplicates: Vec<Duplicate>,
}

/// Counts and memsizes (bytes) of `heap`'s objects by type, class, allocation site
/// and file, and the string values more than one STRING object holds (read back from
/// the dump: one front-to-back pass over the STRING lines).
///
/// Errors: `Error::Io` naming the dump when it cannot be read again (moved, deleted,
/// changed since the load); `Error::Cancelled` when `cancel` was set from another
/// thread.
pub fn summarize(heap: &Heap, cancel: Option<&AtomicBool>) -> Result<Summary, Error> {
    let c = &heap.columns;
    let mut total = Tally::default();
    let mut by_type: HashMap<ObjectType, Tally> = HashMap::new();
    let mut by_class: HashMap<String, Tally> = HashMap::new();
    // Interned ids: file names are compared as numbers until the end.
    let mut by_location: HashMap<(u32, u32), Tally> = HashMap::new();
    let mut by_file: HashMap<u32, Tally> = HashMap::new();
    let mut class_labels: HashMap<(u64, u32, ObjectType), String> = HashMap::new();
    let mut strings = Vec::new();
    for i in 0..heap.len() {
        if i % 65536 == 0 && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        let memsize = c.memsize.get(i);
        let object_type = c.object_type[i];
        total.add(memsize);
        by_type.entry(object_type).or_default().add(memsize);
        // Many objects share a class: name each (class, subtype, type) once.
        let label = class_labels
            .entry((c.class[i], c.subtype[i], object_type))
            .or_insert_with(|| {
                heap.class_name(i)
                    .or_else(|| heap.subtype(i).map(|s| String::from_utf8_lossy(s).into()))
                    .unwrap_or_else(|| object_type.name().to_string())
            });
        match by_class.get_mut(label.as_str()) {
            Some(tally) => tally.add(memsize),
            None => {
                let mut tally = Tally::default();
                tally.add(memsize);
                by_class.insert(label.clone(), tally);
            }
        }
        // Without a file there is no site, whatever the line says.
        let line = if c.file[i] == NO_STRING {
            ABSENT
        } else {
            c.line[i]
        };
        by_location
            .entry((c.file[i], line))
            .or_default()
            .add(memsize);
        by_file.entry(c.file[i]).or_default().add(memsize);
        if object_type == ObjectType::String {
            strings.push(i);
        }
    }

    let duplicates = duplicate_strings(heap, &strings, cancel)?;
    let file = |id: u32| heap.string(id).map(<[u8]>::to_vec);
    Ok(Summary {
        total,
        by_type: by_type.into_iter().collect(),
        by_class: by_class.into_iter().collect(),
        by_location: by_location
            .into_iter()
            .map(|((f, line), tally)| {
                let line = (line != ABSENT).then_some(line);
                (file(f).map(|f| (f, line)), tally)
            })
            .collect(),
        by_file: by_file.into_iter().map(|(f, t)| (file(f), t)).collect(),
        duplicates,
    })
}

/// Reads the values of the STRING rows back from the dump (one pass, in file order) and
/// keeps those that more than one object holds. Values are compared as bytes.
fn duplicate_strings(
    heap: &Heap,
    rows: &[usize],
    cancel: Option<&AtomicBool>,
) -> Result<Vec<Duplicate>, Error> {
    let offsets: Vec<u64> = rows.iter().map(|&i| heap.columns.offset[i]).collect();
    let mut seen: HashMap<Vec<u8>, (Tally, Option<Vec<u8>>)> = HashMap::new();
    let mut refs = Vec::new();
    let mut interrupted = false;
    heap.source.read_lines(&offsets, |k, line| {
        if interrupted || (k % 65536 == 0 && cancel.is_some_and(|c| c.load(Ordering::Relaxed))) {
            interrupted = true;
            return;
        }
        refs.clear();
        // A line that no longer parses was checked at load; it holds no value to count.
        let Ok(record) = parse_line(line, &mut refs) else {
            return;
        };
        let Some(span) = record.value else {
            return;
        };
        let value = unescape_with(span.of(line), heap.stats.decimal_escapes);
        let memsize = heap.columns.memsize.get(rows[k]);
        match seen.get_mut(&value) {
            Some((tally, _)) => tally.add(memsize),
            None => {
                let encoding = record.encoding.map(|e| e.of(line).to_vec());
                let mut tally = Tally::default();
                tally.add(memsize);
                seen.insert(value, (tally, encoding));
            }
        }
    })?;
    if interrupted {
        return Err(Error::Cancelled);
    }
    Ok(seen
        .into_iter()
        .filter(|(_, (tally, _))| tally.count > 1)
        .map(|(value, (tally, encoding))| Duplicate {
            value,
            encoding,
            tally,
        })
        .collect())
}
