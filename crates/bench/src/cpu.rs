//! CPU time of the processes sharing the machine during a measurement, from `/proc`: on two
//! cores the client, the service and nats-server compete, and this says who used what.

use serde::Serialize;

/// Processes to watch besides this one.
#[derive(Debug, Clone, Default)]
pub struct Pids {
    /// Every nats-server process: one, or the nodes of a cluster, whose CPU is summed.
    pub nats: Vec<u32>,
    pub service: Option<u32>,
}

/// CPU seconds (user + system) consumed so far.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    nats: Option<f64>,
    service: Option<f64>,
    bench: Option<f64>,
}

/// CPU microseconds per event, per process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerProcess {
    /// Summed over the nodes of a cluster.
    pub nats_server: Option<f64>,
    pub service: Option<f64>,
    pub bench_client: Option<f64>,
}

fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is parenthesised and may contain spaces.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks > 0.0).then(|| (utime + stime) / ticks)
}

fn of(pid: u32) -> Option<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The CPU time of all of `pids`; `None` if any is unreadable, since a sum missing a node
/// would pass for a lower cost.
fn sum_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| of(pid)).sum()
}

/// CPU seconds the calling thread has used.
pub fn thread_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write to; the clock id is a constant Linux knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

pub fn sample(pids: &Pids) -> Sample {
    Sample {
        nats: sum_of(&pids.nats),
        service: pids.service.and_then(of),
        bench: cpu_seconds("/proc/self/stat"),
    }
}

impl Sample {
    pub fn since(&self, before: &Sample, events: u64) -> PerProcess {
        let per =
            |now: Option<f64>, then: Option<f64>| Some((now? - then?) * 1e6 / events.max(1) as f64);
        PerProcess {
            nats_server: per(self.nats, before.nats),
            service: per(self.service, before.service),
            bench_client: per(self.bench, before.bench),
        }
    }
}
