//! The nettings of new manifests run in polars' thread pool, in the background, on the cores
//! that also answer requests. On two cores a netting's two pool threads and a request's async
//! worker are three busy threads, and the request, which needs a few milliseconds of CPU, waits
//! its turn behind work nobody is waiting for. Running the pool at a lower priority lets the
//! request go first while the netting still has every idle cycle.

use std::io;

/// Lowers each thread of polars' pool by `by` nice steps (capped at 19, the lowest priority):
/// the threads that run every polars computation of this process, the background nettings'
/// included. The async workers that answer requests keep their priority. Returns how many
/// threads were lowered.
///
/// Unprivileged processes may lower a thread's priority but never raise it again, so this is
/// for a process that serves requests for the rest of its life (`observatory query`, `serve`).
pub fn lower_polars_pool(by: u8) -> io::Result<usize> {
    let lowered = polars_core::runtime::THREAD_POOL.broadcast(|_| lower_current_thread(by));
    lowered.into_iter().collect::<io::Result<Vec<()>>>().map(|threads| threads.len())
}

/// The nice value of the calling thread.
#[cfg(target_os = "linux")]
pub fn current_thread_nice() -> io::Result<i32> {
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::gettid() } as libc::id_t;
    // getpriority may legitimately answer -1, so only errno tells a failure apart.
    // SAFETY: __errno_location points at this thread's errno; getpriority has no preconditions.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, thread)
    };
    match io::Error::last_os_error() {
        error if nice == -1 && error.raw_os_error().is_some_and(|code| code != 0) => Err(error),
        _ => Ok(nice),
    }
}

#[cfg(target_os = "linux")]
fn lower_current_thread(by: u8) -> io::Result<()> {
    let nice = (current_thread_nice()? + i32::from(by)).min(19);
    // On Linux a nice value belongs to a thread, and PRIO_PROCESS with a thread id sets that
    // thread's alone (setpriority(2), NOTES).
    // SAFETY: gettid and setpriority have no preconditions.
    let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if set == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(not(target_os = "linux"))]
pub fn current_thread_nice() -> io::Result<i32> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "per-thread priorities are set on Linux only"))
}

#[cfg(not(target_os = "linux"))]
fn lower_current_thread(_: u8) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "per-thread priorities are set on Linux only"))
}
