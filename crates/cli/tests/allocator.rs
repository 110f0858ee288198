//! What the query service asks of the allocator is what the allocator the binary links does:
//! memory freed while purging is off stays resident; a lazy purge leaves it resident but marked
//! for the kernel to take (`LazyFree`); a purge that returns it lowers the resident memory. A
//! test binary of its own, because mimalloc's options belong to the whole process.

use std::time::Duration;

use libmimalloc_sys as ffi;
use observatory_cli::allocator::{self, Purge};

const BLOCK: i64 = 256 << 20;

/// The process's resident memory in bytes (`statm`'s resident pages).
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }
}

/// Of it, what the process has offered back to the kernel, in bytes (`LazyFree`).
fn lazy_free() -> i64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    let line = rollup.lines().find(|l| l.starts_with("LazyFree:")).expect("a LazyFree line");
    line.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 1024
}

/// How resident and lazily freed memory moved over a 256 MiB block written to and freed.
fn after_a_freed_block() -> (i64, i64) {
    let (resident_before, lazy_before) = (resident(), lazy_free());
    // SAFETY: a fresh mimalloc block, written within its size, then freed once.
    unsafe {
        let block = ffi::mi_malloc(BLOCK as usize).cast::<u8>();
        assert!(!block.is_null(), "mimalloc could not allocate {BLOCK} bytes");
        std::ptr::write_bytes(block, 1, BLOCK as usize);
        ffi::mi_free(block.cast());
        ffi::mi_collect(true);
    }
    (resident() - resident_before, lazy_free() - lazy_before)
}

#[test]
fn freed_memory_is_kept_offered_lazily_or_returned_as_told() {
    // Kept: the block stays resident after it is freed.
    allocator::set_purge(Purge::Never);
    let (kept, _) = after_a_freed_block();
    assert!(kept > BLOCK * 3 / 4, "purging off: {kept} of {BLOCK} bytes stayed resident");

    // Offered lazily (MADV_FREE): the same memory, reused and freed again, stays resident but
    // the kernel may take it.
    allocator::set_purge(Purge::After(Duration::ZERO));
    allocator::set_decommits(false);
    let (moved, lazy) = after_a_freed_block();
    assert!(moved > -BLOCK / 4, "a lazy purge lowered resident memory by {} bytes", -moved);
    assert!(lazy > BLOCK * 3 / 4, "a lazy purge marked {lazy} of {BLOCK} bytes LazyFree");

    // Returned (MADV_DONTNEED): resident memory falls by the block.
    allocator::set_decommits(true);
    let (moved, _) = after_a_freed_block();
    assert!(moved < -BLOCK / 2, "returning moved resident memory by {moved} bytes, not down");
}
