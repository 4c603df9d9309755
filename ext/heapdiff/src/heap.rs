//! `Heapdiff::Heap`: one loaded dump. Ruby sees rows as plain arrays built on demand;
//! no Ruby object exists per heap object unless asked for.

use std::cell::RefCell;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;

use heapdiff_core::graph::Path;
use heapdiff_core::record::{self, flag, parse_line, Record};
use heapdiff_core::{load, Heap, LoadOptions};
use magnus::{
    function, method, prelude::*, Error, IntoValue, RArray, RHash, RModule, RString, Ruby, Value,
};

use crate::errors::{error, load_error};
use crate::gvl::{without_gvl, without_gvl_serial};

/// A heap (None once closed: `Heap#close`; only touched with the GVL held) and its
/// path, which stays readable after the heap is closed.
#[magnus::wrap(class = "Heapdiff::Heap", free_immediately, size)]
pub struct HeapHandle {
    loaded: RefCell<Option<Loaded>>,
    path: String,
}

/// The heap, and the bytes reported to Ruby's GC for it: the GC counts them as
/// allocated, so that dropped heaps lead to a collection (and are freed) like any
/// large Ruby allocation would. Reported back as freed when this drops.
struct Loaded {
    heap: Arc<Heap>,
    gc_bytes: isize,
    _give_back: GiveBack,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        adjust_gc_memory(-self.gc_bytes);
    }
}

/// Tells Ruby's GC about memory it did not allocate (`rb_gc_adjust_memory_usage`).
/// Called with the GVL held: when a heap is loaded, or freed (closed, or swept by the
/// GC itself, where Ruby allows it: it only lowers a counter).
fn adjust_gc_memory(bytes: isize) {
    if bytes != 0 {
        // SAFETY: a plain counter update in Ruby's GC; the GVL is held.
        unsafe { rb_sys::rb_gc_adjust_memory_usage(bytes as rb_sys::ssize_t) };
    }
}

impl HeapHandle {
    /// A freshly loaded heap, whose memory is reported to Ruby's GC.
    fn loaded(heap: Heap) -> HeapHandle {
        let gc_bytes = isize::try_from(heap.heap_bytes()).unwrap_or(isize::MAX);
        adjust_gc_memory(gc_bytes);
        HeapHandle::holding(Arc::new(heap), gc_bytes)
    }

    /// Another handle on a heap that something else holds (and has reported).
    pub fn new(heap: Arc<Heap>) -> HeapHandle {
        HeapHandle::holding(heap, 0)
    }

    fn holding(heap: Arc<Heap>, gc_bytes: isize) -> HeapHandle {
        HeapHandle {
            path: heap.source.display(),
            loaded: RefCell::new(Some(Loaded {
                heap,
                gc_bytes,
                _give_back: GiveBack,
            })),
        }
    }

    /// The heap; raises Heapdiff::Error once it is closed.
    pub fn heap(&self, ruby: &Ruby) -> Result<Arc<Heap>, Error> {
        match &*self.loaded.borrow() {
            Some(loaded) => Ok(loaded.heap.clone()),
            None => Err(error(ruby, "Error", "heapdiff: the heap is closed".into())),
        }
    }

    /// Frees the heap now (its memory goes once nothing else, a Report, holds it).
    fn close(&self) {
        let loaded = self.loaded.borrow_mut().take();
        drop(loaded);
    }

    fn is_closed(&self) -> bool {
        self.loaded.borrow().is_none()
    }
}

/// Dropped after the heap (fields drop in order): gives its memory back.
pub struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        crate::memory::give_back();
    }
}

pub fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Heap", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("_load", function!(load_heap, 1))?;
    class.define_method("close", method!(HeapHandle::close, 0))?;
    class.define_method("closed?", method!(HeapHandle::is_closed, 0))?;
    class.define_method("size", method!(HeapHandle::size, 0))?;
    class.define_method("path", method!(HeapHandle::path, 0))?;
    class.define_method("warnings", method!(HeapHandle::warnings, 0))?;
    class.define_method("_stats", method!(HeapHandle::stats, 0))?;
    class.define_method("_roots", method!(HeapHandle::roots, 0))?;
    class.define_method("_row_of", method!(HeapHandle::row_of, 1))?;
    class.define_method("_row", method!(HeapHandle::row, 1))?;
    class.define_method("_references", method!(HeapHandle::references, 1))?;
    class.define_method("_value", method!(HeapHandle::value, 1))?;
    class.define_method("_details", method!(HeapHandle::details, 1))?;
    class.define_method("_path", method!(HeapHandle::path_to_root, 2))?;
    class.define_method("_paths", method!(HeapHandle::paths_to_root, 3))?;
    class.define_method("_retainers", method!(HeapHandle::retainers, 2))?;
    class.define_method("_referent_rows", method!(HeapHandle::referent_rows, 1))?;
    class.define_method("_dominator", method!(HeapHandle::dominator, 2))?;
    class.define_method("_retained_size", method!(HeapHandle::retained_size, 2))?;
    class.define_method("_edge_label", method!(HeapHandle::edge_label, 2))?;
    class.define_method("_own_name", method!(HeapHandle::own_name, 1))?;
    Ok(())
}

/// A Ruby String's bytes, whatever its encoding: paths are bytes on Unix, and need
/// not be UTF-8 (a non-UTF-8 file name, a non-ASCII directory under LANG=C).
pub fn bytes(string: RString) -> Vec<u8> {
    // SAFETY: the bytes are copied before any Ruby call can move or free the string.
    unsafe { string.as_slice() }.to_vec()
}

/// The bytes of each String in `strings` (own paths: see `bytes`).
pub fn byte_strings(strings: RArray) -> Result<Vec<Vec<u8>>, Error> {
    strings
        .into_iter()
        .map(|s| RString::try_convert(s).map(bytes))
        .collect()
}

pub fn path_buf(string: RString) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes(string)))
}

fn load_heap(ruby: &Ruby, path: RString) -> Result<HeapHandle, Error> {
    let path = path_buf(path);
    let heap = without_gvl(ruby, |cancel| {
        let result = load(
            &path,
            LoadOptions {
                cancel: Some(cancel),
                progress: None,
            },
        );
        if result.is_err() {
            // Interrupted or failed: what the load had built is freed by now.
            crate::memory::give_back();
        }
        result
    })?
    .map_err(|e| load_error(ruby, e))?;
    Ok(HeapHandle::loaded(heap))
}

/// Bytes from the dump as a UTF-8 tagged String (paths and names are UTF-8 in
/// practice; invalid bytes stay as they are, for Ruby to judge).
pub fn utf8(ruby: &Ruby, bytes: &[u8]) -> RString {
    ruby.enc_str_new(bytes, ruby.utf8_encoding())
}

fn opt_utf8(ruby: &Ruby, bytes: Option<&[u8]>) -> Option<RString> {
    bytes.map(|b| utf8(ruby, b))
}

impl HeapHandle {
    /// The heap, once `row` is checked to be one of its rows.
    fn check(&self, ruby: &Ruby, row: usize) -> Result<Arc<Heap>, Error> {
        let heap = self.heap(ruby)?;
        if row < heap.len() {
            Ok(heap)
        } else {
            Err(Error::new(
                ruby.exception_index_error(),
                format!("row {row} out of range (heap has {})", heap.len()),
            ))
        }
    }

    fn size(ruby: &Ruby, rb_self: &Self) -> Result<usize, Error> {
        Ok(rb_self.heap(ruby)?.len())
    }

    fn path(&self) -> String {
        self.path.clone()
    }

    fn warnings(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, Error> {
        Ok(rb_self.heap(ruby)?.warnings())
    }

    fn stats(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let heap = rb_self.heap(ruby)?;
        let s = &heap.stats;
        let hash = ruby.hash_new();
        hash.aset(ruby.to_symbol("bytes"), s.bytes)?;
        hash.aset(ruby.to_symbol("lines"), s.lines)?;
        hash.aset(ruby.to_symbol("blank_lines"), s.blank_lines)?;
        hash.aset(ruby.to_symbol("objects"), s.objects)?;
        hash.aset(ruby.to_symbol("root_records"), s.root_records)?;
        hash.aset(ruby.to_symbol("shapes"), s.shapes)?;
        hash.aset(ruby.to_symbol("recovered_lines"), s.recovered_lines)?;
        let samples: Vec<u64> = s.recovered_samples.iter().map(|&(line, _)| line).collect();
        hash.aset(ruby.to_symbol("recovered_line_numbers"), samples)?;
        hash.aset(ruby.to_symbol("truncated_last_line"), s.truncated_last_line)?;
        hash.aset(ruby.to_symbol("incomplete_lines"), s.incomplete_lines)?;
        hash.aset(ruby.to_symbol("overflowed_numbers"), s.overflowed_numbers)?;
        hash.aset(ruby.to_symbol("unknown_types"), s.unknown_types)?;
        hash.aset(ruby.to_symbol("duplicate_addresses"), s.duplicate_addresses)?;
        hash.aset(ruby.to_symbol("references"), s.references)?;
        hash.aset(ruby.to_symbol("dangling_references"), s.dangling_references)?;
        hash.aset(ruby.to_symbol("gzip"), s.gzip)?;
        Ok(hash)
    }

    /// `[[root name, [address, …]], …]`
    fn roots(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let heap = rb_self.heap(ruby)?;
        let out = ruby.ary_new_capa(heap.roots.len());
        for root in &heap.roots {
            let pair = ruby.ary_new_capa(2);
            pair.push(utf8(ruby, heap.root_name(root)))?;
            pair.push(heap.root_addresses(root))?;
            out.push(pair)?;
        }
        Ok(out)
    }

    fn row_of(ruby: &Ruby, rb_self: &Self, address: u64) -> Result<Option<usize>, Error> {
        Ok(rb_self.heap(ruby)?.find(address))
    }

    /// `[address, type, class_name, file, line, method, generation, memsize, bytesize,
    ///   length, subtype, flags, shape_id]`
    fn row(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<RArray, Error> {
        let heap = rb_self.check(ruby, i)?;
        let c = &heap.columns;
        let flags = u32::from(c.flags[i]);
        let names = ruby.ary_new();
        for (name, bit) in flag::NAMES {
            if flags & bit != 0 && *name != "complex_shape" {
                names.push(ruby.to_symbol(name))?;
            }
        }
        let values: [Value; 13] = [
            c.address[i].into_value_with(ruby),
            c.object_type[i].name().into_value_with(ruby),
            heap.class_name(i).into_value_with(ruby),
            opt_utf8(ruby, heap.file(i)).into_value_with(ruby),
            heap.line(i).into_value_with(ruby),
            opt_utf8(
                ruby,
                heap.method(i)
                    .map(|m| record::unescape_with(m, heap.stats.decimal_escapes))
                    .as_deref(),
            )
            .into_value_with(ruby),
            heap.generation(i).into_value_with(ruby),
            c.memsize.get(i).into_value_with(ruby),
            heap.bytesize(i).into_value_with(ruby),
            heap.length(i).into_value_with(ruby),
            opt_utf8(ruby, heap.subtype(i)).into_value_with(ruby),
            names.into_value_with(ruby),
            (c.shape_id[i] != heapdiff_core::heap::ABSENT)
                .then_some(c.shape_id[i])
                .into_value_with(ruby),
        ];
        Ok(ruby.ary_from_iter(values))
    }

    fn references(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Vec<u64>, Error> {
        Ok(rb_self.check(ruby, i)?.reference_addresses(i))
    }

    /// Reads row `i`'s line back, without the GVL (the first read of a gzip dump
    /// inflates it to a temp file).
    fn read_line(ruby: &Ruby, heap: &Arc<Heap>, i: usize) -> Result<Vec<u8>, Error> {
        let shared = heap.clone();
        without_gvl_serial(ruby, move |_| {
            shared.source.read_line(shared.columns.offset[i])
        })?
        .map_err(|e| error(ruby, "FileError", format!("{}: {e}", heap.source.display())))
    }

    /// Reads the record of row `i` again from the dump, for what the index does not keep.
    fn reread(ruby: &Ruby, heap: &Arc<Heap>, i: usize) -> Result<(Vec<u8>, Record), Error> {
        let line = Self::read_line(ruby, heap, i)?;
        let mut refs = Vec::new();
        let record = parse_line(&line, &mut refs).map_err(|e| {
            let path = heap.source.display();
            error(
                ruby,
                "ParseError",
                format!("{path}: the record changed: {}", e.0),
            )
        })?;
        Ok((line, record))
    }

    /// The string value of a STRING/SYMBOL/FLOAT, read back from the dump, in the
    /// encoding the dump names (binary when it names none, as for ASCII-8BIT).
    fn value(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Option<RString>, Error> {
        let heap = &rb_self.check(ruby, i)?;
        let (line, record) = Self::reread(ruby, heap, i)?;
        Ok(record.value.map(|span| {
            let bytes = record::unescape_with(span.of(&line), heap.stats.decimal_escapes);
            let encoding = record
                .encoding
                .and_then(|e| std::str::from_utf8(e.of(&line)).ok())
                .and_then(|name| ruby.find_encoding(name));
            match encoding {
                Some(encoding) => ruby.enc_str_new(&bytes, encoding),
                None => ruby.str_from_slice(&bytes),
            }
        }))
    }

    /// Every member of the record that the index does not keep, read back from the dump.
    fn details(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<RHash, Error> {
        let (line, r) = Self::reread(ruby, &rb_self.check(ruby, i)?, i)?;
        let hash = ruby.hash_new();
        let text = |s: Option<record::Span>| s.map(|s| utf8(ruby, &record::unescape(s.of(&line))));
        let pairs: [(&str, Value); 15] = [
            ("bytesize", r.bytesize.into_value_with(ruby)),
            ("encoding", text(r.encoding).into_value_with(ruby)),
            ("coderange", text(r.coderange).into_value_with(ruby)),
            ("capacity", r.capacity.into_value_with(ruby)),
            ("fd", r.fd.into_value_with(ruby)),
            ("slot_size", r.slot_size.into_value_with(ruby)),
            ("variation_count", r.variation_count.into_value_with(ruby)),
            ("name", text(r.name).into_value_with(ruby)),
            (
                "real_class_name",
                text(r.real_class_name).into_value_with(ruby),
            ),
            ("superclass", r.superclass.into_value_with(ruby)),
            ("default", r.default_proc.into_value_with(ruby)),
            ("receiver_class", r.receiver_class.into_value_with(ruby)),
            ("mid", text(r.mid).into_value_with(ruby)),
            ("called_id", text(r.called_id).into_value_with(ruby)),
            ("age", r.age.into_value_with(ruby)),
        ];
        for (key, value) in pairs {
            if !value.is_nil() {
                hash.aset(ruby.to_symbol(key), value)?;
            }
        }
        if let Some(id) = r.object_id {
            hash.aset(ruby.to_symbol("object_id"), id)?;
        }
        Ok(hash)
    }

    /// Runs a query that needs the BFS tree without the GVL: the first one builds the
    /// tree in parallel (a pool of its own); later ones need no pool.
    fn path_query<R: Send>(
        ruby: &Ruby,
        heap: Arc<Heap>,
        class_edges: bool,
        query: impl Fn(&Heap) -> R + Send + Sync,
    ) -> Result<R, Error> {
        let built = heap.has_root_tree(class_edges);
        let run = move |_: &_| query(&heap);
        if built {
            without_gvl_serial(ruby, run)
        } else {
            without_gvl(ruby, run)
        }
    }

    /// `[root name, [[row, label], …]]`, or nil when no root reaches the object. The
    /// first query builds the breadth-first tree, without the GVL.
    fn path_to_root(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        class_edges: bool,
    ) -> Result<Option<RArray>, Error> {
        let heap = rb_self.check(ruby, i)?;
        let path = Self::path_query(ruby, heap, class_edges, move |heap| {
            heap.path_to_root(i, class_edges)
        })?;
        path.map(|p| path_array(ruby, &p)).transpose()
    }

    fn paths_to_root(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        limit: usize,
        class_edges: bool,
    ) -> Result<RArray, Error> {
        let heap = rb_self.check(ruby, i)?;
        let paths = Self::path_query(ruby, heap, class_edges, move |heap| {
            heap.paths_to_root(i, limit, class_edges)
        })?;
        let out = ruby.ary_new_capa(paths.len());
        for p in &paths {
            out.push(path_array(ruby, p)?)?;
        }
        Ok(out)
    }

    fn retainers(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        class_edges: bool,
    ) -> Result<Vec<usize>, Error> {
        let heap = rb_self.check(ruby, i)?;
        without_gvl_serial(ruby, move |_| heap.retainers(i, class_edges))
    }

    fn referent_rows(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Vec<usize>, Error> {
        Ok(rb_self.check(ruby, i)?.referents(i).collect())
    }

    fn dominator(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        class_edges: bool,
    ) -> Result<Option<usize>, Error> {
        let heap = rb_self.check(ruby, i)?;
        without_gvl_serial(ruby, move |_| heap.dominator(i, class_edges))
    }

    fn retained_size(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        class_edges: bool,
    ) -> Result<u64, Error> {
        let heap = rb_self.check(ruby, i)?;
        without_gvl_serial(ruby, move |_| heap.retained_size(i, class_edges))
    }

    /// The name of a CLASS or MODULE object itself (not of its class).
    fn own_name(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Option<String>, Error> {
        let heap = rb_self.check(ruby, i)?;
        Ok(heap.class_name_of_class(heap.columns.address[i]))
    }

    fn edge_label(
        ruby: &Ruby,
        rb_self: &Self,
        from: usize,
        to: usize,
    ) -> Result<Option<String>, Error> {
        rb_self.check(ruby, from)?;
        Ok(rb_self.check(ruby, to)?.edge_label(from, to))
    }
}

fn path_array(ruby: &Ruby, path: &Path) -> Result<RArray, Error> {
    let steps = ruby.ary_new_capa(path.steps.len());
    for step in &path.steps {
        steps.push((step.row, step.label.clone()))?;
    }
    let out = ruby.ary_new_capa(2);
    out.push(path.root.clone())?;
    out.push(steps)?;
    Ok(out)
}
