//! The binary's allocator is mimalloc (`main.rs`). One of its options is set at run time, by
//! the query service alone: how long memory freed back to mimalloc stays with the process
//! before it is purged, that is given back to the kernel.
//!
//! The query service nets the whole counts table again for every new manifest, one netting
//! after another under live ingest. With mimalloc's default (a purge one second after the
//! free), the memory of the netting just evicted went back to the kernel and the next netting
//! faulted it in again, page by page, while requests were served beside it: at 10M events
//! single requests during a netting took up to 272 ms, against at most 50 ms when freed
//! memory was kept; a ten-second delay still let it go between nettings further apart
//! (BENCHMARKS.md, thirteenth and fourteenth steps). The other services keep the default: a
//! rebuild's projector would hold its peak for the rest of the process's life.

use std::os::raw::c_long;
use std::time::Duration;

use libmimalloc_sys as ffi;

/// `mi_option_purge_delay`: the sixteenth entry of `mi_option_t` in mimalloc 3's `mimalloc.h`
/// (libmimalloc-sys names no constant for it under mimalloc 3). A test reads mimalloc's
/// documented default through it, so a renumbering in a new mimalloc fails there.
const PURGE_DELAY: ffi::mi_option_t = 15;

/// When memory freed back to mimalloc goes back to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Never: the process keeps what it has once used.
    Never,
    /// Once it has stayed free this long (mimalloc's default is one second).
    After(Duration),
}

impl Purge {
    /// From mimalloc's own convention, which the flag follows: milliseconds, or -1 for never.
    pub fn from_millis(millis: i64) -> Option<Purge> {
        match millis {
            -1 => Some(Purge::Never),
            0.. => Some(Purge::After(Duration::from_millis(millis as u64))),
            _ => None,
        }
    }

    fn millis(self) -> i64 {
        match self {
            Purge::Never => -1,
            Purge::After(delay) => i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Sets the purge delay for the whole process, from now on. Memory already scheduled for a
/// purge keeps its time. Call it once, as a service starts: mimalloc's options are plain
/// words, read without a lock by every thread that frees.
pub fn set_purge(purge: Purge) {
    let millis = c_long::try_from(purge.millis()).unwrap_or(c_long::MAX);
    // SAFETY: an option index inside mimalloc's table and a plain integer value.
    unsafe { ffi::mi_option_set(PURGE_DELAY, millis) }
}

/// The purge delay in force.
pub fn purge() -> Purge {
    // SAFETY: an option index inside mimalloc's table.
    // `c_long` is 32 bits on some targets, where this conversion is not the identity.
    #[allow(clippy::useless_conversion)]
    let millis = i64::from(unsafe { ffi::mi_option_get(PURGE_DELAY) });
    Purge::from_millis(millis).unwrap_or(Purge::Never)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_reads_milliseconds_or_minus_one_for_never() {
        assert_eq!(Purge::from_millis(-1), Some(Purge::Never));
        assert_eq!(Purge::from_millis(0), Some(Purge::After(Duration::ZERO)));
        assert_eq!(Purge::from_millis(10_000), Some(Purge::After(Duration::from_secs(10))));
        assert_eq!(Purge::from_millis(-2), None);
        assert_eq!(Purge::Never.millis(), -1);
    }

    /// The only test of this library that touches mimalloc's options: they are the process's.
    #[test]
    fn the_option_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc 3's documented default; another index would read another option's.
            assert_eq!(purge(), Purge::After(Duration::from_secs(1)));
        }
        let before = purge();
        set_purge(Purge::Never);
        assert_eq!(purge(), Purge::Never);
        set_purge(Purge::After(Duration::from_secs(10)));
        assert_eq!(purge(), Purge::After(Duration::from_secs(10)));
        set_purge(before);
    }
}
