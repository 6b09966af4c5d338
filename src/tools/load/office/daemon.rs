//! The daemon under load: started as `callbridge run` with a configuration written for
//! the simulators, stopped the way systemd stops it, and its CPU time and memory read
//! from `/proc` while it works.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::options::LoadOptions;
use super::play::Wire;
use crate::config::PbxKind;
use crate::tools::sim::retailcrm::RetailCrmSim;

/// The AMI login the spawned daemon uses against the simulator.
pub(super) const AMI_USER: &str = "callbridge";
pub(super) const AMI_SECRET: &str = "load-run-secret";
pub(super) const PBX_NAME: &str = "load";

pub(super) fn spawn_daemon(
    opts: &LoadOptions,
    store: Option<&str>,
    dir: &std::path::Path,
    ami: &Wire,
    crm: &RetailCrmSim,
) -> anyhow::Result<Child> {
    let store = store
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("load.db").display()));
    // The daemon keeps to the CRM's limit as it would to the real one's.
    let (general, telephony) = match opts.crm_rate_limit {
        Some(l) => (l.per_sec, l.telephony_per_sec),
        None => (100_000, 100_000),
    };
    let config = format!(
        r#"[store]
url = "{store}"
[http]
listen = "127.0.0.1:0"
link_secret = "load-run-link-secret"
[[pbx]]
name = "{PBX_NAME}"
host = "127.0.0.1"
port = {ami_port}
secret = "{AMI_SECRET}"
stale_call_timeout = "1h"
{login}
[crm]
kind = "retailcrm"
url = "{crm_url}"
api_key = "{key}"
rate_limit_per_sec = {general}
telephony_rate_limit_per_sec = {telephony}
[employees]
senior = [7]
[employees.extensions]
"101" = 3
"102" = 4
[log]
level = "warn"
"#,
        ami_port = ami.addr().port(),
        login = match opts.pbx {
            PbxKind::Asterisk => format!("kind = \"asterisk\"\nusername = \"{AMI_USER}\""),
            PbxKind::FreeSwitch => "kind = \"freeswitch\"".to_string(),
        },
        crm_url = crm.base_url(),
        key = crate::tools::sim::retailcrm::DEFAULT_API_KEY,
    );
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, config).context("writing the daemon's configuration")?;
    let log = std::fs::File::create(dir.join("daemon.log")).context("the daemon's log file")?;
    let exe = std::env::current_exe().context("finding this binary")?;
    Command::new(exe)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting `callbridge run`")
}

/// SIGTERM, as systemd stops it; SIGKILL after 20 s.
pub(super) fn stop_daemon(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The daemon's resources at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProcStats {
    pub(super) cpu: Duration,
    pub(super) rss: u64,
    pub(super) hwm: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) live: usize,
    pub(super) rss: u64,
    pub(super) hwm: u64,
}

/// `/proc/<pid>`: user + system CPU time, resident memory now and at its peak.
pub(super) fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the command name (which may hold spaces): state is the first.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after the name.
    let cpu = Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(ProcStats {
        cpu,
        rss: kb("VmRSS:"),
        hwm: kb("VmHWM:"),
    })
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    100.0
}

pub(super) async fn sample(
    pid: u32,
    live: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = every.tick() => {
                if let Ok(s) = proc_stats(pid) {
                    samples.push(Sample { live: live.load(Ordering::Relaxed), rss: s.rss, hwm: s.hwm });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stats_reads_this_process() {
        let s = proc_stats(std::process::id()).expect("own /proc entry");
        assert!(s.rss > 0 && s.hwm >= s.rss);
    }
}
