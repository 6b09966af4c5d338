//! What `callbridge load` is asked to run: the options, and reading the rates and
//! limits given on the command line.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::PbxKind;
use crate::tools::sim::retailcrm::RateLimit;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which PBX is simulated: Asterisk (AMI) or FreeSWITCH (event socket).
    pub pbx: PbxKind,
    pub calls: usize,
    pub concurrent: usize,
    /// New calls per second.
    pub rate: f64,
    /// Stop starting calls after this long.
    pub duration: Option<Duration>,
    /// How much faster than recorded the calls go; `None`: as fast as needed for
    /// `concurrent` calls at `rate` (never slower than recorded).
    pub speed: Option<f64>,
    pub crm_latency: Duration,
    /// `None`: no limit on either side.
    pub crm_rate_limit: Option<RateLimit>,
    pub daemon: Daemon,
    /// Where the simulators listen (port 0: any free port).
    pub ami_listen: SocketAddr,
    pub crm_listen: SocketAddr,
    /// How long to wait for the last calls' records after the last call ended.
    pub drain: Duration,
    /// A progress bar (when on a terminal) or a line every few seconds.
    pub progress: bool,
}

/// The daemon under load.
#[derive(Debug, Clone)]
pub enum Daemon {
    /// This binary's `run`, with a generated configuration; `store` is its `[store] url`
    /// (`None`: SQLite in a temporary directory).
    Spawn { store: Option<String> },
    /// A `callbridge run` already running with this pid, configured for the simulators'
    /// addresses (see `callbridge load --help`).
    Pid(u32),
}

/// `200/s`, `200` or `12000/min` → calls per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, per) = match s.split_once('/') {
        Some((n, unit)) => (
            n,
            match unit.trim() {
                "s" | "sec" => 1.0,
                "min" | "m" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("unknown unit {other:?}; use /s, /min or /h")),
            },
        ),
        None => (s, 1.0),
    };
    match n.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v / per),
        _ => Err(format!("expected a rate like 200/s, got {s:?}")),
    }
}

/// A CRM rate limit given on the command line (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmLimit(pub Option<RateLimit>);

/// `none`, `real` (retailCRM's 10/s and 40/s for telephony) or `G/T` (per second).
pub fn parse_rate_limit(s: &str) -> Result<CrmLimit, String> {
    parse_limit(s).map(CrmLimit)
}

fn parse_limit(s: &str) -> Result<Option<RateLimit>, String> {
    match s.trim() {
        "none" => Ok(None),
        "real" => Ok(Some(RateLimit::REAL)),
        other => {
            let (g, t) = other.split_once('/').unwrap_or((other, other));
            match (g.trim().parse::<u32>(), t.trim().parse::<u32>()) {
                (Ok(g), Ok(t)) if g > 0 && t > 0 => Ok(Some(RateLimit {
                    per_sec: g,
                    telephony_per_sec: t,
                })),
                _ => Err(format!(
                    "expected none, real or GENERAL/TELEPHONY per second like 10/40, got {s:?}"
                )),
            }
        }
    }
}

/// Whether to show progress: always, as a bar on a terminal or lines otherwise.
pub fn default_progress() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_limits_parse_or_say_why_not() {
        assert_eq!(parse_rate("200/s"), Ok(200.0));
        assert_eq!(parse_rate("120/min"), Ok(2.0));
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_limit("none"), Ok(None));
        assert_eq!(
            parse_rate_limit("real"),
            Ok(CrmLimit(Some(RateLimit::REAL)))
        );
        assert_eq!(
            parse_limit("20/80"),
            Ok(Some(RateLimit {
                per_sec: 20,
                telephony_per_sec: 80
            }))
        );
        assert!(parse_rate_limit("0/1").is_err());
    }
}
