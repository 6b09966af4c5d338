//! The outbox's store on both backends (a SQLite file, and a schema of its own in the
//! machine's PostgreSQL): claims are exclusive between processes, one call's actions come
//! out in order, an attempt cut short is "in doubt" at the next claim, a step's result is
//! there for the steps after it, a call step recorded twice (two processes, or a restart)
//! adds its actions once, and the operator's retry/drop move actions as the CLI says.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use callbridge::actions::{
    CallEvent, CallEventType, CrmAction, EntityRef, NewCustomer, NewOrder, NewTask,
};
use callbridge::call::{CallHeader, CallStage, CallUpdate, Direction};
use callbridge::store::{ActionFilter, Attempt, Commit, Store};
use callbridge::time::Timestamp;
use common::PgSchema;

fn header(call: &str) -> CallHeader {
    CallHeader {
        pbx: "office".into(),
        call_id: call.into(),
        direction: Direction::Inbound,
        customer_number: Some("+79161234567".into()),
        did: Some("74951234567".into()),
        started_at: Timestamp(1_700_000_000_000_000),
        campaign: Default::default(),
    }
}

fn popup(call: &str) -> CrmAction {
    CrmAction::CallEvent(CallEvent {
        event: CallEventType::In,
        phone: "+79161234567".into(),
        codes: vec!["101".into()],
        user_ids: Vec::new(),
        hangup_status: None,
        call_external_id: format!("cb-office-{call}"),
        external_phone: None,
    })
}

/// A customer, an order for it, and a task on the order: each later one names the
/// earlier by its step.
fn new_client(call: &str) -> Vec<CrmAction> {
    let id = format!("cb-office-{call}");
    let order_id = format!("{id}-order");
    vec![
        CrmAction::CreateCustomer(NewCustomer {
            external_id: id.clone(),
            phone: "+79161234567".into(),
            first_name: None,
            manager_id: Some(3.into()),
            source: None,
        }),
        CrmAction::CreateOrder(NewOrder {
            external_id: order_id.clone(),
            customer: EntityRef::Step(id.clone()),
            phone: "+79161234567".into(),
            manager_id: Some(3.into()),
            order_method: Some("phone".into()),
            status: None,
            source: None,
            comment: None,
        }),
        CrmAction::CreateTask(NewTask {
            marker: format!("{id}#1"),
            text: "Call the client back".into(),
            commentary: None,
            performer_id: 7.into(),
            customer: None,
            order: Some(EntityRef::Step(order_id)),
            phone: None,
            complete: false,
            open_order: None,
            missed_call: false,
        }),
    ]
}

fn ok_attempt() -> Attempt {
    Attempt {
        started_at: Timestamp::now(),
        elapsed: Duration::from_millis(3),
        http_status: Some(201),
        error: None,
    }
}

fn lease(secs: i64) -> (Timestamp, Timestamp) {
    let now = Timestamp::now();
    (now, Timestamp(now.0 + secs * 1_000_000))
}

async fn enqueue(store: &Store, call: &str, actions: Vec<CrmAction>) -> Vec<i64> {
    store
        .commit(&[Commit::Actions {
            header: header(call),
            actions,
        }])
        .await
        .expect("commit")
}

/// Runs one scenario on a fresh SQLite file and on a fresh PostgreSQL schema.
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("cb.db").display());
            $scenario(&url).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs PostgreSQL at 127.0.0.1:5432 (user postgres, db test)"]
        async fn $postgres() {
            let schema = PgSchema::create(stringify!($scenario)).await;
            $scenario(&schema.url).await;
            schema.drop().await;
        }
    };
}

on_both_backends!(
    claims_are_exclusive_sqlite,
    claims_are_exclusive_postgres,
    claims_are_exclusive
);
async fn claims_are_exclusive(url: &str) {
    // Two processes' worth of stores on one database.
    let a = Store::open(url).await.expect("store a");
    let b = Store::open(url).await.expect("store b");
    let mut all = Vec::new();
    for n in 0..60 {
        all.extend(enqueue(&a, &format!("{n}.1"), vec![popup(&format!("{n}.1"))]).await);
    }
    let (now, until) = lease(60);
    let (ca, cb) = tokio::join!(
        async {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.extend(a.claim("a", now, until, 7).await.expect("claim a"));
            }
            got
        },
        async {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.extend(b.claim("b", now, until, 7).await.expect("claim b"));
            }
            got
        }
    );
    let ids_a: HashSet<i64> = ca.iter().map(|p| p.id).collect();
    let ids_b: HashSet<i64> = cb.iter().map(|p| p.id).collect();
    assert!(ids_a.is_disjoint(&ids_b), "an action was claimed twice");
    assert_eq!(ca.len() + cb.len(), 60, "every action claimed once");
    assert_eq!(
        ids_a.union(&ids_b).copied().collect::<HashSet<_>>(),
        all.into_iter().collect()
    );
    // Claimed under a lease: nothing is left for a third claimer.
    assert!(a
        .claim("c", now, until, 100)
        .await
        .expect("claim")
        .is_empty());
    a.close().await;
    b.close().await;
}

on_both_backends!(
    one_call_in_order_sqlite,
    one_call_in_order_postgres,
    one_call_in_order
);
async fn one_call_in_order(url: &str) {
    let store = Store::open(url).await.expect("store");
    let ids = enqueue(&store, "7.1", new_client("7.1")).await;
    let (now, until) = lease(60);
    let first = store.claim("w", now, until, 10).await.expect("claim");
    assert_eq!(
        first.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[0]],
        "only the customer: the order waits for it"
    );
    // The customer is created; the CRM said id 41.
    store
        .mark_done(
            &first[0],
            &ok_attempt(),
            None,
            Some(&serde_json::json!({"id": 41})),
        )
        .await
        .expect("done");
    let second = store.claim("w", now, until, 10).await.expect("claim");
    assert_eq!(
        second.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let steps = store.step_results("cb-office-7.1").await.expect("steps");
    let customer = &steps["cb-office-7.1"];
    assert_eq!(customer.state, "done");
    assert_eq!(customer.result, Some(serde_json::json!({"id": 41})));
    assert_eq!(steps["cb-office-7.1-order"].state, "pending");
    store.close().await;
}

on_both_backends!(
    cut_short_attempt_is_in_doubt_sqlite,
    cut_short_attempt_is_in_doubt_postgres,
    cut_short_attempt_is_in_doubt
);
async fn cut_short_attempt_is_in_doubt(url: &str) {
    let store = Store::open(url).await.expect("store");
    enqueue(&store, "9.1", vec![popup("9.1")]).await;
    let now = Timestamp::now();
    // A worker claims it with a short lease and dies without recording anything.
    let claimed = store
        .claim("dead-worker", now, Timestamp(now.0 + 1), 1)
        .await
        .expect("claim");
    assert!(!claimed[0].in_doubt, "a first attempt is not in doubt");
    // Once the lease ran out, another worker takes it, knowing it may have been sent.
    let later = Timestamp(now.0 + 2);
    let again = store
        .claim("next-worker", later, Timestamp(later.0 + 60_000_000), 1)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert!(again[0].in_doubt);
    // A failure recorded normally leaves the next attempt certain again.
    store
        .mark_retry(
            &again[0],
            &Attempt {
                http_status: Some(503),
                error: Some("busy".into()),
                ..ok_attempt()
            },
            later,
        )
        .await
        .expect("retry");
    let third = store
        .claim("w", later, Timestamp(later.0 + 60_000_000), 1)
        .await
        .expect("claim");
    assert!(!third[0].in_doubt);
    assert_eq!(third[0].attempts, 2);
    store.close().await;
}

on_both_backends!(
    a_step_recorded_twice_adds_actions_once_sqlite,
    a_step_recorded_twice_adds_actions_once_postgres,
    a_step_recorded_twice_adds_actions_once
);
async fn a_step_recorded_twice_adds_actions_once(url: &str) {
    let a = Store::open(url).await.expect("store a");
    let b = Store::open(url).await.expect("store b");
    let mut joins = Vec::new();
    for n in 0..40 {
        let call = format!("{n}.5");
        let update = CallUpdate {
            header: header(&call),
            at: Timestamp::now(),
            stage: CallStage::Ringing {
                extensions: vec!["101".into()],
                new: vec!["101".into()],
            },
        };
        // Both processes record the same call's ringing at the same moment.
        for store in [a.clone(), b.clone()] {
            let (u, act) = (update.clone(), vec![popup(&call)]);
            joins.push(tokio::spawn(async move {
                store
                    .commit(&[Commit::Update {
                        update: u,
                        actions: act,
                    }])
                    .await
            }));
        }
    }
    for j in joins {
        j.await.expect("join").expect("commit");
    }
    let actions = a.actions().await.expect("actions");
    assert_eq!(actions.len(), 40, "one pop-up per call, not two");
    a.close().await;
    b.close().await;
}

on_both_backends!(
    operators_retry_and_drop_sqlite,
    operators_retry_and_drop_postgres,
    operators_retry_and_drop
);
async fn operators_retry_and_drop(url: &str) {
    let store = Store::open(url).await.expect("store");
    let ids = enqueue(&store, "3.3", vec![popup("3.3")]).await;
    enqueue(&store, "4.4", vec![popup("4.4")]).await;
    let (now, until) = lease(60);
    let claimed = store.claim("w", now, until, 10).await.expect("claim");
    let refused = Attempt {
        http_status: Some(400),
        error: Some("Errors in the entity format (phone: invalid)".into()),
        ..ok_attempt()
    };
    store.mark_dead(&claimed[0], &refused).await.expect("dead");
    let dead = store
        .list_actions(ActionFilter::Dead, 100)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ids[0]);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("Errors in the entity format (phone: invalid)")
    );
    assert!(store.retry_action(claimed[1].id).await.is_err(), "not dead");
    store.retry_action(ids[0]).await.expect("retry");
    assert!(store
        .list_actions(ActionFilter::Dead, 100)
        .await
        .expect("list")
        .is_empty());
    // Retried: due now, claimable once the other claim is released.
    let again = store
        .claim("w", Timestamp::now(), until, 10)
        .await
        .expect("claim");
    assert_eq!(again.iter().map(|p| p.id).collect::<Vec<_>>(), vec![ids[0]]);
    store.drop_action(ids[0]).await.expect("drop");
    assert_eq!(store.action(ids[0]).await.expect("row").state, "dropped");
    assert!(store.drop_action(ids[0]).await.is_err(), "already dropped");
    let m = store
        .outbox_metrics(Timestamp::now())
        .await
        .expect("metrics");
    assert_eq!((m.pending, m.dead), (1, 0));
    store.close().await;
}

on_both_backends!(
    actions_stored_while_being_sent_are_nobody_elses_sqlite,
    actions_stored_while_being_sent_are_nobody_elses_postgres,
    actions_stored_while_being_sent_are_nobody_elses
);
/// A pop-up stored while its sender is sending it is claimed by that sender: no other
/// worker takes it; once the sender's lease runs out it is claimable again, in doubt.
async fn actions_stored_while_being_sent_are_nobody_elses(url: &str) {
    use callbridge::store::Claim;
    let store = Store::open(url).await.expect("store");
    let now = Timestamp::now();
    let update = CallUpdate {
        header: header("7.1"),
        at: now,
        stage: CallStage::Ringing {
            extensions: vec!["101".into()],
            new: vec!["101".into()],
        },
    };
    let claim = Claim {
        worker: "sender".into(),
        until: Timestamp(now.0 + 60_000_000),
    };
    let ids = store
        .commit_each(&[Commit::Sending {
            update,
            actions: vec![popup("7.1")],
            claim,
        }])
        .await
        .expect("commit");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 1, "the pop-up has an id for its sender");
    let (now, until) = lease(30);
    let other = store.claim("other", now, until, 10).await.expect("claim");
    assert!(other.is_empty(), "claimed by its sender: {other:?}");
    // The sender died: after its lease the pop-up is taken, in doubt.
    let later = Timestamp(now.0 + 61_000_000);
    let taken = store
        .claim("other", later, Timestamp(later.0 + 30_000_000), 10)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, ids[0][0]);
    assert!(taken[0].in_doubt, "its first attempt's end is unknown");
    store.close().await;
}

on_both_backends!(
    followers_of_a_pbx_see_each_other_sqlite,
    followers_of_a_pbx_see_each_other_postgres,
    followers_of_a_pbx_see_each_other
);
/// Processes that follow one PBX see each other until one stops or goes silent; a PBX
/// of its own is nobody else's business.
async fn followers_of_a_pbx_see_each_other(url: &str) {
    let a = Store::open(url).await.expect("store a");
    let b = Store::open(url).await.expect("store b");
    let t = |s: i64| Timestamp(1_700_000_000_000_000 + s * 1_000_000);
    assert!(a
        .follow("east", "a", t(0), t(-10))
        .await
        .expect("a")
        .is_empty());
    assert!(b
        .follow("west", "b", t(0), t(-10))
        .await
        .expect("b")
        .is_empty());
    assert_eq!(
        b.follow("east", "b", t(1), t(-9)).await.expect("b east"),
        vec!["a".to_string()]
    );
    assert_eq!(
        a.follow("east", "a", t(2), t(-8)).await.expect("a again"),
        vec!["b".to_string()]
    );
    // b stops cleanly on east; a is alone there again.
    b.unfollow("east", "b").await.expect("unfollow");
    assert!(a
        .follow("east", "a", t(3), t(-7))
        .await
        .expect("a")
        .is_empty());
    // b follows east again and then goes silent: forgotten once it is too long ago.
    b.follow("east", "b", t(4), t(-6)).await.expect("b");
    assert_eq!(
        a.follow("east", "a", t(5), t(-5)).await.expect("a").len(),
        1
    );
    assert!(a
        .follow("east", "a", t(15), t(5))
        .await
        .expect("a")
        .is_empty());
    a.close().await;
    b.close().await;
}
