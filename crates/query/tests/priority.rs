//! Lowering polars' pool: every pool thread ends below the caller, and the caller (a request
//! handler, in a service) keeps its priority. In a process of its own, since the pool is global.

#![cfg(target_os = "linux")]

use observatory_query::{current_thread_nice, lower_polars_pool};

fn pool_nices() -> Vec<i32> {
    polars_core::runtime::THREAD_POOL
        .broadcast(|_| current_thread_nice().expect("a pool thread's nice value"))
}

#[test]
fn the_pool_runs_below_the_caller_which_keeps_its_priority() {
    let caller = current_thread_nice().unwrap();
    let before = pool_nices();
    assert!(before.iter().all(|&nice| nice == caller), "{before:?} against {caller}");

    let lowered = lower_polars_pool(4).unwrap();
    assert_eq!(lowered, before.len());
    let after = pool_nices();
    assert!(after.iter().all(|&nice| nice == (caller + 4).min(19)), "{after:?} from {caller}");
    assert_eq!(current_thread_nice().unwrap(), caller, "the caller's priority moved");

    // Lowered again past the lowest priority: capped at 19, not refused.
    lower_polars_pool(19).unwrap();
    assert!(pool_nices().iter().all(|&nice| nice == 19));
    assert_eq!(current_thread_nice().unwrap(), caller);
}
