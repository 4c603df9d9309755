//! Running long work without the GVL, so that other Ruby threads go on and Ctrl-C,
//! `Thread#kill` and `Timeout` can stop it.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use magnus::{Error, Ruby};

use crate::errors::error;

/// Runs `work` with the GVL released, on a rayon pool of its own (built per call, so a
/// forked child never inherits a pool whose threads did not survive the fork). `work`
/// gets a flag that turns true when Ruby wants the thread back (an interrupt); it should
/// check it and stop. The `Send` bounds keep Ruby values out of the closure. A panic
/// becomes a `Heapdiff::Error`; a pending interrupt is raised once the GVL is back.
pub fn without_gvl<F, R>(ruby: &Ruby, work: F) -> Result<R, Error>
where
    F: FnOnce(&AtomicBool) -> R + Send,
    R: Send,
{
    struct Call<'a, F, R> {
        work: Option<F>,
        cancel: &'a AtomicBool,
        result: Option<std::thread::Result<R>>,
    }

    unsafe extern "C" fn run<F, R>(data: *mut c_void) -> *mut c_void
    where
        F: FnOnce(&AtomicBool) -> R + Send,
        R: Send,
    {
        // SAFETY: `data` is the `Call` below, alive for the whole call.
        let call = unsafe { &mut *(data as *mut Call<F, R>) };
        let work = call.work.take().expect("run once");
        let cancel = call.cancel;
        call.result = Some(catch_unwind(AssertUnwindSafe(
            || match rayon::ThreadPoolBuilder::new()
                .num_threads(threads())
                .thread_name(|i| format!("heapdiff-{i}"))
                .build()
            {
                Ok(pool) => pool.install(|| work(cancel)),
                Err(_) => work(cancel),
            },
        )));
        std::ptr::null_mut()
    }

    unsafe extern "C" fn unblock(data: *mut c_void) {
        // SAFETY: `data` is the cancel flag, alive for the whole call.
        let cancel = unsafe { &*(data as *const AtomicBool) };
        cancel.store(true, Ordering::SeqCst);
    }

    let cancel = AtomicBool::new(false);
    let mut call = Call {
        work: Some(work),
        cancel: &cancel,
        result: None,
    };
    // SAFETY: both pointers outlive the call; `run` touches no Ruby API.
    unsafe {
        rb_sys::rb_thread_call_without_gvl(
            Some(run::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
            Some(unblock),
            &cancel as *const AtomicBool as *mut c_void,
        );
    }
    // Raise what interrupted us (Timeout::Error, Interrupt, a kill) before anything else.
    ruby.thread_check_ints()?;
    match call.result {
        Some(Ok(value)) => Ok(value),
        Some(Err(panic)) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(error(
                ruby,
                "Error",
                format!("internal error in heapdiff: {message}"),
            ))
        }
        None => Err(error(
            ruby,
            "Interrupted",
            "interrupted before it started".into(),
        )),
    }
}

/// Worker threads: `HEAPDIFF_THREADS`, else one per core.
fn threads() -> usize {
    std::env::var("HEAPDIFF_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
