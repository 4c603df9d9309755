//! Giving memory back to the system. A loaded heap is tens to hundreds of megabytes in
//! many allocations, made partly on worker threads; once freed, glibc keeps most of it
//! in its arenas, so the host process's RSS would stay high (and wander by tens of
//! megabytes from load to load) long after heapdiff is done. `malloc_trim` returns the
//! free pages of every arena.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory on their own, or offer no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
