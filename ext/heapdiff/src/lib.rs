//! The Ruby binding of heapdiff: a thin layer over `heapdiff-core` that converts
//! arguments, releases the GVL around long work and wraps the results. The public
//! Ruby API lives in `lib/heapdiff/` (`analysis/` wraps these classes); the methods
//! defined here are `_underscored`.

mod convert;
mod errors;
mod gvl;
mod heap;
mod memory;
mod names;
mod redact;
mod report;
mod summary;
mod trend;

use magnus::{Error, Ruby};

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let module = ruby.define_module("Heapdiff")?;
    errors::init(module)?;
    heap::init(ruby, module)?;
    report::init(ruby, module)?;
    redact::init(ruby, module)?;
    summary::init(ruby, module)?;
    trend::init(ruby, module)?;
    Ok(())
}
