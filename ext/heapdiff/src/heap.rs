//! `Heapdiff::Heap`: one loaded dump. Ruby sees rows as plain arrays built on demand;
//! no Ruby object exists per heap object unless asked for.

use std::sync::Arc;

use heapdiff_core::graph::Path;
use heapdiff_core::parse::{self, flag, parse_line, Record};
use heapdiff_core::{load, HeapGraph, LoadOptions};
use magnus::{
    function, method, prelude::*, Error, IntoValue, RArray, RHash, RModule, RString, Ruby, Value,
};

use crate::convert::{check_index, opt_utf8, path_buf, utf8};
use crate::errors::{core_error, parse_error};
use crate::gvl::{without_gvl, without_gvl_serial};
use crate::memory::{Held, Tracked};

/// A heap (None once closed: `Heap#close`; only touched with the GVL held) and its
/// path, which stays readable after the heap is closed. Its memory is reported to
/// Ruby's GC through `Tracked`.
#[magnus::wrap(class = "Heapdiff::Heap", free_immediately, size)]
pub struct HeapHandle {
    loaded: Held,
    path: String,
}

impl HeapHandle {
    /// A freshly loaded heap, whose memory is reported to Ruby's GC.
    fn loaded(graph: HeapGraph) -> HeapHandle {
        HeapHandle::new(Tracked::new(Arc::new(graph)))
    }

    /// A handle on a tracked heap (another handle may share it).
    pub fn new(graph: Arc<Tracked>) -> HeapHandle {
        HeapHandle {
            path: graph.heap().source.display(),
            loaded: Held::new(Some(graph)),
        }
    }

    /// The heap and its graph; raises Heapdiff::Error once it is closed.
    pub fn graph(&self, ruby: &Ruby) -> Result<Arc<Tracked>, Error> {
        self.loaded.get(ruby, "heap")
    }

    /// Frees the heap now (its memory goes once nothing else, a Report, holds it).
    fn close(&self) {
        self.loaded.close();
    }

    fn is_closed(&self) -> bool {
        self.loaded.is_closed()
    }
}

/// The fields of `Heap#_row`, in order: the one definition of that array's layout.
/// Ruby reads it as `Heapdiff::Heap::ROW_FIELDS` (`Heapdiff::Object` names its
/// instance variables after it). `address_int` is the address as an Integer;
/// `bytesize_column` is the bytesize the index kept (nil past 4 GiB: read it back).
const ROW_FIELDS: [&str; 13] = [
    "address_int",
    "type",
    "class_name",
    "file",
    "line",
    "method",
    "generation",
    "memsize",
    "bytesize_column",
    "length",
    "subtype",
    "flags",
    "shape_id",
];

pub fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Heap", ruby.class_object())?;
    class.undef_default_alloc_func();
    let fields = ruby.ary_from_iter(ROW_FIELDS.iter().map(|name| ruby.to_symbol(name)));
    fields.freeze();
    class.const_set("ROW_FIELDS", fields)?;
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
    class.define_method("_own_name", method!(HeapHandle::own_name, 1))?;
    crate::names::init(class)?;
    Ok(())
}

fn load_heap(ruby: &Ruby, path: RString) -> Result<HeapHandle, Error> {
    let path = path_buf(path);
    let heap = without_gvl(ruby, |cancel| {
        let result = load(
            &path,
            LoadOptions {
                cancel: Some(cancel),
            },
        );
        if result.is_err() {
            // Interrupted or failed: what the load had built is freed by now.
            crate::memory::give_back();
        }
        result
    })?
    .map_err(|e| core_error(ruby, e))?;
    Ok(HeapHandle::loaded(HeapGraph::new(heap)))
}

impl HeapHandle {
    /// The heap and its graph, once `row` is checked to be one of its rows.
    fn check(&self, ruby: &Ruby, row: usize) -> Result<Arc<Tracked>, Error> {
        let graph = self.graph(ruby)?;
        check_index(ruby, "row", row, graph.heap().len())?;
        Ok(graph)
    }

    fn size(ruby: &Ruby, rb_self: &Self) -> Result<usize, Error> {
        Ok(rb_self.graph(ruby)?.heap().len())
    }

    fn path(&self) -> String {
        self.path.clone()
    }

    fn warnings(ruby: &Ruby, rb_self: &Self) -> Result<Vec<String>, Error> {
        Ok(rb_self.graph(ruby)?.heap().warnings())
    }

    fn stats(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let graph = rb_self.graph(ruby)?;
        let s = &graph.heap().stats;
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
        let graph = rb_self.graph(ruby)?;
        let heap = graph.heap();
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
        Ok(rb_self.graph(ruby)?.heap().find(address))
    }

    /// The values of `row`, in the order of `ROW_FIELDS`.
    fn row(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<RArray, Error> {
        let graph = rb_self.check(ruby, row)?;
        let heap = graph.heap();
        let c = &heap.columns;
        let flags = u32::from(c.flags[row]);
        let names = ruby.ary_new();
        for (name, bit) in flag::NAMES {
            if flags & bit != 0 && *name != "complex_shape" {
                names.push(ruby.to_symbol(name))?;
            }
        }
        let values: [Value; ROW_FIELDS.len()] = [
            c.address[row].into_value_with(ruby),
            c.object_type[row].name().into_value_with(ruby),
            heap.class_name(row).into_value_with(ruby),
            opt_utf8(ruby, heap.file(row)).into_value_with(ruby),
            heap.line(row).into_value_with(ruby),
            opt_utf8(
                ruby,
                heap.method(row)
                    .map(|m| parse::unescape_with(m, heap.stats.decimal_escapes))
                    .as_deref(),
            )
            .into_value_with(ruby),
            heap.generation(row).into_value_with(ruby),
            c.memsize.get(row).into_value_with(ruby),
            heap.bytesize(row).into_value_with(ruby),
            heap.length(row).into_value_with(ruby),
            opt_utf8(ruby, heap.subtype(row)).into_value_with(ruby),
            names.into_value_with(ruby),
            (c.shape_id[row] != heapdiff_core::heap::ABSENT)
                .then_some(c.shape_id[row])
                .into_value_with(ruby),
        ];
        Ok(ruby.ary_from_iter(values))
    }

    fn references(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<Vec<u64>, Error> {
        Ok(rb_self.check(ruby, row)?.heap().reference_addresses(row))
    }

    /// Reads the line of `row` back, without the GVL (the first read of a gzip dump
    /// inflates it to a temp file).
    fn read_line(ruby: &Ruby, graph: &Arc<Tracked>, row: usize) -> Result<Vec<u8>, Error> {
        let shared = graph.clone();
        without_gvl_serial(ruby, move |_| {
            let heap = shared.heap();
            heap.source.read_line(heap.columns.offset[row])
        })?
        .map_err(|e| core_error(ruby, e))
    }

    /// Reads the record of `row` again from the dump, for what the index does not keep.
    fn reread(ruby: &Ruby, graph: &Arc<Tracked>, row: usize) -> Result<(Vec<u8>, Record), Error> {
        let line = Self::read_line(ruby, graph, row)?;
        let mut refs = Vec::new();
        let record = parse_line(&line, &mut refs).map_err(|e| {
            let path = graph.heap().source.display();
            // The index keeps no line numbers, only offsets: `#line` is nil.
            parse_error(
                ruby,
                format!("{path}: the record changed: {}", e.reason().unwrap_or("?")),
                path,
                None,
            )
        })?;
        Ok((line, record))
    }

    /// The string value of a STRING/SYMBOL/FLOAT, read back from the dump, in the
    /// encoding the dump names (binary when it names none, as for ASCII-8BIT).
    fn value(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<Option<RString>, Error> {
        let graph = rb_self.check(ruby, row)?;
        let heap = graph.heap();
        let (line, record) = Self::reread(ruby, &graph, row)?;
        Ok(record.value.map(|span| {
            let bytes = parse::unescape_with(span.of(&line), heap.stats.decimal_escapes);
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
    fn details(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<RHash, Error> {
        let (line, r) = Self::reread(ruby, &rb_self.check(ruby, row)?, row)?;
        let hash = ruby.hash_new();
        let text = |s: Option<parse::Span>| s.map(|s| utf8(ruby, &parse::unescape(s.of(&line))));
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
        graph: Arc<Tracked>,
        class_edges: bool,
        query: impl Fn(&HeapGraph) -> R + Send + Sync,
    ) -> Result<R, Error> {
        let built = graph.has_root_tree(class_edges);
        let run = |_: &_| query(&graph);
        let result = if built {
            without_gvl_serial(ruby, run)
        } else {
            without_gvl(ruby, run)
        };
        graph.sync();
        result
    }

    /// Runs a query that may build the dominator tree or the reverse graph without the
    /// GVL, then reports what it built to Ruby's GC.
    fn graph_query<R: Send>(
        ruby: &Ruby,
        graph: Arc<Tracked>,
        query: impl Fn(&HeapGraph) -> R + Send + Sync,
    ) -> Result<R, Error> {
        let result = without_gvl_serial(ruby, |_| query(&graph));
        graph.sync();
        result
    }

    /// `[root name, [[row, label, [kind, expr, context] or nil], …]]`, or nil when no root reaches the object. The
    /// first query builds the breadth-first tree, without the GVL.
    fn path_to_root(
        ruby: &Ruby,
        rb_self: &Self,
        row: usize,
        class_edges: bool,
    ) -> Result<Option<RArray>, Error> {
        let graph = rb_self.check(ruby, row)?;
        let path = Self::path_query(ruby, graph, class_edges, move |graph| {
            graph.path_to_root(row, class_edges)
        })?;
        path.map(|p| path_array(ruby, &p)).transpose()
    }

    fn paths_to_root(
        ruby: &Ruby,
        rb_self: &Self,
        row: usize,
        limit: usize,
        class_edges: bool,
    ) -> Result<RArray, Error> {
        let graph = rb_self.check(ruby, row)?;
        let paths = Self::path_query(ruby, graph, class_edges, move |graph| {
            graph.paths_to_root(row, limit, class_edges)
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
        row: usize,
        class_edges: bool,
    ) -> Result<Vec<usize>, Error> {
        let graph = rb_self.check(ruby, row)?;
        Self::graph_query(ruby, graph, |graph| graph.retainers(row, class_edges))
    }

    fn referent_rows(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<Vec<usize>, Error> {
        Ok(rb_self.check(ruby, row)?.heap().referents(row).collect())
    }

    fn dominator(
        ruby: &Ruby,
        rb_self: &Self,
        row: usize,
        class_edges: bool,
    ) -> Result<Option<usize>, Error> {
        let graph = rb_self.check(ruby, row)?;
        Self::graph_query(ruby, graph, |graph| graph.dominator(row, class_edges))
    }

    fn retained_size(
        ruby: &Ruby,
        rb_self: &Self,
        row: usize,
        class_edges: bool,
    ) -> Result<u64, Error> {
        let graph = rb_self.check(ruby, row)?;
        Self::graph_query(ruby, graph, |graph| graph.retained_size(row, class_edges))
    }

    /// The name of a CLASS or MODULE object itself (not of its class).
    fn own_name(ruby: &Ruby, rb_self: &Self, row: usize) -> Result<Option<String>, Error> {
        let graph = rb_self.check(ruby, row)?;
        let heap = graph.heap();
        Ok(heap.class_name_of_class(heap.columns.address[row]))
    }
}

fn path_array(ruby: &Ruby, path: &Path) -> Result<RArray, Error> {
    let steps = ruby.ary_new_capa(path.steps.len());
    for step in &path.steps {
        let name = step
            .name
            .as_ref()
            .map(|n| (n.kind.clone(), n.expr.clone(), n.context.clone()));
        steps.push((step.row, step.label.clone(), name))?;
    }
    let out = ruby.ary_new_capa(2);
    out.push(path.root.clone())?;
    out.push(steps)?;
    Ok(out)
}
