//! `Heapdiff::Heap#_summary`: the tables of `heapdiff_core::summary`, counted without
//! the GVL, as a Hash of tables of `[key, count, memsize]` for `Heapdiff::Summary` to rank.

use heapdiff_core::summary::{summarize, Tally};
use magnus::{method, prelude::*, Error, IntoValue, RArray, RHash, RModule, Ruby, Value};

use crate::convert::{record, utf8};
use crate::errors::core_error;
use crate::gvl::without_gvl_serial;
use crate::heap::HeapHandle;

pub fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Heap", ruby.class_object())?;
    class.define_method("_summary", method!(summary, 0))?;
    Ok(())
}

/// `{objects:, memsize:, types:, classes:, locations:, files:, duplicates:}`; each
/// table an Array of `[key, count, memsize]`.
fn summary(ruby: &Ruby, rb_self: &HeapHandle) -> Result<RHash, Error> {
    let graph = rb_self.graph(ruby)?;
    let summary = without_gvl_serial(ruby, move |cancel| summarize(graph.heap(), Some(cancel)))?
        .map_err(|e| core_error(ruby, e))?;
    // Rows go into their Ruby array as they are made: a Ruby value kept in a Rust
    // vector would be invisible to the GC.
    let table = |n: usize, row: &dyn Fn(usize) -> (Value, Tally)| -> Result<RArray, Error> {
        let array = ruby.ary_new_capa(n);
        for k in 0..n {
            let (key, tally) = row(k);
            array.push((key, tally.count, tally.memsize))?;
        }
        Ok(array)
    };
    let types = table(summary.by_type.len(), &|k| {
        let (t, tally) = summary.by_type[k];
        (utf8(ruby, t.name().as_bytes()).as_value(), tally)
    })?;
    let classes = table(summary.by_class.len(), &|k| {
        let (name, tally) = &summary.by_class[k];
        (utf8(ruby, name.as_bytes()).as_value(), *tally)
    })?;
    let locations = table(summary.by_location.len(), &|k| {
        let (site, tally) = &summary.by_location[k];
        let key = site
            .as_ref()
            .map(|(file, line)| (utf8(ruby, file), *line).into_value_with(ruby));
        (key.into_value_with(ruby), *tally)
    })?;
    let files = table(summary.by_file.len(), &|k| {
        let (file, tally) = &summary.by_file[k];
        (
            file.as_ref().map(|f| utf8(ruby, f)).into_value_with(ruby),
            *tally,
        )
    })?;
    let duplicates = table(summary.duplicates.len(), &|k| {
        let d = &summary.duplicates[k];
        let encoding = d
            .encoding
            .as_ref()
            .and_then(|e| std::str::from_utf8(e).ok())
            .and_then(|name| ruby.find_encoding(name));
        let value = match encoding {
            Some(encoding) => ruby.enc_str_new(&d.value, encoding),
            None => ruby.str_from_slice(&d.value),
        };
        (value.as_value(), d.tally)
    })?;
    record(
        ruby,
        &[
            ("objects", summary.total.count.into_value_with(ruby)),
            ("memsize", summary.total.memsize.into_value_with(ruby)),
            ("types", types.as_value()),
            ("classes", classes.as_value()),
            ("locations", locations.as_value()),
            ("files", files.as_value()),
            ("duplicates", duplicates.as_value()),
        ],
    )
}
