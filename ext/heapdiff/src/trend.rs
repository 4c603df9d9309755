//! `Heapdiff::Trend`: a site's counts across N snapshots. The walk (`heapdiff_core::trend`)
//! loads the snapshots one by one without the GVL; sites come to Ruby as small Hashes.

use std::sync::Arc;

use heapdiff_core::{load, trend, DiffOptions, LoadOptions, Trend};
use magnus::{
    function, method, prelude::*, Error, IntoValue, RArray, RHash, RModule, RString, Ruby,
};

use crate::convert::{byte_strings, check_index, opt_utf8, path_buf, record};
use crate::errors::core_error;
use crate::gvl::without_gvl;
use crate::heap::HeapHandle;
use crate::memory::{Held, Tracked};
use crate::report::suspect_of;

/// The trend, and its last snapshot's graph, whose memory is reported to Ruby's GC
/// (the other snapshots are freed during the walk); None once `Trend#close` let it go
/// (only touched with the GVL held).
#[magnus::wrap(class = "Heapdiff::Trend", free_immediately, size)]
pub struct TrendHandle {
    trend: Trend,
    last: Held,
}

pub fn init(ruby: &Ruby, module: RModule) -> Result<(), Error> {
    let class = module.define_class("Trend", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("_build", function!(build, 3))?;
    class.define_method("_site_count", method!(TrendHandle::site_count, 0))?;
    class.define_method("_site", method!(TrendHandle::site, 1))?;
    class.define_method("_site_rows", method!(TrendHandle::site_rows, 2))?;
    class.define_method("_site_uncertain", method!(TrendHandle::site_uncertain, 1))?;
    class.define_method("_totals", method!(TrendHandle::totals, 0))?;
    class.define_method("_warnings", method!(TrendHandle::warnings, 0))?;
    class.define_method("_last_heap", method!(TrendHandle::last_heap, 0))?;
    class.define_method("_close", method!(TrendHandle::close, 0))?;
    class.define_method("_suspect", method!(TrendHandle::suspect, 2))?;
    Ok(())
}

fn build(
    ruby: &Ruby,
    paths: RArray,
    include_noise: bool,
    own_paths: RArray,
) -> Result<TrendHandle, Error> {
    let paths = paths
        .into_iter()
        .map(|p| RString::try_convert(p).map(path_buf))
        .collect::<Result<Vec<_>, Error>>()?;
    if paths.is_empty() {
        return Err(Error::new(
            ruby.exception_arg_error(),
            "a trend needs at least one snapshot",
        ));
    }
    let options = DiffOptions {
        include_noise,
        own_paths: byte_strings(own_paths)?,
    };
    let result = without_gvl(ruby, |cancel| {
        trend(
            paths.len(),
            |k| {
                load(
                    &paths[k],
                    LoadOptions {
                        cancel: Some(cancel),
                    },
                )
            },
            &options,
        )
    })?;
    let mut trend = result.map_err(|e| core_error(ruby, e))?;
    // Taken out of the trend, so that closing the handle frees it.
    let last = trend.last.take().map(Tracked::new);
    Ok(TrendHandle {
        trend,
        last: Held::new(last),
    })
}

impl TrendHandle {
    fn site_count(&self) -> usize {
        self.trend.sites.len()
    }

    fn check(&self, ruby: &Ruby, i: usize) -> Result<(), Error> {
        check_index(ruby, "site", i, self.trend.sites.len())
    }

    /// `{type:, class_name:, subtype:, file:, line:, counts:, memsizes:, survived:,
    /// verdict:}` (the last three: one entry per snapshot)
    fn site(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<RHash, Error> {
        rb_self.check(ruby, i)?;
        let s = &rb_self.trend.sites[i];
        record(
            ruby,
            &[
                ("type", s.object_type.name().into_value_with(ruby)),
                ("class_name", s.class_name.clone().into_value_with(ruby)),
                (
                    "subtype",
                    opt_utf8(ruby, s.subtype.as_deref()).into_value_with(ruby),
                ),
                (
                    "file",
                    opt_utf8(ruby, s.file.as_deref()).into_value_with(ruby),
                ),
                ("line", s.line.into_value_with(ruby)),
                ("counts", s.counts.clone().into_value_with(ruby)),
                ("memsizes", s.memsizes.clone().into_value_with(ruby)),
                ("survived", s.survived.clone().into_value_with(ruby)),
                ("verdict", s.verdict.name().into_value_with(ruby)),
            ],
        )
    }

    /// Per snapshot, the site's survivors whose identity the dumps leave open
    /// (`heapdiff_core::trend::Site::uncertain`).
    fn site_uncertain(ruby: &Ruby, rb_self: &Self, i: usize) -> Result<Vec<u64>, Error> {
        rb_self.check(ruby, i)?;
        Ok(rb_self.trend.sites[i].uncertain.clone())
    }

    /// Rows of the site's objects in the last snapshot, at most `limit` (nil: all).
    fn site_rows(
        ruby: &Ruby,
        rb_self: &Self,
        i: usize,
        limit: Option<usize>,
    ) -> Result<Vec<u32>, Error> {
        rb_self.check(ruby, i)?;
        Ok(rb_self.trend.rows(i, limit.unwrap_or(usize::MAX)))
    }

    /// `[[objects, memsize, filtered, moved], …]`, one per snapshot.
    fn totals(&self) -> Vec<(u64, u64, u64, u64)> {
        self.trend
            .snapshots
            .iter()
            .map(|t| (t.objects, t.memsize, t.filtered, t.moved))
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.trend.warnings.clone()
    }

    /// The last snapshot; raises Heapdiff::Error once the trend is closed.
    fn last(&self, ruby: &Ruby) -> Result<Arc<Tracked>, Error> {
        self.last.get(ruby, "trend")
    }

    /// Lets go of the last snapshot (freed once no `Heap` from `_last_heap` holds it).
    fn close(&self) {
        self.last.close();
    }

    /// The last snapshot, as a `Heapdiff::Heap` sharing the loaded index.
    fn last_heap(ruby: &Ruby, rb_self: &Self) -> Result<HeapHandle, Error> {
        Ok(HeapHandle::new(rb_self.last(ruby)?))
    }

    /// As `Report#_suspect`, for site `i`'s objects in the last snapshot.
    fn suspect(ruby: &Ruby, rb_self: &Self, i: usize, class_edges: bool) -> Result<RArray, Error> {
        rb_self.check(ruby, i)?;
        let members = rb_self.trend.rows(i, usize::MAX);
        suspect_of(ruby, rb_self.last(ruby)?, members, class_edges)
    }
}
