//! The daemon's own memory. Loading the programs parses a large eBPF object
//! and every apply builds and drops a policy's worth of entries; glibc
//! keeps what was freed for later (16 MiB after loading alone), and gives
//! each thread that contends for the heap an arena of its own. A node agent
//! should hold only what it uses: freed memory goes back to the system
//! after the big steps, and the tokio threads share two arenas.

/// Limits malloc to two arenas. Call before the daemon starts its work
/// (arenas are created lazily, on contention).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free memory at the top and in the middle of the heap to the
/// system (`malloc_trim`). Cheap next to what precedes it (loading, an
/// apply, a remove).
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
