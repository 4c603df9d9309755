//! Running long work without the GVL, so that other Ruby threads go on and Ctrl-C,
//! `Thread#kill` and `Timeout` can stop it.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use heapdiff_core::cancel;
use magnus::{Error, Ruby};
use rayon::ThreadPool;

use crate::errors::{error, Raise};

/// Runs `work` with the GVL released, on the process's rayon pool (see `pool`). `work`
/// gets a flag that turns true when Ruby wants the thread back (an interrupt); it should
/// check it and stop. The `Send` bounds keep Ruby values out of the closure.
///
/// Interrupts: `rb_thread_call_without_gvl2` returns instead of raising, so every Rust
/// value here is dropped normally; the pending exception (Timeout::Error, Interrupt, a
/// kill) is raised afterwards through `thread_check_ints`, which magnus protects. An
/// interrupt that raises nothing (`Thread#wakeup`, a masked exception) runs the work
/// again; the last attempt cannot be interrupted. A panic becomes a `Heapdiff::Error`.
/// `work` runs inside a `cancel::scope` of the flag: the core's graph passes stop too.
pub fn without_gvl<F, R>(ruby: &Ruby, work: F) -> Result<R, Error>
where
    F: Fn(&AtomicBool) -> R + Send + Sync,
    R: Send,
{
    call_without_gvl(ruby, true, work)
}

/// As `without_gvl`, for work that runs on this thread alone (no pool to build).
pub fn without_gvl_serial<F, R>(ruby: &Ruby, work: F) -> Result<R, Error>
where
    F: Fn(&AtomicBool) -> R + Send + Sync,
    R: Send,
{
    call_without_gvl(ruby, false, work)
}

const ATTEMPTS: usize = 3;

fn call_without_gvl<F, R>(ruby: &Ruby, parallel: bool, work: F) -> Result<R, Error>
where
    F: Fn(&AtomicBool) -> R + Send + Sync,
    R: Send,
{
    struct Call<'a, F, R> {
        work: &'a F,
        pool: Option<Arc<ThreadPool>>,
        cancel: &'a AtomicBool,
        result: Option<std::thread::Result<R>>,
    }

    unsafe extern "C" fn run<F, R>(data: *mut c_void) -> *mut c_void
    where
        F: Fn(&AtomicBool) -> R + Send + Sync,
        R: Send,
    {
        // SAFETY: `data` is the `Call` below, alive for the whole call.
        let call = unsafe { &mut *(data as *mut Call<F, R>) };
        let (work, cancel) = (call.work, call.cancel);
        // The graph passes check the flag through `cancel::checkpoint`; stopped, the
        // call has no result, as one that never started.
        let stoppable = || cancel::scope(cancel, || work(cancel));
        let result = catch_unwind(AssertUnwindSafe(|| match &call.pool {
            Some(pool) => pool.install(stoppable),
            None => stoppable(),
        }));
        call.result = match result {
            Ok(Ok(value)) => Some(Ok(value)),
            // `scope` fails only when the work was stopped.
            Ok(Err(_)) => None,
            Err(panic) => Some(Err(panic)),
        };
        std::ptr::null_mut()
    }

    unsafe extern "C" fn unblock(data: *mut c_void) {
        // SAFETY: `data` is the cancel flag, alive for the whole call.
        let cancel = unsafe { &*(data as *const AtomicBool) };
        cancel.store(true, Ordering::SeqCst);
    }

    // Looked up while this thread holds the GVL: no Ruby thread can fork meanwhile.
    let pool = if parallel { pool() } else { None };
    for attempt in 1..=ATTEMPTS {
        let cancel = AtomicBool::new(false);
        let mut call = Call {
            work: &work,
            pool: pool.clone(),
            cancel: &cancel,
            result: None,
        };
        let interruptible = attempt < ATTEMPTS;
        // SAFETY: both pointers outlive the call; `run` touches no Ruby API.
        unsafe {
            rb_sys::rb_thread_call_without_gvl2(
                Some(run::<F, R>),
                &mut call as *mut Call<F, R> as *mut c_void,
                if interruptible { Some(unblock) } else { None },
                &cancel as *const AtomicBool as *mut c_void,
            );
        }
        // Raise what interrupted us before anything else.
        ruby.thread_check_ints()?;
        let interrupted = cancel.load(Ordering::SeqCst);
        match call.result {
            Some(Ok(value)) if !interrupted => return Ok(value),
            Some(Err(panic)) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(error(
                    ruby,
                    Raise::Error,
                    format!("internal error in heapdiff: {message}"),
                ));
            }
            // Interrupted, or never started, and nothing to raise: run it again.
            _ => continue,
        }
    }
    Err(error(ruby, Raise::Interrupted, "interrupted".into()))
}

/// The worker pool, one per process and shared by concurrent calls: the three loads of
/// a diff run side by side on one set of threads, not on three pools whose idle workers
/// spin on cores the others need. A forked child builds its own (the parent's threads
/// did not survive the fork) and leaks the parent's, whose threads it cannot join.
/// `None` when no thread can be started: the work then runs on the calling thread.
fn pool() -> Option<Arc<ThreadPool>> {
    static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match slot.take() {
        Some((owner, pool)) if owner == pid => {
            *slot = Some((owner, pool.clone()));
            return Some(pool);
        }
        Some(inherited) => std::mem::forget(inherited),
        None => {}
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(|i| format!("heapdiff-{i}"))
            .build()
            .ok()?,
    );
    *slot = Some((pid, pool.clone()));
    Some(pool)
}

/// Worker threads: `HEAPDIFF_THREADS`, else one per core.
fn threads() -> usize {
    std::env::var("HEAPDIFF_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
