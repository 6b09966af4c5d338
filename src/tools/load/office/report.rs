//! The figures of a run: latency percentiles, effects, throughput, the daemon's CPU and
//! memory; written for a person or as JSON.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::timing::LATE_AFTER;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: usize,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>) -> Percentiles {
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1]
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: ms[ms.len() - 1],
            count: ms.len(),
        }
    }
}

/// The figures of a run (`--json` writes this).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub calls: usize,
    pub popup_latency_ms: Percentiles,
    pub history_latency_ms: Percentiles,
    pub wrong_effects: usize,
    pub missing_effects: usize,
    /// Calls whose history record came more than `LATE_AFTER` later than the CRM's rate
    /// limit forced (see `timing::lateness`).
    pub late_histories: usize,
    /// The most any call's history record came later than the rate limit forced.
    pub late_history_worst_ms: f64,
    /// The first few effects that were wrong or missing, said in words.
    pub effect_problems: Vec<String>,
    pub events: usize,
    pub events_per_sec: f64,
    pub calls_per_sec: f64,
    pub concurrent_peak: usize,
    pub play_secs: f64,
    pub speed: f64,
    pub daemon_cpu_s: f64,
    pub daemon_rss_peak_bytes: u64,
    pub daemon_rss_idle_bytes: u64,
    pub rss_per_live_call_bytes: u64,
    pub crm_latency_ms: f64,
    pub crm_rate_limit: String,
    /// Requests the CRM took (past its rate limit), by method and path.
    pub crm_requests: std::collections::BTreeMap<String, usize>,
    pub mix: Vec<MixShare>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MixShare {
    pub kind: &'static str,
    pub calls: usize,
}

impl LoadReport {
    /// The figures for a person.
    pub fn text(&self) -> String {
        let p = |l: &Percentiles| {
            format!(
                "p50 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms ({} calls)",
                l.p50, l.p99, l.p999, l.max, l.count
            )
        };
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mut out = String::new();
        out.push_str(&format!(
            "calls: {} in {:.1} s ({:.1} calls/s, peak {} in progress, played {:.2}x faster than recorded)\n",
            self.calls, self.play_secs, self.calls_per_sec, self.concurrent_peak, self.speed
        ));
        out.push_str(&format!(
            "events: {} ({:.0} events/s)\n",
            self.events, self.events_per_sec
        ));
        out.push_str(&format!(
            "ring → pop-up:     {}\n",
            p(&self.popup_latency_ms)
        ));
        out.push_str(&format!(
            "hang-up → history: {}\n",
            p(&self.history_latency_ms)
        ));
        out.push_str(&format!(
            "late histories:    {} calls more than {} s later than the CRM's rate limit forced (worst {:.0} ms later)\n",
            self.late_histories,
            LATE_AFTER.as_secs(),
            self.late_history_worst_ms
        ));
        out.push_str(&format!(
            "CRM: answers after {:.0} ms, rate limit {}\n",
            self.crm_latency_ms, self.crm_rate_limit
        ));
        let requests: usize = self.crm_requests.values().sum();
        out.push_str(&format!(
            "CRM requests: {requests} ({:.1} per call)\n",
            requests as f64 / self.calls.max(1) as f64
        ));
        out.push_str(&format!(
            "daemon: {:.2} s CPU, RSS peak {:.1} MiB (idle {:.1} MiB), {:.1} KiB per live call\n",
            self.daemon_cpu_s,
            mib(self.daemon_rss_peak_bytes),
            mib(self.daemon_rss_idle_bytes),
            self.rss_per_live_call_bytes as f64 / 1024.0
        ));
        out.push_str(&format!(
            "effects: {} wrong, {} missing\n",
            self.wrong_effects, self.missing_effects
        ));
        for problem in &self.effect_problems {
            out.push_str(&format!("  {problem}\n"));
        }
        out
    }
}

/// The path `--json` writes to, created with its figures.
pub fn write_json(report: &LoadReport, path: &PathBuf) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_rank() {
        let p = Percentiles::of((1..=1000).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
