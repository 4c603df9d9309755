//! `Heapdiff::Report`: the result of a diff. Groups come to Ruby as small Hashes; the
//! rows of a group's objects stay in Rust until asked for.

use std::sync::Arc;

use heapdiff_core::graph::suspects::{suspects, Suspect};
use heapdiff_core::{diff, DiffOptions, Report};
use magnus::{
    function, method, prelude::*, typed_data::Obj, Error, IntoValue, RArray, RHash, RModule, Ruby,
};

use crate::convert::{byte_strings, check_index, opt_utf8, record};
use crate::gvl::{without_gvl, without_gvl_serial};
use crate::heap::HeapHandle;
use crate::memory::{Held, Tracked};

#[magnus::wrap(class = "Heapdiff::Report", free_immediately, size)]
pub struct ReportHandle {
    report: Report,
    // The last dump's graph (where the groups' rows are), kept so the rows stay
    // meaningful even if Ruby drops the heap; None once `Report#close` let it go
    // (only touched with the GVL held).
    last: Held,
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
    class.define_method("_close", method!(ReportHandle::close, 0))?;
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
    let before = before.graph(ruby)?;
    let after = after.graph(ruby)?;
    let later = later.map(|l| l.graph(ruby)).transpose()?;
    let options = DiffOptions {
        include_noise,
        own_paths: byte_strings(own_paths)?,
    };
    let report = without_gvl(ruby, |_cancel| {
        let later = later.as_deref().map(Tracked::graph);
        diff(before.heap(), after.heap(), later, &options)
    })?;
    let last = later.unwrap_or(after);
    // The diff built the last graph's breadth-first tree (what is reachable).
    last.sync();
    Ok(ReportHandle {
        report,
        last: Held::new(Some(last)),
    })
}

impl ReportHandle {
    /// The last dump's graph; raises Heapdiff::Error once the report is closed.
    fn last(&self, ruby: &Ruby) -> Result<Arc<Tracked>, Error> {
        self.last.get(ruby, "heap")
    }

    /// Lets go of the last dump's graph (its memory goes with the heaps' handles).
    fn close(&self) {
        self.last.close();
    }

    fn group_count(&self) -> usize {
        self.report.groups.len()
    }

    /// `{type:, class_name:, subtype:, file:, line:, count:, memsize:, uncertain:}`
    fn group(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<RHash, Error> {
        check_index(ruby, "group", i, rb_self.report.groups.len())?;
        let g = &rb_self.report.groups[i];
        record(
            ruby,
            &[
                ("type", g.object_type.name().into_value_with(ruby)),
                ("class_name", g.class_name.clone().into_value_with(ruby)),
                (
                    "subtype",
                    opt_utf8(ruby, g.subtype.as_deref()).into_value_with(ruby),
                ),
                (
                    "file",
                    opt_utf8(ruby, g.file.as_deref()).into_value_with(ruby),
                ),
                ("line", g.line.into_value_with(ruby)),
                ("count", g.count.into_value_with(ruby)),
                ("memsize", g.memsize.into_value_with(ruby)),
                ("uncertain", g.uncertain.into_value_with(ruby)),
            ],
        )
    }

    /// Rows (in the last heap) of the group's objects, at most `limit` (nil: all).
    fn group_rows(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        limit: Option<usize>,
    ) -> Result<Vec<u32>, Error> {
        check_index(ruby, "group", i, rb_self.report.groups.len())?;
        let g = &rb_self.report.groups[i];
        let n = limit.unwrap_or(g.members.len()).min(g.members.len());
        Ok(g.members[..n].to_vec())
    }

    /// Addresses (in the last heap) of the group's objects.
    fn group_addresses(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Vec<u64>, Error> {
        check_index(ruby, "group", i, rb_self.report.groups.len())?;
        let g = &rb_self.report.groups[i];
        let last = rb_self.last(ruby)?;
        let address = &last.heap().columns.address;
        Ok(g.members.iter().map(|&row| address[row as usize]).collect())
    }

    /// `{total_count:, total_memsize:, filtered_count:, freed_count:,
    /// unreachable_count:, uncertain_count:}`, named as `Heapdiff::Report`'s readers.
    fn summary(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let r = &rb_self.report;
        record(
            ruby,
            &[
                ("total_count", r.total_count.into_value_with(ruby)),
                ("total_memsize", r.total_memsize.into_value_with(ruby)),
                ("filtered_count", r.filtered.into_value_with(ruby)),
                ("freed_count", r.freed_before_later.into_value_with(ruby)),
                ("unreachable_count", r.unreachable.into_value_with(ruby)),
                ("uncertain_count", r.total_uncertain.into_value_with(ruby)),
            ],
        )
    }

    fn warnings(&self) -> Vec<String> {
        self.report.warnings.clone()
    }

    /// `[[[holder row or nil, count, root category or nil], …], retained_size, unreachable]` for group `i`,
    /// in the last heap. The first call builds the dominator tree without the GVL.
    fn suspect(ruby: &Ruby, rb_self: &Self, i: usize, class_edges: bool) -> Result<RArray, Error> {
        check_index(ruby, "group", i, rb_self.report.groups.len())?;
        let g = &rb_self.report.groups[i];
        suspect_of(ruby, rb_self.last(ruby)?, g.members.clone(), class_edges)
    }
}

/// The suspects of `members` (rows of `graph`), as `suspect_array`. The first call
/// builds the breadth-first tree (root categories) in parallel on the process's pool,
/// like a path query: rayon's global pool would not survive a fork. Later calls and the
/// dominator tree run on this thread.
pub fn suspect_of(
    ruby: &Ruby,
    graph: Arc<Tracked>,
    members: Vec<u32>,
    class_edges: bool,
) -> Result<RArray, Error> {
    let built = graph.has_root_tree(class_edges);
    let run = |_: &_| suspects(&graph, &members, class_edges);
    let suspect = if built {
        without_gvl_serial(ruby, run)
    } else {
        without_gvl(ruby, run)
    };
    // The trees it built (breadth-first, dominators) are reported to Ruby's GC.
    graph.sync();
    suspect_array(ruby, &suspect?)
}

/// `[[[holder row or nil, count, root category or nil], …], retained_size, unreachable]`
pub fn suspect_array(ruby: &Ruby, suspect: &Suspect) -> Result<RArray, Error> {
    let holders = ruby.ary_new_capa(suspect.holders.len());
    for h in &suspect.holders {
        holders.push((h.row, h.count, h.root.clone()))?;
    }
    let out = ruby.ary_new_capa(3);
    out.push(holders)?;
    out.push(suspect.retained_size)?;
    out.push(suspect.unreachable)?;
    Ok(out)
}
