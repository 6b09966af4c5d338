//! The short variant of `callbridge load` (README, "Load run"): the real binary plays a
//! small office of recorded calls (Asterisk, then FreeSWITCH) into a `callbridge run` it starts, and writes its
//! figures. Every call's CRM effects must be there, once; the figures must be present.
//! (The full run, 1,000 calls at once, is a command, not a test.)

use std::process::Command;

#[test]
fn load_run_plays_an_office_into_the_real_daemon_and_reports_every_figure() {
    load_run("asterisk");
}

#[test]
fn load_run_plays_a_freeswitch_office_too() {
    load_run("freeswitch");
}

fn load_run(pbx: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("load.json");
    let out = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args([
            "load",
            "--pbx",
            pbx,
            "--calls",
            "48",
            "--concurrent",
            "16",
            "--rate",
            "16/s",
            "--crm-latency",
            "10ms",
            "--drain",
            "30s",
            "--json",
        ])
        .arg(&json)
        .env_remove("RUST_LOG")
        .output()
        .expect("run callbridge load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "ring → pop-up:",
        "hang-up → history:",
        "late histories:",
        "daemon:",
        "effects:",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    // Not a terminal: plain progress lines.
    assert!(stderr.contains("calls ended"), "{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid JSON");
    assert_eq!(report["calls"], 48);
    assert_eq!(report["wrong_effects"], 0, "{report:#}");
    assert_eq!(report["missing_effects"], 0, "{report:#}");
    for key in ["popup_latency_ms", "history_latency_ms"] {
        for p in ["p50", "p99", "p999", "max"] {
            assert!(
                report[key][p].as_f64().is_some_and(|v| v > 0.0),
                "{key}.{p}: {report:#}"
            );
        }
    }
    // Every inbound call had its pop-up timed, every call its history.
    let inbound: u64 = report["mix"]
        .as_array()
        .expect("mix")
        .iter()
        .filter(|m| !m["kind"].as_str().unwrap_or("").starts_with("outbound"))
        .map(|m| m["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(report["popup_latency_ms"]["count"], inbound);
    assert_eq!(report["history_latency_ms"]["count"], 48);
    assert!(report["rss_per_live_call_bytes"].as_u64().is_some());
    // How late beyond the rate limit is a figure, not a pass mark here (timing).
    assert!(report["late_histories"].as_u64().is_some(), "{report:#}");
    assert!(
        report["late_history_worst_ms"].as_f64().is_some(),
        "{report:#}"
    );
    for key in ["events_per_sec", "daemon_cpu_s", "daemon_rss_peak_bytes"] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report:#}"
        );
    }
}
