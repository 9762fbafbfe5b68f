//! glibc's malloc, tuned for the coordinator's allocation pattern.
//!
//! Every member change at 1,000 × 256 allocates a few arrays of 1–3 MB (the
//! allocator's owners and positions, the new ring's index, the encoded
//! state) and frees the previous ones once the new epoch is published.
//! With glibc's defaults two things keep that memory resident:
//!
//! - every thread that allocates may get an arena of its own (up to 8 per
//!   core), each holding on to what its thread freed;
//! - the mmap threshold is dynamic: once a 2 MB mmapped block is freed,
//!   blocks up to that size come from the heap instead, where they fragment
//!   and are rarely given back.
//!
//! Measured with `benches/event-to-plan.sh 1000 256 3 7` (peak `VmHWM`, see
//! docs/benchmarks.md): 56–68 MiB with the defaults, 50–55 MiB with one
//! arena per core, 42 MiB with a fixed 256 KiB mmap threshold as well — but
//! that threshold made every change ~17 ms slower (median 79–82 ms against
//! 61–66: each big block is mapped and faulted in afresh), and event→plan
//! is a target too, so only the arenas are limited. mimalloc (v3, as the
//! `mimalloc` crate builds it) peaked at 108 MiB, so the system allocator
//! stays, tuned.
//!
//! An operator's own settings (`GLIBC_TUNABLES`, `MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`) win: nothing is changed when any is set.

/// Applies the tuning; call before the async runtime starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    let overridden = [
        "GLIBC_TUNABLES",
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    if overridden {
        return;
    }
    let arenas = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 64) as i32;
    // SAFETY: mallopt only changes malloc's parameters and is safe to call
    // at any time; here no other thread has started yet. A parameter it
    // refuses (returns 0) leaves glibc's default, which is still correct.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
