//! `callbridge demo`: what a new user runs first. Starts the built-in Asterisk AMI,
//! FreeSWITCH event socket and retailCRM simulators on 127.0.0.1, runs the real daemon
//! against them (one daemon, two `[[pbx]]`: the Asterisk office and the FreeSWITCH
//! branch) with a SQLite store in a temporary directory, and plays every row of the call
//! matrix with calls recorded from a real Asterisk 22, then calls recorded from a real
//! FreeSWITCH 1.10: for each, the CRM is first given the caller the row needs (nobody, a
//! client with an open order, a client whose orders are closed), then the call is
//! played and the records it produced in the CRM are printed.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::daemon::{self, Running};
use crate::tools::sim::ami::{AmiSim, AmiSimOptions};
use crate::tools::sim::esl::{self, EslSim, EslSimOptions};
use crate::tools::sim::retailcrm::{RetailCrmSim, SimOptions, SimState};
use crate::tools::sim::transcript::Transcript;
use rows::{Client, Pbx, Row, FS_ROWS, ROWS, ROW_7};

mod creatio;
mod rows;

pub use creatio::run as run_creatio;

/// What both demos run in: the two PBX simulators and a store in a temporary directory.
struct Stage {
    pbx: AmiSim,
    branch: EslSim,
    ami_options: AmiSimOptions,
    esl_options: EslSimOptions,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Stage {
    async fn start() -> anyhow::Result<Stage> {
        let ami_options = AmiSimOptions::default();
        let pbx = AmiSim::start(ami_options.clone())
            .await
            .context("starting the AMI simulator")?;
        let esl_options = EslSimOptions::default();
        let branch = EslSim::start(esl_options.clone())
            .await
            .context("starting the FreeSWITCH event socket simulator")?;
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        Ok(Stage {
            pbx,
            branch,
            ami_options,
            esl_options,
            db: dir.path().join("callbridge.db"),
            _dir: dir,
        })
    }

    /// `[store]`, `[http]` and the two `[[pbx]]`: the office and the branch.
    fn toml(&self) -> String {
        format!(
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
[[pbx]]
name = "branch"
kind = "freeswitch"
host = "127.0.0.1"
port = {esl_port}
secret = "{esl_password}"
"#,
            db = self.db.display(),
            ami_port = self.pbx.addr().port(),
            user = self.ami_options.username,
            secret = self.ami_options.secret,
            esl_port = self.branch.addr().port(),
            esl_password = self.esl_options.password,
        )
    }

    /// The PBX simulators' lines of the banner.
    fn print(&self) {
        println!(
            "  Asterisk AMI simulator            127.0.0.1:{} (the office)",
            self.pbx.addr().port()
        );
        println!(
            "  FreeSWITCH event socket simulator 127.0.0.1:{} (the branch)",
            self.branch.addr().port()
        );
        println!("  store                             {}", self.db.display());
    }

    fn stop(&self) {
        self.pbx.stop();
        self.branch.stop();
    }
}

pub async fn run(speed: f64) -> anyhow::Result<()> {
    crate::ops::logging::init("warn", false);
    let crm = RetailCrmSim::start(SimOptions::default())
        .await
        .context("starting the retailCRM simulator")?;
    let stage = Stage::start().await?;
    let (pbx, branch) = (&stage.pbx, &stage.branch);
    let toml = |create_on: &str| {
        format!(
            r#"{stage}
[crm]
kind = "retailcrm"
url = "{crm_url}"
api_key = "{api_key}"
[employees]
senior = [7]
[employees.extensions]
"101" = 3
[matrix]
create_on = "{create_on}"
"#,
            stage = stage.toml(),
            crm_url = crm.base_url(),
            api_key = SimOptions::default().api_key,
        )
    };

    println!("callbridge demo: every row of the call matrix, with calls recorded from a real Asterisk 22 and a real FreeSWITCH 1.10");
    stage.print();
    println!("  retailCRM simulator               {}", crm.base_url());
    println!("  the people                        Anna (user 3) on 101, Boris (user 4), senior manager Svetlana (user 7); 102 belongs to nobody");

    let mut dead = 0;
    let mut replica = 0;
    for (create_on, rows) in [
        ("answer", ROWS),
        ("answer", FS_ROWS),
        ("ring", std::slice::from_ref(&ROW_7)),
    ] {
        let (running, shutdown, daemon) = start_daemon(&toml(create_on), pbx, branch).await?;
        for row in rows {
            replica += 1;
            play_row(pbx, branch, &crm, &running, row, replica, speed).await?;
        }
        dead += running.store.outbox_counts().await?.dead;
        shutdown.cancel();
        daemon.await.context("daemon task")??;
    }
    let state = crm.state();
    println!();
    println!(
        "The CRM now holds {} customers, {} orders, {} tasks and {} calls in its history; it answered {} requests.",
        state.customers.len(),
        state.orders.len(),
        state.tasks.len(),
        state.calls.len(),
        state.requests.len()
    );
    stage.stop();
    crm.shutdown();
    if dead > 0 {
        bail!("{dead} CRM actions were refused; see `callbridge outbox list --state dead`");
    }
    Ok(())
}

/// Seeds the CRM for `row`, plays its call, waits until everything is delivered and
/// prints what the call made.
async fn play_row(
    pbx: &AmiSim,
    branch: &EslSim,
    crm: &RetailCrmSim,
    running: &Running,
    row: &Row,
    replica: u32,
    speed: f64,
) -> anyhow::Result<()> {
    let seeded = match row.client {
        Client::New => "nobody has this number".to_string(),
        Client::Existing(manager) | Client::Returning(manager) => {
            let open = matches!(row.client, Client::Existing(_));
            let customer = crm
                .seed_customer(json!({
                    "firstName": "Client", "lastName": row.name, "managerId": manager,
                    "phones": [{"number": format!("8{}", row.number)}],
                }))
                .map_err(|e| anyhow::anyhow!("seeding the CRM: {e:?}"))?;
            let order = crm
                .seed_order(json!({"customer": {"id": customer},
                                   "status": if open { "new" } else { "complete" },
                                   "managerId": manager}))
                .map_err(|e| anyhow::anyhow!("seeding the CRM: {e:?}"))?;
            format!(
                "customer #{customer} of {}, order #{order} {}",
                user(manager),
                if open { "open" } else { "complete" }
            )
        }
    };
    let before = crm.state();
    println!();
    println!("Row {}: {}", row.name, row.what);
    println!("  in the CRM before:  {seeded}");
    play_call(pbx, branch, running, row, replica, speed).await?;
    print_made(&before, &crm.state());
    Ok(())
}

/// Starts the daemon with the configuration `toml`; returns once it is connected to
/// both PBX simulators.
async fn start_daemon(
    toml: &str,
    pbx: &AmiSim,
    branch: &EslSim,
) -> anyhow::Result<(Running, CancellationToken, JoinHandle<anyhow::Result<()>>)> {
    let cfg =
        config::from_toml_str(toml).map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;
    let (logins, branch_logins) = (pbx.logins(), branch.logins());
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = oneshot::channel();
    let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(ready_tx)));
    let running = match ready_rx.await {
        Ok(r) => r,
        Err(_) => {
            daemon.await.context("daemon task")??;
            bail!("the daemon stopped before it was ready");
        }
    };
    if !pbx
        .wait_for_logins(logins + 1, Duration::from_secs(10))
        .await
    {
        bail!("the daemon did not log in to the AMI simulator within 10 s");
    }
    if !branch
        .wait_for_logins(branch_logins + 1, Duration::from_secs(10))
        .await
    {
        bail!("the daemon did not subscribe to the FreeSWITCH simulator within 10 s");
    }
    Ok((running, shutdown, daemon))
}

/// Plays the row's recorded call, its caller's number replaced by the row's, and waits
/// until everything it caused was delivered.
async fn play_call(
    pbx: &AmiSim,
    branch: &EslSim,
    running: &Running,
    row: &Row,
    replica: u32,
    speed: f64,
) -> anyhow::Result<()> {
    let (bytes, timing) = row.recording;
    let calls_before = running.store.calls().await?.len();
    match row.pbx {
        Pbx::Asterisk => {
            let call = Transcript::from_recording(bytes, timing)
                .context("reading a recorded call")?
                .replica(replica)
                .with_value(row.recorded_number, row.number);
            pbx.play(&call, speed).await;
        }
        Pbx::FreeSwitch => {
            let call =
                esl::transcript_from_recording(bytes, timing).context("reading a recorded call")?;
            let call = esl::map_event_values(&esl::replica(&call, replica), |_, v| {
                v.replace(row.recorded_number, row.number)
            });
            branch.play(&call, speed).await;
        }
    }
    wait_row(running, row, replica, calls_before).await
}

/// Waits until the row's call ended and everything it caused was delivered.
async fn wait_row(
    running: &Running,
    row: &Row,
    replica: u32,
    calls_before: usize,
) -> anyhow::Result<()> {
    let phone = format!("+7{}", row.number);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let calls = running.store.calls().await?;
        let counts = running.store.outbox_counts().await?;
        if calls.len() > calls_before
            && calls.iter().all(|c| c.stage == "ended")
            && counts.pending == 0
        {
            let suffix = format!("-{replica}");
            if let Some(c) = calls.iter().find(|c| c.id.ends_with(&suffix)) {
                println!(
                    "  the call:           {} {} {}, employee {}",
                    c.direction,
                    c.outcome.as_deref().unwrap_or("-"),
                    phone,
                    c.employee.as_deref().unwrap_or("-")
                );
            }
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "row {}: the call was not delivered within 30 s: {counts:?}",
                row.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn user(id: u64) -> String {
    match id {
        3 => "Anna (3)".into(),
        4 => "Boris (4)".into(),
        7 => "Svetlana, senior (7)".into(),
        other => format!("user {other}"),
    }
}

/// What the CRM holds now that it did not before.
fn print_made(before: &SimState, after: &SimState) {
    let mut lines = Vec::new();
    for c in after.customers.iter().skip(before.customers.len()) {
        lines.push(format!(
            "new customer #{} ({}), responsible {}",
            c.id,
            c.phones.first().map(|p| p.number.as_str()).unwrap_or("-"),
            c.manager_id.map(user).unwrap_or_else(|| "-".into())
        ));
    }
    for c in &after.customers {
        if let Some(old) = before.customers.iter().find(|o| o.id == c.id) {
            if old.manager_id != c.manager_id {
                lines.push(format!(
                    "customer #{} now belongs to {} (was {})",
                    c.id,
                    c.manager_id.map(user).unwrap_or_else(|| "-".into()),
                    old.manager_id.map(user).unwrap_or_else(|| "-".into())
                ));
            }
        }
    }
    for o in after.orders.iter().skip(before.orders.len()) {
        lines.push(format!(
            "new order #{} for customer #{}, responsible {}",
            o.id,
            o.customer.as_ref().map(|c| c.id).unwrap_or_default(),
            o.manager_id.map(user).unwrap_or_else(|| "-".into())
        ));
    }
    for t in after.tasks.iter().skip(before.tasks.len()) {
        let on = match (&t.order, &t.customer) {
            (Some(o), _) => format!("order #{}", o.id),
            (None, Some(c)) => format!("customer #{}", c.id),
            _ => "-".into(),
        };
        lines.push(format!(
            "{} task for {} on {on}: {}",
            if t.complete { "completed" } else { "open" },
            user(t.performer_id),
            t.text
        ));
    }
    for e in after.call_events.iter().skip(before.call_events.len()) {
        let to: Vec<String> = e
            .codes
            .iter()
            .map(|c| format!("ext {c}"))
            .chain(e.user_ids.iter().map(|u| user(*u)))
            .collect();
        lines.push(match e.r#type.as_str() {
            "hangup" => format!(
                "pop-up closed ({}) for {}",
                e.hangup_status.as_deref().unwrap_or("-"),
                to.join(", ")
            ),
            kind => format!("pop-up ({kind}) for {}", to.join(", ")),
        });
    }
    for c in after.calls.iter().skip(before.calls.len()) {
        lines.push(format!(
            "history: {} {} {}, code {}, talk {} s{}",
            c.r#type,
            c.phone,
            c.result.as_deref().unwrap_or("-"),
            c.code.as_deref().unwrap_or("-"),
            c.duration.unwrap_or(0),
            if c.record_url.is_some() {
                ", with a link to the recording"
            } else {
                ""
            }
        ));
    }
    println!("  the CRM got:");
    for l in lines {
        println!("    {l}");
    }
}
