//! The crash test on Creatio: the real `callbridge run` binary writes a stream of calls
//! from the AMI peer into the Creatio simulator and is killed with SIGKILL at random
//! moments, restarted each time. Creatio keeps no external id unique, so every record
//! must be found again by the adapter after a crash: at the end Creatio holds each call
//! once (`Call` by `IntegrationId`), each new caller's `Contact` and `Case` once, each
//! missed call's `Activity` and `QueueItem` once, and nothing is dead or missing.
//!
//! Sizes: `CREATIO_CRASH_CALLS` (default 90) calls, `CREATIO_CRASH_KILLS` (default 8)
//! kills, a new call every `CREATIO_CRASH_SPACING_MS` (default 60).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use callbridge::store::{ActionFilter, Store};
use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::creatio::{CreatioSim, CreatioSimOptions, Fault};
use common::crash::{env_usize, killer, linkedids, play_held};
use common::creatio::{creatio_config, Side};
use common::{ami_options, fixture, DaemonProcess, PgSchema};
use serde_json::Value;

/// The recordings and the number each one's client has.
const SHAPES: &[(&str, &str)] = &[
    ("iax2/inbound_answered", "9161234567"),
    ("iax2/inbound_missed", "9035556677"),
    ("iax2/outbound_answered", "9031112233"),
];

fn s(v: &Value, column: &str) -> String {
    v[column].as_str().unwrap_or_default().to_string()
}

/// The crash runs take turns: two at once on a 2-core machine measure starvation.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn crash_run(store_url: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let calls = env_usize("CREATIO_CRASH_CALLS", 90);
    let kills = env_usize("CREATIO_CRASH_KILLS", 8);
    let spacing = Duration::from_millis(env_usize("CREATIO_CRASH_SPACING_MS", 60) as u64);
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = CreatioSim::start(CreatioSimOptions::default())
        .await
        .expect("Creatio sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("callbridge.toml");
    let toml = creatio_config(
        Side::Asterisk,
        pbx.addr().port(),
        &crm.base_url(),
        &dir.path().join("unused.db"),
    )
    .replace(
        &format!("sqlite://{}", dir.path().join("unused.db").display()),
        store_url,
    )
    .replace(
        "[crm]\n",
        "reconnect_max_delay = \"500ms\"\n[crm]\nrate_limit_per_sec = 2000\n",
    );
    std::fs::write(&config, toml).expect("config");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "error".into());
    let daemon = DaemonProcess::spawn(&config, &log, false);
    assert!(
        pbx.wait_for_logins(1, Duration::from_secs(20)).await,
        "first login"
    );
    let tool = Store::open(store_url).await.expect("test's store handle");

    // The killer: SIGKILL at random moments while the calls flow, restart after a pause.
    let killer = killer(daemon, config.clone(), log.clone(), kills, 200..800);

    // Each call its own client number: (call id, kind, number).
    let mut expected: Vec<(String, &str, String)> = Vec::new();
    let mut feeders = Vec::new();
    for n in 0..calls {
        let (shape, recorded) = SHAPES[n % SHAPES.len()];
        let number = format!("916{:07}", 5_000_000 + n);
        let t = fixture(shape)
            .replica(n as u32 + 1)
            .with_value(recorded, &number);
        for id in linkedids(&t) {
            expected.push((format!("cb-office-{id}"), shape, number.clone()));
        }
        feeders.push(tokio::spawn(play_held(pbx.clone(), t, 10.0)));
        tokio::time::sleep(spacing).await;
    }
    let mut daemon = killer.await.expect("killer");
    for f in feeders {
        f.await.expect("feeder");
    }
    if let Err(open) = common::settled(&tool, expected.len(), Duration::from_secs(90)).await {
        eprintln!("creatio crash run: {open}");
    }

    // Each call once in Creatio's history.
    let mut by_integration: HashMap<String, usize> = HashMap::new();
    for c in crm.made("Call") {
        *by_integration.entry(s(&c, "IntegrationId")).or_default() += 1;
    }
    let twice: Vec<_> = by_integration.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "calls recorded more than once: {twice:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, _, _)| !by_integration.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "calls missing from Creatio: {missing:?}"
    );
    assert_eq!(
        by_integration.len(),
        expected.len(),
        "no call Creatio should not have"
    );

    // New inbound callers: one contact, one case each; missed ones one activity and one
    // queue item each; the outbound calls to unknown numbers nothing but the call.
    let contacts = crm.made("Contact");
    let mut contact_of: HashMap<String, String> = HashMap::new();
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for c in &contacts {
        let digits: String = s(c, "Name").chars().filter(char::is_ascii_digit).collect();
        let number = digits
            .get(digits.len().saturating_sub(10)..)
            .unwrap_or_default()
            .to_string();
        *per_number.entry(number.clone()).or_default() += 1;
        contact_of.insert(s(c, "Id"), number);
    }
    let cases = crm.made("Case");
    let activities = crm.made("Activity");
    let queued = crm.made("QueueItem");
    let count = |records: &[Value], column: &str, number: &str| {
        records
            .iter()
            .filter(|r| contact_of.get(&s(r, column)).map(String::as_str) == Some(number))
            .count()
    };
    let case_number: HashMap<String, String> = cases
        .iter()
        .filter_map(|c| Some((s(c, "Id"), contact_of.get(&s(c, "ContactId"))?.clone())))
        .collect();
    let mut changed = std::collections::BTreeSet::new();
    for (id, shape, number) in &expected {
        let inbound = shape.contains("inbound");
        let missed = shape.contains("missed");
        let want = usize::from(inbound);
        assert_eq!(
            per_number.get(number).copied().unwrap_or(0),
            want,
            "contacts of {number} ({id})"
        );
        assert_eq!(
            count(&cases, "ContactId", number),
            want,
            "cases of {number} ({id})"
        );
        let tasks = count(&activities, "ContactId", number);
        if missed {
            assert_eq!(tasks, 1, "activities of {number} ({id})");
        } else if tasks != 0 {
            // An answer that fell into a crash's gap is seen by the resync only: the
            // call may then be judged otherwise (counted below), never twice.
            changed.insert(id.clone());
        }
        let items = queued
            .iter()
            .filter(|q| case_number.get(&s(q, "EntityRecordId")) == Some(number))
            .count();
        assert!(items <= 1, "queue items of {number} ({id}): {items}");
        if missed {
            assert_eq!(items, 1, "queue items of {number} ({id})");
        } else if items != 0 {
            changed.insert(id.clone());
        }
    }
    // Every activity once: its marker is unique.
    let mut markers = HashMap::new();
    for a in &activities {
        let notes = s(a, "Notes");
        let marker = notes
            .lines()
            .rev()
            .find(|l| l.starts_with("[callbridge "))
            .unwrap_or_default()
            .to_string();
        assert!(!marker.is_empty(), "an activity without its marker: {a:#}");
        *markers.entry(marker).or_insert(0) += 1;
    }
    let twice: Vec<_> = markers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "activities made twice: {twice:?}");
    eprintln!("creatio crash run: calls judged otherwise after a crash: {changed:?}");
    assert!(
        // 2% of the calls, and two in a short run.
        changed.len() <= (calls / 50).max(2),
        "{} of {calls} calls judged otherwise: {changed:?}",
        changed.len()
    );
    assert_eq!(
        contacts.len(),
        expected.iter().filter(|e| e.1.contains("inbound")).count()
    );
    let dead = tool
        .list_actions(ActionFilter::Dead, 100)
        .await
        .expect("dead");
    assert!(dead.is_empty(), "nothing dead: {dead:#?}");
    let in_doubt_found = tool
        .actions()
        .await
        .expect("actions")
        .iter()
        .filter(|a| a.note.as_deref().is_some_and(|n| n.contains("already")))
        .count();
    eprintln!(
        "creatio crash run: {calls} calls, {kills} kills, {} Call, {} Contact, {} Case, {} Activity, {} QueueItem records; {in_doubt_found} found again after a crash; {} requests",
        by_integration.len(),
        contacts.len(),
        cases.len(),
        activities.len(),
        queued.len(),
        crm.requests().len()
    );
    tool.close().await;
    daemon.terminate();
    let _ = daemon.0.wait();
    pbx.stop();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creatio_sigkill_under_load_loses_and_duplicates_nothing_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    crash_run(&format!("sqlite://{}", dir.path().join("cb.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (user postgres, db test)"]
async fn creatio_sigkill_under_load_loses_and_duplicates_nothing_postgres() {
    let schema = PgSchema::create("creatio_crash").await;
    crash_run(&schema.url).await;
    schema.drop().await;
}

/// The moment a crash makes doubtful, made certain: Creatio holds the case request while
/// callbridge is killed, then saves it; the restarted daemon must find that case (by the
/// marker in `Symptoms`) instead of registering a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_saved_while_callbridge_was_killed_is_found_not_made_again() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = CreatioSim::start(CreatioSimOptions::default())
        .await
        .expect("Creatio sim");
    crm.inject(
        Fault::Delay {
            times: 1,
            delay: Duration::from_millis(1500),
        }
        .on_path("/0/odata/Case"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cb.db");
    let config = dir.path().join("callbridge.toml");
    let toml = creatio_config(Side::Asterisk, pbx.addr().port(), &crm.base_url(), &db)
        .replace("[crm]\n", "reconnect_max_delay = \"300ms\"\n[crm]\n");
    std::fs::write(&config, toml).expect("config");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "error".into());
    let mut daemon = DaemonProcess::spawn(&config, &log, false);
    assert!(pbx.wait_for_logins(1, Duration::from_secs(20)).await);
    pbx.play(&fixture("iax2/inbound_answered"), 20.0).await;
    // The contact is made; the case request is being held by Creatio.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !crm.answering("POST /0/odata/Case") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the case request never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = daemon.0.kill(); // SIGKILL
    let _ = daemon.0.wait();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while crm.made("Case").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Creatio saved the held case"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut daemon = DaemonProcess::spawn(&config, &log, false);
    let store_url = format!("sqlite://{}", db.display());
    let tool = Store::open(&store_url).await.expect("store");
    common::wait_settled(&tool, 1, Duration::from_secs(30)).await;
    assert_eq!(crm.made("Case").len(), 1, "{:#?}", crm.made("Case"));
    assert_eq!(crm.made("Contact").len(), 1);
    assert_eq!(crm.made("Call").len(), 1);
    let actions = tool.actions().await.expect("actions");
    assert!(
        actions.iter().any(|a| a
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("case ") && n.contains("already existed"))),
        "the case was found again: {actions:#?}"
    );
    tool.close().await;
    daemon.terminate();
    let _ = daemon.0.wait();
    pbx.stop();
    crm.shutdown();
}
