//! Logs as an administrator reads them with `journalctl`: `[log] format = "json"` gives
//! one JSON object per line, at the level `[log] level` sets, and every line about a call
//! carries the call's span (PBX, call id, direction), so one call can be followed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::RetailCrmSim;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_the_configured_level_follow_one_call_by_its_span() {
    let pbx = AmiSim::start(common::ami_options()).await.expect("AMI sim");
    let crm = RetailCrmSim::start(common::crm_options())
        .await
        .expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = common::config_toml(
        pbx.addr().port(),
        &crm.base_url(),
        &dir.path().join("cb.db"),
        "",
    ) + "[log]\nformat = \"json\"\nlevel = \"info\"\n";
    let path = dir.path().join("callbridge.toml");
    std::fs::write(&path, toml).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let daemon = common::DaemonProcess::adopt(child);
    assert!(pbx.wait_for_logins(1, Duration::from_secs(20)).await);
    pbx.play(&common::fixture("iax2/inbound_answered"), 20.0)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while crm.state().calls.is_empty() {
        assert!(Instant::now() < deadline, "the call in the history");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.terminate();
    let mut daemon = daemon;
    let logs = daemon.logs();

    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{logs}");
    for line in &lines {
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&level),
            "below the configured level: {line}"
        );
    }
    // The call's own lines, found by its span as `journalctl -o cat | jq` would.
    let call: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["call_id"] == "1795627488.2")
        .collect();
    let messages: Vec<&str> = call
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    for stage in ["ringing", "answered", "ended"] {
        assert!(
            messages.contains(&stage),
            "{stage} missing from {messages:?}"
        );
    }
    for line in &call {
        assert_eq!(line["span"]["name"], "call");
        assert_eq!(line["span"]["pbx"], "office");
        assert_eq!(line["span"]["direction"], "inbound");
    }
    pbx.stop();
    crm.shutdown();
}
