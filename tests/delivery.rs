//! Delivery under trouble, over real sockets: the CRM is down (503) and then rate-limits
//! (429 with Retry-After) and then recovers, and everything arrives, in order per call,
//! without callbridge ever going over the CRM's rate limit itself; an action that keeps
//! failing past `give_up_after` is dead-lettered with the reason; and two daemons sharing
//! one PostgreSQL database deliver every action exactly once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callbridge::store::{ActionFilter, Commit, Store};
use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::{Fault, RetailCrmSim, SimState};
use common::{
    ami_options, config_toml_store, crm_options, fixture, DaemonProcess, Harness, PgSchema,
};

/// A new client's records (see `common::client_actions`) as one commit.
fn client(n: usize) -> Commit {
    let (header, actions) = common::client_actions(n);
    Commit::Actions { header, actions }
}

/// Requests to `prefix` in any one-second window, at most.
fn peak_per_second(state: &SimState, telephony: bool) -> usize {
    let times: Vec<_> = state
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v5/telephony") == telephony)
        .map(|r| r.at)
        .collect();
    let mut peak = 0;
    for (i, start) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|t| (**t - *start).num_milliseconds() < 1000)
            .count();
        peak = peak.max(n);
    }
    peak
}

/// Each call's delivered actions reached the CRM in the order they were made.
async fn assert_in_order_per_call(store: &Store) {
    let actions = store.actions().await.expect("actions");
    let call_of: HashMap<i64, &str> = actions.iter().map(|a| (a.id, a.call_id.as_str())).collect();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (action, kind, _, ok, _) in store.crm_requests().await.expect("requests") {
        if !ok {
            continue;
        }
        let call = call_of[&action];
        if let Some(before) = last.insert(call, action) {
            assert!(
                before < action,
                "{call}: action {action} ({kind}) delivered after {before}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_outage_then_rate_limit_then_recovery_delivers_everything_in_order() {
    // The stand-in keeps retailCRM's real limits (10/s, 40/s telephony) and answers 503
    // when they are passed: callbridge must never earn one of those.
    let h = Harness::start().await;
    h.crm.inject(Fault::Status503 { times: 6 });
    h.crm.inject(Fault::RateLimited {
        times: 6,
        retry_after_secs: Some(1),
    });
    for n in 0..6 {
        h.running.store.commit(&[client(n)]).await.expect("enqueue");
    }
    for name in [
        "iax2/inbound_answered",
        "iax2/inbound_missed",
        "iax2/outbound_answered",
    ] {
        h.play(name).await;
    }
    // The clients' records (`cbt-…`) beside what the matrix makes for the calls.
    let of_clients = |x: &Option<String>| x.as_deref().is_some_and(|x| x.starts_with("cbt-"));
    h.wait_crm("everything delivered", |s| {
        let clients: Vec<_> = s
            .customers
            .iter()
            .filter(|c| of_clients(&c.external_id))
            .collect();
        clients.len() == 6
            && clients.iter().all(|c| c.manager_id == Some(4))
            && s.tasks
                .iter()
                .filter(|t| t.commentary.as_deref().is_some_and(|c| c.contains("[cbt-")))
                .count()
                == 6
            && s.calls.len() == 3
    })
    .await;
    h.wait_outbox_settled().await;
    let store = &h.running.store;
    assert!(
        store
            .list_actions(ActionFilter::Dead, 10)
            .await
            .expect("dead")
            .is_empty(),
        "nothing dead-lettered: the failures were transient"
    );
    let failed: Vec<_> = store
        .crm_requests()
        .await
        .expect("requests")
        .into_iter()
        .filter(|r| !r.3)
        .collect();
    // Each injected failure failed one attempt (or one of the matrix's reads of reference
    // data, which are read again later), and every one was retried.
    assert!(
        !failed.is_empty() && failed.len() <= 12,
        "the 6 outage and 6 rate-limit answers, each retried: {failed:?}"
    );
    assert_in_order_per_call(store).await;
    let crm = h.crm.state();
    let rejected_503 = crm.requests.iter().filter(|r| r.status == 503).count();
    assert_eq!(
        rejected_503, 12,
        "no 503 beyond the injected ones: callbridge kept under the limit"
    );
    assert!(
        peak_per_second(&crm, false) <= 10,
        "general API at most 10 requests/s"
    );
    assert!(
        peak_per_second(&crm, true) <= 40,
        "telephony at most 40 requests/s"
    );
    // Orders name the customer their step created; tasks name the order.
    for o in crm.orders.iter().filter(|o| of_clients(&o.external_id)) {
        let customer = crm
            .customers
            .iter()
            .find(|c| Some(c.external_id.clone().unwrap_or_default() + "-order") == o.external_id)
            .expect("its customer");
        assert_eq!(o.customer.as_ref().map(|c| c.id), Some(customer.id));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_failing_past_give_up_after_is_dead_lettered_with_the_reason() {
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = RetailCrmSim::start(crm_options()).await.expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cb.db").display());
    let toml = config_toml_store(
        pbx.addr().port(),
        &crm.base_url(),
        &url,
        "",
        "give_up_after = \"2s\"",
    );
    let cfg = callbridge::config::from_toml_str(&toml).expect("config");
    crm.inject(Fault::Status503 { times: 1000 }.on_path("/customers"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(callbridge::daemon::run(cfg, shutdown.clone(), Some(tx)));
    let running = rx.await.expect("ready");
    running.store.commit(&[client(1)]).await.expect("enqueue");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = running
            .store
            .list_actions(ActionFilter::Dead, 10)
            .await
            .expect("dead");
        if dead.len() >= 2 {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dead-lettered: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead[0].kind, "customer");
    let why = dead[0].last_error.as_deref().unwrap_or("");
    assert!(why.starts_with("gave up after"), "{why}");
    assert!(why.contains("503"), "{why}");
    // The order cannot be made without its customer: dead too, saying why.
    assert_eq!(dead[1].kind, "order");
    assert!(
        dead[1]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("depends on cbt-1"),
        "{dead:?}"
    );
    // Once the CRM is back, a retry by hand delivers both.
    crm.clear_faults();
    running.store.retry_all_dead().await.expect("retry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while crm.state().orders.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after the retry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    daemon.await.expect("join").expect("clean stop");
    pbx.stop();
    crm.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (user postgres, db test)"]
async fn two_daemons_on_one_postgres_deliver_each_action_once() {
    let schema = PgSchema::create("two").await;
    let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
    let crm = common::unlimited_crm().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "error".into());
    // Both watch the same PBX and share the outbox.
    let mut daemons = Vec::new();
    for n in 0..2 {
        let config = dir.path().join(format!("cb{n}.toml"));
        std::fs::write(
            &config,
            config_toml_store(
                pbx.addr().port(),
                &crm.base_url(),
                &schema.url,
                "",
                "rate_limit_per_sec = 1000\ntelephony_rate_limit_per_sec = 1000",
            ),
        )
        .expect("config");
        daemons.push(DaemonProcess::spawn(&config, &log, false));
    }
    assert!(
        pbx.wait_for_logins(2, Duration::from_secs(20)).await,
        "both logged in"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = Store::open(&schema.url).await.expect("store");
    let calls = 30;
    let mut players = Vec::new();
    for n in 0..calls {
        let shape = [
            "iax2/inbound_answered",
            "iax2/inbound_missed",
            "iax2/outbound_answered",
        ][n % 3];
        let (pbx, t) = (pbx.clone(), fixture(shape).replica(n as u32 + 1));
        players.push(tokio::spawn(async move { pbx.play(&t, 10.0).await }));
        if n.is_multiple_of(3) {
            store.commit(&[client(n)]).await.expect("enqueue");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for p in players {
        p.await.expect("player");
    }
    common::wait_settled(&store, calls, Duration::from_secs(30)).await;
    let state = crm.state();
    // Not only no duplicate records: no request was made twice.
    let posts = |path: &str| {
        state
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .count()
    };
    assert_eq!(
        posts("/api/v5/telephony/calls/upload"),
        calls,
        "each call uploaded once"
    );
    // Every create action sent once, by one of the two. (Calls from one new number
    // decided at the same moment each ask for the number's customer; its externalId
    // makes them one record, checked below.)
    let actions = store.actions().await.expect("actions");
    let of_kind = |k: &str| actions.iter().filter(|a| a.kind == k).count();
    assert_eq!(posts("/api/v5/customers/create"), of_kind("customer"));
    assert_eq!(posts("/api/v5/orders/create"), of_kind("order"));
    assert_eq!(posts("/api/v5/tasks/create"), of_kind("task"));
    assert_eq!(state.orders.len(), of_kind("order"));
    assert_eq!(state.tasks.len(), of_kind("task"));
    assert_eq!(state.calls.len(), calls);
    let clients = |x: Option<&str>| x.is_some_and(|x| x.starts_with("cbt-"));
    assert_eq!(
        state
            .customers
            .iter()
            .filter(|c| clients(c.external_id.as_deref()))
            .count(),
        10
    );
    assert_eq!(
        state
            .customers
            .iter()
            .filter(|c| !clients(c.external_id.as_deref()))
            .count(),
        2,
        "one customer for each of the two inbound numbers"
    );
    let requests = store.crm_requests().await.expect("requests");
    // Decisions are no requests; one may wait (another call is creating the number's
    // customer) and be looked at again, but each is made once.
    let count = |decisions: bool, of: &mut dyn Iterator<Item = &str>| {
        of.filter(|k| (*k == "decide") == decisions).count()
    };
    assert_eq!(
        count(false, &mut requests.iter().map(|r| r.1.as_str())),
        count(false, &mut actions.iter().map(|a| a.kind.as_str())),
        "one request per action, by one of the two"
    );
    assert_eq!(
        count(
            true,
            &mut requests.iter().filter(|r| r.3).map(|r| r.1.as_str())
        ),
        count(true, &mut actions.iter().map(|a| a.kind.as_str())),
        "each decision made once"
    );
    assert!(actions.iter().all(|a| a.state == "done"));
    let popups_in = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .count();
    let popup_actions = actions.iter().filter(|a| a.kind == "popup_in").count();
    assert_eq!(popups_in, popup_actions, "each pop-up shown once");
    store.close().await;
    for d in &daemons {
        d.terminate();
    }
    for mut d in daemons {
        let _ = d.0.wait();
    }
    pbx.stop();
    crm.shutdown();
    schema.drop().await;
}

/// The short variant of `cargo bench --bench outbox`: the same workload, small, against
/// the retailCRM stand-in (which checks every request), on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_load_run_delivers_every_action() {
    use callbridge::tools::load::outbox::{run, FakeCrm, OutboxLoad};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cb.db").display());
    let report = run(
        &url,
        &OutboxLoad {
            crm: FakeCrm::Standin,
            calls: 40,
            batch: 8,
            concurrency: 8,
        },
    )
    .await
    .expect("every action delivered, none dead");
    // 40 calls × 3 telephony actions, and 8 new clients × 4 records.
    assert_eq!(report.actions, 40 * 3 + 8 * 4);
}

/// Pop-ups have delivery slots of their own: with every ordinary slot taken by slow
/// history uploads of other calls, a new call's pop-up still reaches the CRM at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_never_waits_behind_other_calls_slow_history_uploads() {
    let h = common::Harness::start_custom(common::crm_options(), |toml| {
        toml.replace("timeout = \"2s\"", "timeout = \"20s\"\nconcurrency = 2")
    })
    .await;
    // Every history upload takes the CRM 6 s.
    h.crm.inject(
        Fault::Delay {
            times: 10,
            delay: Duration::from_secs(6),
        }
        .on_path("/telephony/calls/upload"),
    );
    // Two outbound calls end: their uploads hold both ordinary slots.
    for n in 1..=2 {
        h.pbx
            .play(&fixture("iax2/outbound_answered").replica(n), 50.0)
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.crm.in_flight() < 2 {
        assert!(Instant::now() < deadline, "the uploads never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A new inbound call rings meanwhile.
    h.play("iax2/inbound_answered").await;
    let state = h
        .wait_crm("the new call's pop-up", |s| {
            s.call_events.iter().any(|e| e.r#type == "in")
        })
        .await;
    assert!(
        state.calls.is_empty(),
        "the pop-up came while the uploads were still being answered"
    );
    assert!(h.crm.in_flight() >= 2, "the uploads still hold their slots");
    h.stop().await;
}

/// A daemon that has delivered one inbound call: the phone metadata and the CRM's
/// managers are loaded, so pop-ups can be decided from memory.
async fn warmed_up() -> Harness {
    let h = Harness::start().await;
    h.pbx
        .play(&fixture("iax2/inbound_answered").replica(1), 20.0)
        .await;
    h.wait_outbox_settled().await;
    h
}

/// The pop-up of a ringing call goes out while the store cannot take a write (another
/// connection holds SQLite's write lock for 3 s), and is recorded as delivered, once,
/// when the store takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_goes_out_while_the_store_is_busy_and_is_recorded_after() {
    use sqlx::Connection;
    let h = warmed_up().await;
    let before = h.crm.state().call_events.len();

    let db = h.dir.path().join("cb.db");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("write lock");
    let locked_at = Instant::now();
    let pbx = h.pbx.clone();
    let player = tokio::spawn(async move {
        pbx.play(&fixture("iax2/inbound_answered").replica(2), 20.0)
            .await
    });
    let state = h
        .wait_crm("the second call's pop-up", |s| {
            s.call_events[before..].iter().any(|e| e.r#type == "in")
        })
        .await;
    let popped_after = locked_at.elapsed();
    assert!(
        popped_after < Duration::from_secs(2),
        "the pop-up waited for the store: {popped_after:?}"
    );
    assert!(
        state.calls.len() < 2,
        "the second call cannot have been stored yet"
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(locked_at.elapsed())).await;
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    let _ = lock.close().await;
    player.await.expect("player");
    h.wait_crm("both calls in the history", |s| s.calls.len() == 2)
        .await;
    h.wait_outbox_settled().await;

    let state = h.crm.state();
    let popups: Vec<_> = state
        .call_events
        .iter()
        .filter(|e| e.r#type == "in")
        .collect();
    assert_eq!(popups.len(), 2, "one pop-up per call: {popups:#?}");
    assert_eq!(state.calls.len(), 2, "both calls in the history");
    let actions = h.running.store.actions().await.expect("actions");
    let recorded: Vec<_> = actions.iter().filter(|a| a.kind == "popup_in").collect();
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    assert!(
        recorded
            .iter()
            .all(|a| a.state == "done" && a.attempts == 1 && a.last_status == Some(200)),
        "each pop-up recorded as delivered at the first attempt: {recorded:#?}"
    );
    let requests = h.running.store.crm_requests().await.expect("requests");
    for a in &recorded {
        assert_eq!(
            requests.iter().filter(|r| r.0 == a.id).count(),
            1,
            "the pop-up's request is logged once"
        );
    }
    h.stop().await;
}

/// A pop-up sent as the ringing is read that the CRM refuses for now (503) is retried
/// by the outbox, and recorded with both attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_sent_at_once_that_fails_is_retried_by_the_outbox() {
    let h = warmed_up().await;
    h.crm
        .inject(Fault::Status503 { times: 1 }.on_path("/telephony/call/event"));
    h.pbx
        .play(&fixture("iax2/inbound_answered").replica(2), 20.0)
        .await;
    h.wait_outbox_settled().await;
    let state = h.crm.state();
    assert_eq!(
        state
            .call_events
            .iter()
            .filter(|e| e.r#type == "in")
            .count(),
        2,
        "the refused pop-up arrived on the second attempt"
    );
    let actions = h.running.store.actions().await.expect("actions");
    let retried: Vec<_> = actions
        .iter()
        .filter(|a| a.kind == "popup_in" && a.attempts == 2)
        .collect();
    assert_eq!(retried.len(), 1, "{actions:#?}");
    assert_eq!(retried[0].state, "done");
    h.stop().await;
}

/// Scale-out as docs/scaling.md describes it: two daemons, each reading its own PBX,
/// share one PostgreSQL store (and so one outbox). Every call of both PBXs is in the CRM
/// once, with its own PBX's name, and no customer is made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (user postgres, db test)"]
async fn two_daemons_each_with_its_own_pbx_share_one_postgres() {
    let schema = PgSchema::create("split").await;
    let crm = common::unlimited_crm().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::env::var("CALLBRIDGE_TEST_LOG").unwrap_or_else(|_| "error".into());
    let mut pbxs = Vec::new();
    let mut daemons = Vec::new();
    for name in ["east", "west"] {
        let pbx = AmiSim::start(ami_options()).await.expect("AMI sim");
        let config = dir.path().join(format!("{name}.toml"));
        let toml = config_toml_store(pbx.addr().port(), &crm.base_url(), &schema.url, "", "")
            .replace("name = \"office\"", &format!("name = \"{name}\""));
        std::fs::write(&config, toml).expect("config");
        daemons.push(DaemonProcess::spawn(&config, &log, false));
        assert!(
            pbx.wait_for_logins(1, Duration::from_secs(20)).await,
            "{name} logged in"
        );
        pbxs.push(pbx);
    }
    let plays = [
        ("iax2/inbound_answered", "iax2/outbound_answered"),
        ("iax2/ring_group_second_answers", "iax2/inbound_missed"),
    ];
    let mut players = Vec::new();
    for (pbx, (first, second)) in pbxs.iter().zip(plays) {
        for shape in [first, second] {
            let (pbx, t) = (pbx.clone(), fixture(shape));
            players.push(tokio::spawn(async move { pbx.play(&t, 10.0).await }));
        }
    }
    for p in players {
        p.await.expect("player");
    }
    let store = Store::open(&schema.url).await.expect("store");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = store
            .outbox_metrics(callbridge::time::Timestamp::now())
            .await
            .expect("metrics");
        let calls = store.calls().await.expect("calls");
        if crm.state().calls.len() >= 4
            && m.pending == 0
            && calls.iter().all(|c| c.stage == "ended")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {m:?}, CRM {:?}",
            crm.state().calls
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = crm.state();
    let mut ids: Vec<String> = state
        .calls
        .iter()
        .filter_map(|c| c.external_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4, "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 4, "each call once: {ids:?}");
    for name in ["east", "west"] {
        assert_eq!(
            ids.iter()
                .filter(|id| id.starts_with(&format!("cb-{name}-")))
                .count(),
            2,
            "{name}'s two calls: {ids:?}"
        );
    }
    // Three inbound callers, three customers.
    assert_eq!(state.customers.len(), 3, "{:?}", state.customers);
    let actions = store.actions().await.expect("actions");
    assert!(actions.iter().all(|a| a.state == "done"), "{actions:?}");
    store.close().await;
    for d in &daemons {
        d.terminate();
    }
    for mut d in daemons {
        let _ = d.0.wait();
    }
    for pbx in pbxs {
        pbx.stop();
    }
    crm.shutdown();
    schema.drop().await;
}
