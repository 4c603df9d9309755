//! `Heapdiff::Report`: the result of a diff. Groups come to Ruby as small arrays; the
//! rows of a group's objects stay in Rust until asked for.

use std::sync::Arc;

use heapdiff_core::suspects::{suspects, Suspect};
use heapdiff_core::{diff, DiffOptions, Heap, Report};
use magnus::{
    function, method, prelude::*, typed_data::Obj, Error, IntoValue, RArray, RModule, Ruby, Value,
};

use crate::gvl::{without_gvl, without_gvl_serial};
use crate::heap::{byte_strings, utf8, HeapHandle};

#[magnus::wrap(class = "Heapdiff::Report", free_immediately, size)]
pub struct ReportHandle {
    report: Report,
    // Kept so the rows in `report` stay meaningful even if Ruby drops the heap.
    after: Arc<Heap>,
}

pub fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Report", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("_diff", function!(diff_heaps, 5))?;
    class.define_method("_group_count", method!(ReportHandle::group_count, 0))?;
    class.define_method("_group", method!(ReportHandle::group, 1))?;
    class.define_method("_group_rows", method!(ReportHandle::group_rows, 2))?;
    class.define_method(
        "_group_addresses",
        method!(ReportHandle::group_addresses, 1),
    )?;
    class.define_method("_summary", method!(ReportHandle::summary, 0))?;
    class.define_method("_warnings", method!(ReportHandle::warnings, 0))?;
    class.define_method("_suspect", method!(ReportHandle::suspect, 2))?;
    Ok(())
}

fn diff_heaps(
    ruby: &Ruby,
    before: Obj<HeapHandle>,
    after: Obj<HeapHandle>,
    later: Option<Obj<HeapHandle>>,
    include_noise: bool,
    own_paths: RArray,
) -> Result<ReportHandle, Error> {
    let before = before.heap(ruby)?;
    let after = after.heap(ruby)?;
    let later = later.map(|l| l.heap(ruby)).transpose()?;
    let options = DiffOptions {
        include_noise,
        own_paths: byte_strings(own_paths)?,
    };
    let report = without_gvl(ruby, |_cancel| {
        diff(&before, &after, later.as_deref(), &options)
    })?;
    Ok(ReportHandle { report, after })
}

impl ReportHandle {
    fn group_count(&self) -> usize {
        self.report.groups.len()
    }

    /// `[type, class_name, subtype, file, line, count, memsize]`
    fn group(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<RArray, Error> {
        let g = rb_self.report.groups.get(i).ok_or_else(|| {
            Error::new(
                ruby.exception_index_error(),
                format!("group {i} out of range"),
            )
        })?;
        let values: [Value; 7] = [
            g.object_type.name().into_value_with(ruby),
            g.class_name.clone().into_value_with(ruby),
            g.subtype
                .as_deref()
                .map(|s| utf8(ruby, s))
                .into_value_with(ruby),
            g.file
                .as_deref()
                .map(|s| utf8(ruby, s))
                .into_value_with(ruby),
            g.line.into_value_with(ruby),
            g.count.into_value_with(ruby),
            g.memsize.into_value_with(ruby),
        ];
        Ok(ruby.ary_from_iter(values))
    }

    /// Rows (in the `after` heap) of the group's objects, at most `limit` (nil: all).
    fn group_rows(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        limit: Option<usize>,
    ) -> Result<Vec<u32>, Error> {
        let g = rb_self.report.groups.get(i).ok_or_else(|| {
            Error::new(
                ruby.exception_index_error(),
                format!("group {i} out of range"),
            )
        })?;
        let n = limit.unwrap_or(g.members.len()).min(g.members.len());
        Ok(g.members[..n].to_vec())
    }

    /// Addresses (in the `after` heap) of the group's objects.
    fn group_addresses(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Vec<u64>, Error> {
        let g = rb_self.report.groups.get(i).ok_or_else(|| {
            Error::new(
                ruby.exception_index_error(),
                format!("group {i} out of range"),
            )
        })?;
        let address = &rb_self.after.columns.address;
        Ok(g.members.iter().map(|&row| address[row as usize]).collect())
    }

    /// `[total_count, total_memsize, filtered, freed_before_later]`
    fn summary(&self) -> (u64, u64, u64, u64) {
        let r = &self.report;
        (
            r.total_count,
            r.total_memsize,
            r.filtered,
            r.freed_before_later,
        )
    }

    fn warnings(&self) -> Vec<String> {
        self.report.warnings.clone()
    }

    /// `[[[holder row or nil, count], …], retained_size, unreachable]` for group `i`,
    /// in the `after` heap. The first call builds the dominator tree without the GVL.
    fn suspect(ruby: &Ruby, rb_self: &Self, i: usize, class_edges: bool) -> Result<RArray, Error> {
        let g = rb_self.report.groups.get(i).ok_or_else(|| {
            Error::new(
                ruby.exception_index_error(),
                format!("group {i} out of range"),
            )
        })?;
        let heap = rb_self.after.clone();
        let members = g.members.clone();
        let suspect = without_gvl_serial(ruby, move |_| suspects(&heap, &members, class_edges))?;
        suspect_array(ruby, &suspect)
    }
}

/// `[[[holder row or nil, count], …], retained_size, unreachable]`
pub fn suspect_array(ruby: &Ruby, suspect: &Suspect) -> Result<RArray, Error> {
    let holders = ruby.ary_new_capa(suspect.holders.len());
    for h in &suspect.holders {
        holders.push((h.row, h.count))?;
    }
    let out = ruby.ary_new_capa(3);
    out.push(holders)?;
    out.push(suspect.retained_size)?;
    out.push(suspect.unreachable)?;
    Ok(out)
}
