//! The binary's allocator is mimalloc (`main.rs`). The query service alone sets, at run time,
//! what mimalloc does with memory the service has freed ([`FreedMemory`]).
//!
//! The query service nets the whole counts table again for every new manifest. With
//! mimalloc's default, the memory of the netting just evicted went back to the kernel a second
//! after it was freed (`madvise(MADV_DONTNEED)`), and the next netting faulted it in again, page
//! by page, while requests were served beside it: at 10M events single requests during a
//! netting took up to 234 ms, against at most 57 ms when the memory stayed; a ten-second delay
//! still let it go between nettings further apart (BENCHMARKS.md, thirteenth and fourteenth
//! steps). The other services keep the default: a rebuild's projector would hold its peak.

use std::os::raw::c_long;
use std::time::Duration;

use libmimalloc_sys as ffi;

/// `mi_option_purge_decommits` and `mi_option_purge_delay`: the sixth and sixteenth entries of
/// `mi_option_t` in mimalloc 3's `mimalloc.h` (libmimalloc-sys names no constants for them
/// under mimalloc 3). A test reads mimalloc's documented defaults through them, so a
/// renumbering in a new mimalloc fails there.
const PURGE_DECOMMITS: ffi::mi_option_t = 5;
const PURGE_DELAY: ffi::mi_option_t = 15;

/// What becomes of memory the process has freed, once it has stayed free a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FreedMemory {
    /// Offered back to the kernel (`MADV_FREE`): the kernel takes the pages only when it runs
    /// short, and until then the process reuses them without a fault. They still count in the
    /// process's resident memory (as `LazyFree` in `/proc/<pid>/smaps_rollup`).
    Lazy,
    /// Never given back: the process keeps what it has once used.
    Keep,
    /// Given back to the kernel at once (`MADV_DONTNEED`, mimalloc's default): resident memory
    /// falls, and reusing it faults every page in again.
    Return,
}

/// The second mimalloc waits before giving freed memory back (its own default).
const PURGE_AFTER: Duration = Duration::from_secs(1);

/// Sets what becomes of freed memory for the whole process, from now on. Call it once, as a
/// service starts: mimalloc's options are plain words, read without a lock by every thread
/// that frees.
pub fn set_freed_memory(freed: FreedMemory) {
    match freed {
        FreedMemory::Keep => set_purge(Purge::Never),
        FreedMemory::Lazy | FreedMemory::Return => {
            set_purge(Purge::After(PURGE_AFTER));
            set_decommits(freed == FreedMemory::Return);
        }
    }
}

/// What mimalloc does with freed memory now, read back from its options.
pub fn freed_memory() -> FreedMemory {
    match (purge(), decommits()) {
        (Purge::Never, _) => FreedMemory::Keep,
        (Purge::After(_), false) => FreedMemory::Lazy,
        (Purge::After(_), true) => FreedMemory::Return,
    }
}

/// When memory freed back to mimalloc is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    Never,
    /// Once it has stayed free this long.
    After(Duration),
}

impl Purge {
    /// mimalloc's convention: milliseconds, or -1 for never.
    fn from_millis(millis: i64) -> Purge {
        u64::try_from(millis)
            .map_or(Purge::Never, |millis| Purge::After(Duration::from_millis(millis)))
    }

    fn millis(self) -> i64 {
        match self {
            Purge::Never => -1,
            Purge::After(delay) => i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Sets the purge delay alone (the tests purge at once).
pub fn set_purge(purge: Purge) {
    set(PURGE_DELAY, purge.millis());
}

/// The purge delay in force.
pub fn purge() -> Purge {
    Purge::from_millis(get(PURGE_DELAY))
}

/// Whether a purge gives the pages back at once (`MADV_DONTNEED`) or lazily (`MADV_FREE`).
pub fn set_decommits(decommits: bool) {
    set(PURGE_DECOMMITS, i64::from(decommits));
}

pub fn decommits() -> bool {
    get(PURGE_DECOMMITS) != 0
}

fn set(option: ffi::mi_option_t, value: i64) {
    let value = c_long::try_from(value).unwrap_or(c_long::MAX);
    // SAFETY: an option index inside mimalloc's table and a plain integer value.
    unsafe { ffi::mi_option_set(option, value) }
}

fn get(option: ffi::mi_option_t) -> i64 {
    // SAFETY: an option index inside mimalloc's table.
    let value = unsafe { ffi::mi_option_get(option) };
    // `c_long` is 32 bits on some targets, where this conversion is not the identity.
    #[allow(clippy::useless_conversion)]
    i64::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimallocs_convention_is_milliseconds_or_minus_one_for_never() {
        assert_eq!(Purge::from_millis(-1), Purge::Never);
        assert_eq!(Purge::from_millis(0), Purge::After(Duration::ZERO));
        assert_eq!(Purge::from_millis(10_000), Purge::After(Duration::from_secs(10)));
        assert_eq!(Purge::Never.millis(), -1);
    }

    /// The only test of this library that touches mimalloc's options: they are the process's.
    #[test]
    fn the_options_are_mimallocs_purge_delay_and_decommits() {
        let defaults = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_PURGE_DECOMMITS"];
        if defaults.iter().all(|name| std::env::var_os(name).is_none()) {
            // mimalloc 3's documented defaults; other indices would read other options'.
            assert_eq!(purge(), Purge::After(Duration::from_secs(1)));
            assert!(decommits());
            assert_eq!(freed_memory(), FreedMemory::Return);
        }
        let (purge_before, decommits_before) = (purge(), decommits());
        for freed in [FreedMemory::Keep, FreedMemory::Lazy, FreedMemory::Return] {
            set_freed_memory(freed);
            assert_eq!(freed_memory(), freed);
        }
        set_purge(purge_before);
        set_decommits(decommits_before);
    }
}
