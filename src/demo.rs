//! `callbridge demo`: what a new user runs first. Starts the built-in Asterisk AMI and
//! retailCRM simulators on 127.0.0.1, runs the real daemon against them with a SQLite
//! store in a temporary directory, plays calls recorded from a real Asterisk 22, and
//! prints what the CRM received for each call.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::daemon;
use crate::sim::ami::{AmiSim, AmiSimOptions, Transcript};
use crate::sim::retailcrm::{RetailCrmSim, SimOptions, SimState};

/// The recorded calls the demo plays: (title, transcript, read timing).
const CALLS: &[(&str, &[u8], &str)] = &[
    (
        "inbound, answered by 101",
        include_bytes!("../tests/fixtures/asterisk/iax2/inbound_answered.ami"),
        include_str!("../tests/fixtures/asterisk/iax2/inbound_answered.timing"),
    ),
    (
        "inbound, missed (caller gave up while 101 rang)",
        include_bytes!("../tests/fixtures/asterisk/iax2/inbound_missed.ami"),
        include_str!("../tests/fixtures/asterisk/iax2/inbound_missed.timing"),
    ),
    (
        "outbound from 101, answered",
        include_bytes!("../tests/fixtures/asterisk/iax2/outbound_answered.ami"),
        include_str!("../tests/fixtures/asterisk/iax2/outbound_answered.timing"),
    ),
];

pub async fn run(speed: f64) -> anyhow::Result<()> {
    crate::logging::init("warn", false);
    let crm = RetailCrmSim::start(SimOptions::default())
        .await
        .context("starting the retailCRM simulator")?;
    let ami_options = AmiSimOptions::default();
    let pbx = AmiSim::start(ami_options.clone())
        .await
        .context("starting the AMI simulator")?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let db = dir.path().join("callbridge.db");

    let toml = format!(
        r#"
[store]
url = "sqlite://{db}"
[http]
listen = "127.0.0.1:0"
link_secret = "demo-link-secret"
[[pbx]]
name = "office"
kind = "asterisk"
host = "127.0.0.1"
port = {ami_port}
username = "{user}"
secret = "{secret}"
[crm]
kind = "retailcrm"
url = "{crm_url}"
api_key = "{api_key}"
[employees]
senior = [7]
[employees.extensions]
"101" = 3
"102" = 4
"#,
        db = db.display(),
        ami_port = pbx.addr().port(),
        user = ami_options.username,
        secret = ami_options.secret,
        crm_url = crm.base_url(),
        api_key = SimOptions::default().api_key,
    );
    let cfg =
        config::from_toml_str(&toml).map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;

    println!("callbridge demo");
    println!("  Asterisk AMI simulator   127.0.0.1:{}", pbx.addr().port());
    println!("  retailCRM simulator      {}", crm.base_url());
    println!("  store                    {}", db.display());

    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = oneshot::channel();
    let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(ready_tx)));
    let running = match ready_rx.await {
        Ok(r) => r,
        Err(_) => {
            let result = daemon.await.context("daemon task")?;
            result?;
            bail!("the daemon stopped before it was ready");
        }
    };
    println!(
        "  health                   http://{}/health",
        running.http_addr
    );
    if !pbx.wait_for_logins(1, Duration::from_secs(10)).await {
        bail!("the daemon did not log in to the AMI simulator within 10 s");
    }
    println!();
    println!(
        "Playing {} calls recorded from a real Asterisk 22 at {speed}x speed ...",
        CALLS.len()
    );
    for (title, ami, timing) in CALLS {
        let transcript =
            Transcript::from_recording(ami, timing).context("reading a recorded call")?;
        println!("  - {title}");
        pbx.play(&transcript, speed).await;
    }

    // Wait until every call has ended and every CRM action was delivered (or parked).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let calls = running.store.calls().await?;
        let counts = running.store.outbox_counts().await?;
        if calls.len() >= CALLS.len()
            && calls.iter().all(|c| c.stage == "ended")
            && counts.pending == 0
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("calls were not all delivered within 30 s: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let state = crm.state();
    let calls = running.store.calls().await?;
    let actions = running.store.actions().await?;
    println!();
    println!("What callbridge saw, and what retailCRM received:");
    for call in &calls {
        println!();
        println!(
            "{}  {}  {}  {} -> {}",
            call.id,
            call.direction,
            call.outcome.as_deref().unwrap_or("-"),
            call.customer_number.as_deref().unwrap_or("?"),
            call.did
                .as_deref()
                .or(call.employee.as_deref())
                .unwrap_or("?"),
        );
        print_crm_side(&state, &call.id);
        for a in actions
            .iter()
            .filter(|a| a.call_id == call.id && a.state != "done")
        {
            println!(
                "    outbox #{} {} is {}: {}",
                a.id,
                a.kind,
                a.state,
                a.last_error.as_deref().unwrap_or("")
            );
        }
    }
    let counts = running.store.outbox_counts().await?;
    println!();
    println!(
        "Outbox: {} delivered, {} pending, {} dead.  Requests the CRM answered: {}.",
        counts.done,
        counts.pending,
        counts.dead,
        state.requests.len()
    );

    shutdown.cancel();
    daemon.await.context("daemon task")??;
    pbx.stop();
    crm.shutdown();
    if counts.dead > 0 {
        bail!("{} CRM actions were refused; see above", counts.dead);
    }
    Ok(())
}

fn print_crm_side(state: &SimState, call_id: &str) {
    let mut rows: Vec<[String; 3]> = Vec::new();
    for e in state
        .call_events
        .iter()
        .filter(|e| e.call_external_id.as_deref() == Some(call_id))
    {
        let what = match e.r#type.as_str() {
            "in" => format!("pop-up: incoming call from {}", e.phone),
            "out" => format!("pop-up: outgoing call to {}", e.phone),
            _ => format!(
                "pop-up closed: {}",
                e.hangup_status.as_deref().unwrap_or("-")
            ),
        };
        rows.push([
            "POST /api/v5/telephony/call/event".into(),
            format!("type={}", e.r#type),
            format!("{what}; codes {}", e.codes.join(",")),
        ]);
    }
    for c in state
        .calls
        .iter()
        .filter(|c| c.external_id.as_deref() == Some(call_id))
    {
        rows.push([
            "POST /api/v5/telephony/calls/upload".into(),
            format!("type={}", c.r#type),
            format!(
                "history: {} {}, code {}, talk {} s, waited {} s, at {}",
                c.phone,
                c.result.as_deref().unwrap_or("-"),
                c.code.as_deref().unwrap_or("-"),
                c.duration.unwrap_or(0),
                c.duration_waiting.unwrap_or(0),
                c.date
            ),
        ]);
    }
    if rows.is_empty() {
        println!("    (nothing in the CRM)");
    }
    for [path, kind, what] in rows {
        println!("    {path:<37} {kind:<12} {what}");
    }
}
