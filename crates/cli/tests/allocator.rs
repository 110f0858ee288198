//! The query service's purge delay acts on the allocator the binary links: memory freed while
//! purging is off stays resident, and is given back once purging is on again. A test binary of
//! its own, because mimalloc's options belong to the whole process.

use std::time::Duration;

use libmimalloc_sys as ffi;
use observatory_cli::allocator::{self, Purge};

const BLOCK: usize = 256 << 20;

/// The process's resident memory, in bytes (`/proc/self/statm`, second field, in pages).
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }
}

/// How much resident memory a 256 MiB block leaves behind once written to and freed.
fn left_resident_after_a_block() -> i64 {
    let before = resident();
    // SAFETY: a fresh mimalloc block, written within its size, then freed once.
    unsafe {
        let block = ffi::mi_malloc(BLOCK).cast::<u8>();
        assert!(!block.is_null(), "mimalloc could not allocate {BLOCK} bytes");
        std::ptr::write_bytes(block, 1, BLOCK);
        ffi::mi_free(block.cast());
        ffi::mi_collect(true);
    }
    resident() - before
}

#[test]
fn freed_memory_stays_while_purging_is_off_and_goes_back_once_it_is_on() {
    allocator::set_purge(Purge::Never);
    let kept = left_resident_after_a_block();
    assert!(
        kept > (BLOCK as i64) * 3 / 4,
        "with purging off, {kept} bytes of a {BLOCK}-byte block stayed resident"
    );

    // The same memory, used and freed again with an immediate purge, goes back.
    allocator::set_purge(Purge::After(Duration::ZERO));
    let left = left_resident_after_a_block();
    assert!(
        left < -(BLOCK as i64) / 2,
        "with an immediate purge, resident memory moved by {left} bytes over a freed {BLOCK}-byte block"
    );
}
