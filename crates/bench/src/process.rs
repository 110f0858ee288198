//! Child processes of the real binary (`observatory ingest|query|rebuild|agency`), the way an
//! operator runs them, so every figure includes the real process boundaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The `observatory` binary running this bench.
pub fn observatory_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the running observatory binary")
}

/// A free loopback port. Another process could take it before the child binds it; on this
/// single-user bench that race is theoretical.
pub fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The last lines of a child's log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `observatory agency add <id>`; returns the token (its only stdout line).
pub fn add_agency(data_dir: &Path, id: &str, name: &str) -> Result<String> {
    let output = Command::new(observatory_exe()?)
        .args(["agency", "add", id, "--name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `observatory agency add`")?;
    if !output.status.success() {
        bail!("`observatory agency add {id}` failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let token = String::from_utf8(output.stdout)?.trim().to_owned();
    if token.is_empty() || token.contains('\n') {
        bail!("`observatory agency add {id}` did not print one token");
    }
    Ok(token)
}

/// A long-running service child (`ingest`, `query`), killed when dropped.
pub struct Service {
    child: tokio::process::Child,
    pub base_url: String,
    pub log: PathBuf,
}

impl Service {
    /// Starts `observatory <args…> --http 127.0.0.1:<free port>` and waits for `/health`.
    pub async fn start(args: &[String], log: PathBuf, client: &reqwest::Client) -> Result<Service> {
        let port = free_port()?;
        let child = tokio::process::Command::new(observatory_exe()?)
            .args(args)
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log.with_extension("stderr.log"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start observatory {}", args.join(" ")))?;
        let mut service = Service { child, base_url: format!("http://127.0.0.1:{port}"), log };
        service.wait_healthy(client, Duration::from_secs(120)).await?;
        Ok(service)
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let url = format!("{}/health", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the service exited ({status}) before it was healthy:\n{}",
                    log_tail(&self.stderr_log())
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the service was not healthy within {timeout:?}:\n{}",
                    log_tail(&self.stderr_log())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stderr_log(&self) -> PathBuf {
        self.log.with_extension("stderr.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// How a measured child ended.
#[derive(Debug, Clone, Copy)]
pub struct ChildUsage {
    pub wall: Duration,
    /// Peak resident set size (`ru_maxrss` from `wait4`), in bytes.
    pub peak_rss_bytes: u64,
    pub user: Duration,
    pub system: Duration,
}

/// The `kB` figure of the line `name` (`"VmHWM:"`) in a `/proc` file's text.
pub(crate) fn kib_line(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmHWM` of a running process, in bytes.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(kib_line(&status, "VmHWM:")? * 1024)
}

/// Runs `observatory <args…>` to completion: its CPU time from `wait4`, its peak RSS from its
/// own high-water mark sampled every 20 ms (the last sample is at most that old at its exit).
pub async fn run_measured(args: Vec<String>, log: PathBuf) -> Result<ChildUsage> {
    let exe = observatory_exe()?;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let child = Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log.with_extension("stderr.log"))?)
            .spawn()
            .with_context(|| format!("cannot start observatory {}", args.join(" ")))?;
        let pid = child.id() as libc::pid_t;
        // The peak RSS is the child's own high-water mark, read from /proc while it runs:
        // `ru_maxrss` is not, since a child spawned with vfork (as `Command` does) has the
        // parent's high-water mark carried into its own at exec, and after the ingest stage
        // the bench itself holds gigabytes (a 3M rebuild "peaked" at 5.6 GiB).
        let running = Arc::new(AtomicBool::new(true));
        let sampler = std::thread::spawn({
            let running = running.clone();
            move || {
                let mut peak = 0u64;
                while running.load(Ordering::Relaxed) {
                    peak = peak.max(high_water_mark(pid as u32).unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak
            }
        });
        let mut status: libc::c_int = 0;
        // SAFETY: plain FFI calls with pointers to locals. The child is ours and nothing else
        // waits for it (dropping a std `Child` neither waits nor kills).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = loop {
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break r;
        };
        drop(child);
        let wall = started.elapsed();
        running.store(false, Ordering::Relaxed);
        let peak_rss_bytes = sampler.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        if waited != pid {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if !exited_ok {
            bail!(
                "observatory {} failed (wait status {status}):\n{}",
                args.join(" "),
                log_tail(&log.with_extension("stderr.log"))
            );
        }
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Ok(ChildUsage {
            wall,
            peak_rss_bytes,
            user: time(usage.ru_utime),
            system: time(usage.ru_stime),
        })
    })
    .await?
}
