//! Test harness: a scripted AMI peer and a retailCRM stand-in on 127.0.0.1:0, and the
//! real daemon running against them with a SQLite store in a temporary directory.

#![allow(dead_code)]

pub mod browser;
pub mod crash;
pub mod creatio;

use std::path::PathBuf;
use std::time::Duration;

use callbridge::actions::{
    CrmAction, Entity, EntityRef, ManagerChange, NewCustomer, NewOrder, NewTask,
};
use callbridge::call::{CallHeader, Direction};
use callbridge::daemon::{self, Running};
use callbridge::time::Timestamp;
use callbridge::tools::sim::ami::{AmiSim, AmiSimOptions};
use callbridge::tools::sim::retailcrm::{RetailCrmSim, SimOptions, SimState};
use callbridge::tools::sim::transcript::Transcript;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const AMI_SECRET: &str = "ami-Secret-7fq2";
pub const CRM_KEY: &str = "crm-Key-93jd8";

pub fn fixture(name: &str) -> Transcript {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk");
    let ami = std::fs::read(dir.join(format!("{name}.ami"))).expect("fixture .ami");
    let timing =
        std::fs::read_to_string(dir.join(format!("{name}.timing"))).expect("fixture .timing");
    Transcript::from_recording(&ami, &timing).expect("transcript")
}

/// The event socket password of the FreeSWITCH tests.
pub const ESL_PASSWORD: &str = "esl-Pass-4kd0";

/// A FreeSWITCH recording (`tests/fixtures/esl/<name>.esl` + `.timing`), cut to what a
/// client receives after subscribing.
pub fn esl_fixture(name: &str) -> Transcript {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esl");
    let esl = std::fs::read(dir.join(format!("{name}.esl"))).expect("fixture .esl");
    let timing =
        std::fs::read_to_string(dir.join(format!("{name}.timing"))).expect("fixture .timing");
    callbridge::tools::sim::esl::transcript_from_recording(&esl, &timing).expect("transcript")
}

/// The test configuration with its one `[[pbx]]` a FreeSWITCH at `esl_port`.
pub fn freeswitch_config(
    esl_port: u16,
    crm_url: &str,
    db: &std::path::Path,
    extra_pbx: &str,
) -> String {
    config_toml(0, crm_url, db, extra_pbx)
        .replace("kind = \"asterisk\"", "kind = \"freeswitch\"")
        .replace("port = 0", &format!("port = {esl_port}"))
        .replace(AMI_SECRET, ESL_PASSWORD)
        .replace("username = \"callbridge\"\n", "")
}

pub fn ami_options() -> AmiSimOptions {
    AmiSimOptions {
        username: "callbridge".into(),
        secret: AMI_SECRET.into(),
        answer_pings: true,
    }
}

pub fn crm_options() -> SimOptions {
    SimOptions {
        api_key: CRM_KEY.into(),
        ..SimOptions::default()
    }
}

/// A retailCRM stand-in without a rate limit (tests that run several daemons against
/// one, or crash one many times, would otherwise measure the limit).
pub async fn unlimited_crm() -> RetailCrmSim {
    RetailCrmSim::start(SimOptions {
        api_key: CRM_KEY.into(),
        rate_limit: None,
        ..SimOptions::default()
    })
    .await
    .expect("CRM sim")
}

/// A configuration pointing at the given simulators.
pub fn config_toml(ami_port: u16, crm_url: &str, db: &std::path::Path, extra_pbx: &str) -> String {
    config_toml_store(
        ami_port,
        crm_url,
        &format!("sqlite://{}", db.display()),
        extra_pbx,
        "",
    )
}

/// A configuration with any store URL and extra `[crm]` keys.
pub fn config_toml_store(
    ami_port: u16,
    crm_url: &str,
    store_url: &str,
    extra_pbx: &str,
    extra_crm: &str,
) -> String {
    format!(
        r#"
[store]
url = "{store_url}"
[http]
listen = "127.0.0.1:0"
link_secret = "test-link-secret"
[[pbx]]
name = "office"
kind = "asterisk"
host = "127.0.0.1"
port = {ami_port}
username = "callbridge"
secret = "{AMI_SECRET}"
{extra_pbx}
[crm]
kind = "retailcrm"
url = "{crm_url}"
api_key = "{CRM_KEY}"
timeout = "2s"
{extra_crm}
[employees]
senior = [7]
[employees.extensions]
"101" = 3
"102" = 4
[daemon]
shutdown_grace = "2s"
"#
    )
}

/// A schema of its own in the machine's PostgreSQL (127.0.0.1:5432, user postgres,
/// database test) for one test; `url` points the store at it.
pub struct PgSchema {
    pub name: String,
    pub url: String,
}

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";

impl PgSchema {
    pub async fn create(tag: &str) -> PgSchema {
        use sqlx::Connection;
        let name = format!("cb_{tag}_{:08x}", rand::random::<u32>());
        let mut conn = sqlx::PgConnection::connect(PG_BASE)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, database test)");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
        let _ = conn.close().await;
        PgSchema {
            url: format!("{PG_BASE}?options=-c%20search_path%3D{name}"),
            name,
        }
    }

    pub async fn drop(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(PG_BASE).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

pub struct Harness {
    pub pbx: AmiSim,
    pub crm: RetailCrmSim,
    pub running: Running,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(crm_options(), "").await
    }

    pub async fn start_with(crm_options: SimOptions, extra_pbx: &str) -> Harness {
        Self::start_custom(crm_options, |toml| toml.replace("{extra_pbx}", extra_pbx)).await
    }

    /// Starts with the test configuration as `edit` changes it (`{extra_pbx}` marks
    /// where keys of the `[[pbx]]` section go).
    pub async fn start_custom(
        crm_options: SimOptions,
        edit: impl FnOnce(String) -> String,
    ) -> Harness {
        if let Ok(level) = std::env::var("CALLBRIDGE_TEST_LOG") {
            callbridge::ops::logging::init(&level, false);
        }
        let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
        let crm = RetailCrmSim::start(crm_options).await.expect("CRM sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = edit(config_toml(
            pbx.addr().port(),
            &crm.base_url(),
            &dir.path().join("cb.db"),
            "{extra_pbx}",
        ))
        .replace("{extra_pbx}", "");
        let cfg = callbridge::config::from_toml_str(&toml).expect("config");
        let shutdown = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(tx)));
        let running = rx.await.expect("daemon ready");
        assert!(
            pbx.wait_for_logins(1, Duration::from_secs(10)).await,
            "daemon logs in to the AMI peer"
        );
        Harness {
            pbx,
            crm,
            running,
            dir,
            shutdown,
            daemon,
        }
    }

    /// Plays a recorded call at 20x speed with its original read splits.
    pub async fn play(&self, name: &str) {
        self.pbx.play(&fixture(name), 20.0).await;
    }

    /// Waits until `check` holds for the CRM's state, or panics with the last state.
    pub async fn wait_crm(&self, what: &str, check: impl Fn(&SimState) -> bool) -> SimState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let state = self.crm.state();
            if check(&state) {
                return state;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for: {what}\nCRM state: {state:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every call seen has ended and the outbox has nothing pending.
    pub async fn wait_outbox_settled(&self) {
        outbox_settled(&self.running.store).await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.daemon
            .await
            .expect("join")
            .expect("daemon stops cleanly");
        self.pbx.stop();
        self.crm.shutdown();
    }
}

/// Waits until every call the store has seen has ended and its outbox has nothing
/// pending; panics after 15 s.
pub async fn outbox_settled(store: &callbridge::store::Store) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // Calls first: a call that ended before this read has its actions stored
        // (same transaction), so the count read after it sees them.
        let calls = store.calls().await.expect("calls");
        let c = store.outbox_counts().await.expect("counts");
        // Rows of actions put in by hand (`cb-tool-…`) are no PBX calls.
        let ended = !calls.is_empty()
            && calls
                .iter()
                .filter(|c| !c.id.starts_with("cb-tool-"))
                .all(|c| c.stage == "ended");
        if ended && c.pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox did not settle: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a configuration file for the given simulators into `dir`; returns its path.
pub fn write_config(
    dir: &std::path::Path,
    pbx: &callbridge::tools::sim::ami::AmiSim,
    crm: &RetailCrmSim,
) -> PathBuf {
    let path = dir.join("callbridge.toml");
    let toml = config_toml(pbx.addr().port(), &crm.base_url(), &dir.join("cb.db"), "");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// The built `callbridge run` binary as a child process, killed when dropped (so a
/// failing test leaves no daemon behind).
/// The child, and (when its logs are captured) the thread draining its stderr: a child
/// whose pipe nobody reads blocks once the pipe's buffer is full.
pub struct DaemonProcess(
    pub std::process::Child,
    Option<std::thread::JoinHandle<String>>,
);

impl DaemonProcess {
    /// Starts `callbridge run --config <config>` with `RUST_LOG=<log>`; stderr is piped
    /// when `capture_logs`, dropped otherwise.
    pub fn spawn(config: &std::path::Path, log: &str, capture_logs: bool) -> DaemonProcess {
        use std::process::{Command, Stdio};
        let stderr = if capture_logs {
            Stdio::piped()
        } else if std::env::var("CALLBRIDGE_TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        // `CALLBRIDGE_TEST_BIN` runs the same test against another build (before/after).
        let bin = std::env::var_os("CALLBRIDGE_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_callbridge").into());
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn callbridge run");
        Self::adopt(child)
    }

    /// A child started otherwise (its own environment), stderr piped.
    pub fn adopt(mut child: std::process::Child) -> DaemonProcess {
        let drain = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut bytes = Vec::new();
                let _ = stderr.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        });
        DaemonProcess(child, drain)
    }

    /// Sends SIGTERM (what systemd sends on stop).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test with `what` after `within`.
    pub fn wait_exit(&mut self, within: Duration, what: &str) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(started.elapsed() < within, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon logged (stderr must have been captured); waits for exit.
    pub fn logs(&mut self) -> String {
        let _ = self.0.wait();
        self.1
            .take()
            .and_then(|drain| drain.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new client's records straight into the outbox: customer, order for it, task on the
/// order, and the customer handed to another manager.
pub fn client_actions(n: usize) -> (CallHeader, Vec<CrmAction>) {
    let customer = format!("cbt-{n}");
    let order = format!("cbt-{n}-order");
    let header = CallHeader {
        pbx: "tool".into(),
        call_id: n.to_string(),
        direction: Direction::Inbound,
        customer_number: Some(format!("+7916{n:07}")),
        did: None,
        started_at: Timestamp::now(),
        campaign: Default::default(),
    };
    let actions = vec![
        CrmAction::CreateCustomer(NewCustomer {
            external_id: customer.clone(),
            phone: format!("+7916{n:07}"),
            first_name: None,
            manager_id: Some(3.into()),
            source: None,
        }),
        CrmAction::CreateOrder(NewOrder {
            external_id: order.clone(),
            customer: EntityRef::Step(customer.clone()),
            phone: format!("+7916{n:07}"),
            manager_id: Some(3.into()),
            order_method: None,
            status: None,
            source: None,
            comment: None,
        }),
        CrmAction::CreateTask(NewTask {
            marker: format!("{customer}#1"),
            text: "Call the client back".into(),
            commentary: Some("test task".into()),
            performer_id: 7.into(),
            customer: None,
            order: Some(EntityRef::Step(order)),
            phone: None,
            complete: false,
            open_order: None,
            missed_call: false,
        }),
        CrmAction::SetManager(ManagerChange {
            entity: Entity::Customer,
            target: EntityRef::Step(customer),
            manager_id: 4.into(),
        }),
    ];
    (header, actions)
}

/// Waits until the store holds at least `calls` PBX calls (`cb-office-…`), all ended, and
/// the outbox has nothing pending; panics after `within` with what is still open.
pub async fn wait_settled(store: &callbridge::store::Store, calls: usize, within: Duration) {
    if let Err(e) = settled(store, calls, within).await {
        panic!("{e}");
    }
}

/// [`wait_settled`] that says what is still open instead of panicking, for a test that
/// goes on to report exactly which records are missing.
pub async fn settled(
    store: &callbridge::store::Store,
    calls: usize,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stored = store.calls().await.expect("calls");
        let m = store
            .outbox_metrics(Timestamp::now())
            .await
            .expect("metrics");
        let office: Vec<_> = stored
            .iter()
            .filter(|c| c.id.starts_with("cb-office-"))
            .collect();
        let open: Vec<_> = office.iter().filter(|c| c.stage != "ended").collect();
        if office.len() >= calls && open.is_empty() && m.pending == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "did not settle: {} of {calls} calls stored, not ended: {open:#?}; outbox {m:?}",
                office.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
