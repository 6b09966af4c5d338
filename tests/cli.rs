//! The built binary as an administrator uses it: `check-config` messages, and `run`
//! against the simulators, stopped with SIGTERM, with no secret in its logs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::RetailCrmSim;
use common::{ami_options, crm_options, fixture, write_config, DaemonProcess, AMI_SECRET, CRM_KEY};

const BIN: &str = env!("CARGO_BIN_EXE_callbridge");

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callbridge.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_names_each_bad_key_on_its_own_line_and_hides_secrets() {
    let (code, out) = check_config(
        r#"
[[pbx]]
name = "office"
kind = "sip"
host = "127.0.0.1"
port = "abc"
username = "callbridge"
[crm]
kind = "retailcrm"
url = "https://example.retailcrm.ru"
api_key = "Sup3rS3cretCrmKey"
"#,
    );
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "one line per problem:\n{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pbx[0].kind:") && l.contains("sip")),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.starts_with("pbx[0].port:")), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pbx[0].secret: missing")),
        "{out}"
    );
    assert!(!out.contains("Sup3rS3cretCrmKey"));
}

#[test]
fn check_config_missing_api_key_and_wrongly_typed_secret() {
    let (code, out) = check_config(
        r#"
[[pbx]]
name = "office"
kind = "asterisk"
host = "127.0.0.1"
username = "callbridge"
secret = 123456789
[crm]
kind = "retailcrm"
url = "https://example.retailcrm.ru"
"#,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("crm.api_key: missing"), "{out}");
    assert!(out.contains("pbx[0].secret:"), "{out}");
    assert!(
        !out.contains("123456789"),
        "a secret of the wrong type is not echoed: {out}"
    );
}

#[test]
fn check_config_accepts_the_example_file() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/callbridge.toml"))
            .expect("example");
    let (code, out) = check_config(&text);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_a_call_stops_on_sigterm_and_never_logs_secrets() {
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &pbx, &crm);
    let mut daemon = DaemonProcess::spawn(&path, "debug", true);
    assert!(
        pbx.wait_for_logins(1, Duration::from_secs(20)).await,
        "binary logs in"
    );
    pbx.play(&fixture("iax2/inbound_answered"), 20.0).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while crm.state().calls.is_empty() {
        if Instant::now() >= deadline {
            daemon.terminate();
            panic!(
                "call not delivered by the binary; its logs:\n{}",
                daemon.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SIGTERM: a clean, prompt exit with status 0.
    daemon.terminate();
    let exit = daemon.wait_exit(Duration::from_secs(10), "stops within 10 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");

    let logs = daemon.logs();
    assert!(logs.contains("AMI connected"), "{logs}");
    assert!(
        logs.contains("1795627488.2"),
        "the call id is in the logs: {logs}"
    );
    assert!(!logs.contains(AMI_SECRET), "AMI secret leaked into logs");
    assert!(!logs.contains(CRM_KEY), "CRM key leaked into logs");
    pbx.stop();
    crm.shutdown();
}

/// SIGTERM while a CRM request is in flight: callbridge stops reading the PBX, lets the
/// request finish (within `shutdown_grace`), leaves the call's other records in the
/// outbox, exits 0; the next start delivers them, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_the_next_start_delivers_the_rest() {
    use callbridge::store::Store;
    use callbridge::tools::sim::retailcrm::Fault;

    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    // The call's first record (the ringing pop-up) takes the CRM 4 s to answer.
    crm.inject(
        Fault::Delay {
            times: 1,
            delay: Duration::from_secs(4),
        }
        .on_path("/telephony/call/event"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &pbx, &crm);
    let toml = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(
        &path,
        toml.replace("shutdown_grace = \"2s\"", "shutdown_grace = \"15s\"")
            .replace("timeout = \"2s\"", "timeout = \"10s\""),
    )
    .expect("write config");
    let mut daemon = DaemonProcess::spawn(&path, "info", true);
    assert!(
        pbx.wait_for_logins(1, Duration::from_secs(20)).await,
        "binary logs in"
    );
    pbx.play(&fixture("iax2/inbound_answered"), 20.0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while crm.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the pop-up never reached the CRM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(crm.state().call_events.is_empty(), "still being answered");

    daemon.terminate();
    let stopping = Instant::now();
    let exit = daemon.wait_exit(Duration::from_secs(15), "stops within shutdown_grace");
    let logs = daemon.logs();
    assert!(exit.success(), "exit status {exit:?}; logs:\n{logs}");
    assert!(
        stopping.elapsed() >= Duration::from_secs(2),
        "waited for the answer; logs:\n{logs}"
    );
    let state = crm.state();
    assert_eq!(
        state.call_events.len(),
        1,
        "the request in flight finished: {:?}",
        state.call_events
    );
    assert!(state.customers.is_empty() && state.calls.is_empty());
    let store = Store::open(&format!("sqlite://{}", dir.path().join("cb.db").display()))
        .await
        .expect("store");
    let outbox = store
        .outbox_metrics(callbridge::time::Timestamp::now())
        .await
        .expect("metrics");
    assert!(
        outbox.pending > 0,
        "the rest waits in the outbox: {outbox:?}"
    );
    assert_eq!(outbox.in_flight, 0, "{outbox:?}");
    assert_eq!(outbox.dead, 0, "{outbox:?}");
    store.close().await;

    // The next start delivers the rest, and not the pop-up again.
    let mut daemon = DaemonProcess::spawn(&path, "info", true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = crm.state();
        if !s.calls.is_empty() && !s.customers.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            daemon.terminate();
            panic!("not delivered after the restart; logs:\n{}", daemon.logs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.terminate();
    let logs = daemon.logs();
    let state = crm.state();
    assert_eq!(state.customers.len(), 1, "{logs}");
    assert_eq!(state.calls.len(), 1, "{logs}");
    let ringing = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .count();
    assert_eq!(ringing, 1, "the pop-up sent once: {:?}", state.call_events);
    pbx.stop();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_login_and_crm_key_errors_are_logged_without_secrets() {
    // The PBX expects another secret, and the CRM another key.
    let mut ami = ami_options();
    ami.secret = "the-pbx-wants-this".into();
    let pbx = AmiSim::start(ami).await.expect("AMI sim");
    let mut crm_opts = crm_options();
    crm_opts.api_key = "the-crm-wants-this".into();
    let crm = RetailCrmSim::start(crm_opts).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &pbx, &crm);
    let mut daemon = DaemonProcess::spawn(&path, "trace", true);
    // Let it try to log in at least once (Asterisk answers a bad login after 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pbx
        .actions()
        .iter()
        .filter(|a| a.get("Action") == Some("Login"))
        .count()
        < 1
    {
        assert!(Instant::now() < deadline, "tries to log in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.terminate();
    let logs = daemon.logs();
    assert!(
        logs.contains("rejected"),
        "the login failure is logged: {logs}"
    );
    assert!(!logs.contains(AMI_SECRET), "AMI secret in logs");
    assert!(!logs.contains(CRM_KEY), "CRM key in logs");
    pbx.stop();
    crm.shutdown();
}

/// `callbridge outbox …` on a store (found through the configuration's `[store] url`):
/// list by state as a table, retry a dead action, refuse to drop without `--yes`, drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commands_list_retry_and_drop() {
    use callbridge::actions::{CallEvent, CallEventType, CrmAction};
    use callbridge::call::{CallHeader, Direction};
    use callbridge::store::{Attempt, Commit, Store};
    use callbridge::time::Timestamp;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cb.db").display());
    let config = dir.path().join("callbridge.toml");
    // Only [store] is read: the PBX secret may live in the daemon's environment alone.
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).expect("config");
    let store = Store::open(&url).await.expect("store");
    let header = CallHeader {
        pbx: "office".into(),
        call_id: "1795627488.2".into(),
        direction: Direction::Inbound,
        customer_number: Some("+79161234567".into()),
        did: None,
        started_at: Timestamp::now(),
        campaign: Default::default(),
    };
    let popup = CrmAction::CallEvent(CallEvent {
        event: CallEventType::In,
        phone: "+79161234567".into(),
        codes: vec!["101".into()],
        user_ids: Vec::new(),
        hangup_status: None,
        call_external_id: header.external_id(),
        external_phone: None,
    });
    let ids = store
        .commit(&[Commit::Actions {
            header,
            actions: vec![popup.clone(), popup],
        }])
        .await
        .expect("enqueue");
    let now = Timestamp::now();
    let claimed = store
        .claim("test", now, Timestamp(now.0 + 60_000_000), 1)
        .await
        .expect("claim");
    let refused = Attempt {
        started_at: now,
        elapsed: Duration::from_millis(5),
        http_status: Some(400),
        error: Some("CRM answered HTTP 400: Errors in the entity format (phone: bad)".into()),
    };
    store.mark_dead(&claimed[0], &refused).await.expect("dead");
    store.close().await;

    let outbox = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("outbox")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run outbox");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = outbox(&["list", "--state", "dead"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().next().unwrap_or("").contains("STATE"),
        "a table: {out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with(&ids[0].to_string()))
        .expect("the dead action is listed");
    assert!(
        row.contains("popup_in") && row.contains("dead") && row.contains("400"),
        "{row}"
    );
    assert!(row.contains("phone: bad"), "the CRM's message: {row}");
    assert!(
        !out.contains(&format!("\n{:>7}", ids[1])),
        "pending ones are not dead: {out}"
    );

    let (code, out, _) = outbox(&["retry", &ids[0].to_string()]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = outbox(&["list", "--state", "dead"]);
    assert!(out.contains("0 shown"), "{out}");

    let (code, _, err) = outbox(&["drop", &ids[1].to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = outbox(&["drop", &ids[1].to_string(), "--yes"]);
    assert_eq!(code, 0, "{out}");
    let store = Store::open(&url).await.expect("store");
    assert_eq!(store.action(ids[1]).await.expect("row").state, "dropped");
    // Back in the queue; listed as `failed` (pending, last attempt failed) until it goes out.
    assert_eq!(store.action(ids[0]).await.expect("row").state, "failed");
    store.close().await;
}

/// The main job on a fresh machine: `callbridge demo` plays every matrix row and shows
/// what each made in the CRM, and exits 0.
#[test]
fn demo_plays_every_matrix_row() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["demo", "--speed", "40"])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo exits 0: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "1", "2a", "2b", "2c", "3a", "3b", "4a", "4b", "5a", "5b", "5c", "6a", "6b", "7",
    ] {
        assert!(
            stdout.contains(&format!("\nRow {row}: ")),
            "row {row}: {stdout}"
        );
    }
    // A few of the records the rows must make.
    assert!(stdout.contains("completed task for Anna (3)"), "{stdout}");
    assert!(
        stdout.contains("now belongs to Anna (3) (was Boris (4))"),
        "{stdout}"
    );
    assert!(
        stdout.contains("new customer #") && stdout.contains("responsible Svetlana, senior (7)"),
        "{stdout}"
    );
    // Calls from the FreeSWITCH branch, in the same daemon as the Asterisk office.
    let fs = stdout
        .split("\nRow 1 (FreeSWITCH): ")
        .nth(1)
        .expect("FreeSWITCH rows");
    let fs = fs.split("\nRow 7: ").next().unwrap_or(fs);
    assert!(
        fs.contains("the call:           inbound answered +79161230021, employee 101"),
        "{fs}"
    );
    assert!(
        fs.contains("pop-up (in) for ext 102")
            && fs.contains("talk 5 s, with a link to the recording"),
        "the queue call: {fs}"
    );
    assert!(fs.contains("inbound missed +79161230023"), "{fs}");
    assert!(fs.contains("inbound voicemail +79161230024"), "{fs}");
}

#[test]
fn demo_crm_creatio_plays_every_row_into_creatio() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["demo", "--crm", "creatio", "--speed", "40"])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo exits 0: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "1",
        "2a",
        "2b",
        "2c",
        "3a",
        "3b",
        "4a",
        "4b",
        "5a",
        "5b",
        "5c",
        "6a",
        "6b",
        "7",
        "1 (FreeSWITCH)",
        "4a (FreeSWITCH)",
    ] {
        assert!(
            stdout.contains(&format!("\nRow {row}: ")),
            "row {row}: {stdout}"
        );
    }
    for record in [
        "new contact \"+79161230001\", owner Anna Ivanova",
        "new case SR",
        "completed activity for Anna Ivanova on case SR",
        "contact \"Client 3b\" now belongs to Anna Ivanova (was Boris Petrov)",
        "queue item in \"Missed calls\" for case SR",
        "with a link to the recording",
    ] {
        assert!(stdout.contains(record), "{record}: {stdout}");
    }
    assert!(stdout.contains("Creatio now holds"), "{stdout}");
}

#[test]
fn check_config_knows_the_creatio_keys() {
    let (code, out) = check_config(
        r#"
[[pbx]]
name = "office"
kind = "asterisk"
host = "127.0.0.1"
username = "callbridge"
secret = "ami-secret-1"
[crm]
kind = "creatio"
url = "https://example.creatio.com"
client_id = "callbridge"
password = "Cr3atioPassw0rd"
[employees.extensions]
"101" = "not-a-guid"
"#,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("employees.extensions.\"101\": expected a CRM user id"),
        "{out}"
    );
    assert!(
        out.contains("crm.login: set either login and password"),
        "{out}"
    );
    assert!(!out.contains("Cr3atioPassw0rd"), "{out}");
    let (code, out) = check_config(
        r#"
[[pbx]]
name = "office"
kind = "asterisk"
host = "127.0.0.1"
username = "callbridge"
secret = "ami-secret-1"
[crm]
kind = "bpmsoft"
url = "https://example.bpmsoft.ru"
login = "callbridge"
password = "Cr3atioPassw0rd"
odata_path = "/odata"
[creatio]
missed_calls_queue = "Missed calls"
[employees.extensions]
"101" = "a1b2c3d4-0000-4000-8000-000000000101"
"#,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("creatio:") && out.contains("/odata"), "{out}");
    assert!(!out.contains("Cr3atioPassw0rd"), "{out}");
}

#[test]
fn replay_reads_a_freeswitch_capture_as_well_as_an_asterisk_one() {
    let run = |file: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .args(["replay", file])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run replay");
        assert!(out.status.success(), "{file}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fs = run("tests/fixtures/esl/ring_group_second_answers.esl");
    assert!(fs.contains("0 malformed"), "{fs}");
    assert!(
        fs.contains("ended answered employee 102 rang [101,102] talk 5 s"),
        "{fs}"
    );
    let ast = run("tests/fixtures/asterisk/iax2/ring_group_second_answers.ami");
    assert!(
        ast.contains("ended answered employee 102 rang [101,102] talk 5 s"),
        "{ast}"
    );
}
