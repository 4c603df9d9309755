//! Stopping long passes over the graph from outside (Ctrl-C, `Thread#kill`,
//! `Timeout`). The dominator tree, the reverse graph and the breadth-first tree are
//! built lazily inside `OnceLock`s, deep below the query that needs them; rather than
//! thread a flag through every query, the caller sets one for its thread with `scope`,
//! and the passes call `checkpoint`, which unwinds back to `scope` once the flag is
//! set. A `OnceLock` whose initialiser unwinds stays empty, so nothing half-built is
//! kept: the next query builds it again.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

thread_local! {
    static FLAG: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

/// The payload `checkpoint` unwinds with, told apart from a real panic by `scope`.
struct Stop;

/// Runs `work` on this thread with `flag` as its cancel flag. Returns
/// `Err(Error::Cancelled)` when a `checkpoint` in it saw the flag set; other panics go on.
pub fn scope<R>(flag: &AtomicBool, work: impl FnOnce() -> R) -> Result<R, Error> {
    let outer = FLAG.with(|f| f.replace(flag));
    let result = catch_unwind(AssertUnwindSafe(work));
    FLAG.with(|f| f.set(outer));
    match result {
        Ok(value) => Ok(value),
        Err(payload) if payload.is::<Stop>() => Err(Error::Cancelled),
        Err(payload) => resume_unwind(payload),
    }
}

/// Unwinds to the enclosing `scope` if its flag is set; does nothing outside one.
/// Call it from sequential loops only, on the thread that entered the scope.
pub fn checkpoint() {
    let flag = FLAG.with(Cell::get);
    // SAFETY: a non-null pointer was set by `scope`, whose `flag` outlives the call
    // that set it, and is reset before `scope` returns.
    if !flag.is_null() && unsafe { &*flag }.load(Ordering::Relaxed) {
        resume_unwind(Box::new(Stop));
    }
}

/// A `checkpoint` once in 64K steps of a loop: cheap enough for the hottest ones.
pub fn checkpoint_every(step: usize) {
    if step.is_multiple_of(1 << 16) {
        checkpoint();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_flag_stops_the_work_at_the_next_checkpoint() {
        let flag = AtomicBool::new(false);
        let mut reached = 0;
        let result = scope(&flag, || {
            for i in 0..10 {
                if i == 3 {
                    flag.store(true, Ordering::Relaxed);
                }
                checkpoint();
                reached = i;
            }
        });
        assert!(matches!(result, Err(Error::Cancelled)));
        assert_eq!(reached, 2);
        checkpoint(); // outside any scope: nothing happens
    }
}
