//! What the crash tests share: their sizes from the environment, the calls a transcript
//! holds, and a player that holds a call's bytes while no daemon is connected.

use std::collections::HashSet;
use std::time::Duration;

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::transcript::Transcript;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::DaemonProcess;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `Linkedid`s of a transcript: the calls it holds.
pub fn linkedids(t: &Transcript) -> HashSet<String> {
    let bytes = t.bytes();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("Linkedid: "))
        .map(|s| s.trim().to_string())
        .collect()
}

/// Plays a call with its recorded pace (sped up), holding each piece until a daemon is
/// connected to take it.
pub async fn play_held(pbx: AmiSim, t: Transcript, speed: f64) {
    let mut previous = t.chunks.first().map(|(at, _)| *at).unwrap_or_default();
    for (at, chunk) in t.chunks {
        tokio::time::sleep(at.saturating_sub(previous).div_f64(speed)).await;
        previous = at;
        while pbx.connected() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pbx.send_raw(chunk);
    }
}

/// Kills `daemon` with SIGKILL `kills` times, each after `alive_ms` (a random span in
/// it), and starts `callbridge run --config <config>` again after a short pause; the
/// daemon running at the end.
pub fn killer(
    daemon: DaemonProcess,
    config: std::path::PathBuf,
    log: String,
    kills: usize,
    alive_ms: std::ops::Range<u64>,
) -> tokio::task::JoinHandle<DaemonProcess> {
    tokio::spawn(async move {
        let mut rng = StdRng::from_entropy();
        let mut daemon = daemon;
        for _ in 0..kills {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(alive_ms.clone()))).await;
            let _ = daemon.0.kill(); // SIGKILL
            let _ = daemon.0.wait();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(20..200))).await;
            daemon = DaemonProcess::spawn(&config, &log, false);
        }
        daemon
    })
}
