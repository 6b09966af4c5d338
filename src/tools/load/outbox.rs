//! Outbox throughput: actions enqueued and delivered per second, through the real store
//! (SQLite or PostgreSQL), the real delivery worker and the real retailCRM client, against
//! a local fake CRM with no rate limit: either the retailCRM stand-in (which keeps and
//! checks every record) or a bare HTTP responder that answers every request the way API
//! v5 answers a success (`{"success":true,"id":N}`), so that on a 2-core machine the
//! figure measures callbridge rather than the stand-in's bookkeeping. The workload is shaped like
//! real traffic: per call a ringing pop-up, its closing and the history record, and for
//! every fifth call a new client (customer, order naming it, task naming the order, a
//! manager change), committed in batches as the call processor commits them.
//!
//! `cargo bench --bench outbox` runs it at full size; a test runs a small one.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::actions::{
    CallEvent, CallEventType, CallRecord, CallResult, CrmAction, Entity, EntityRef, HangupStatus,
    ManagerChange, NewCustomer, NewOrder, NewTask,
};
use crate::call::{CallHeader, Direction};
use crate::config::{CrmConfig, CrmKind, Secret};
use crate::delivery::{DeliveryOptions, Outbox};
use crate::store::{Commit, Store};
use crate::time::Timestamp;
use crate::tools::sim::retailcrm::{RetailCrmSim, SimOptions};

/// Which fake CRM answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeCrm {
    /// The retailCRM stand-in (`sim::retailcrm`), rate limit off.
    Standin,
    /// A responder that answers success with a fresh id to everything.
    Bare,
}

#[derive(Debug, Clone)]
pub struct OutboxLoad {
    pub crm: FakeCrm,
    pub calls: usize,
    /// Calls per store transaction, as the call processor batches them.
    pub batch: usize,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct OutboxLoadReport {
    pub actions: usize,
    pub elapsed: Duration,
}

impl OutboxLoadReport {
    pub fn per_sec(&self) -> f64 {
        self.actions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The actions of call `n` (`cb-load-{n}`).
pub fn call_actions(n: usize) -> (CallHeader, Vec<CrmAction>) {
    let phone = format!("+7916{n:07}");
    let header = CallHeader {
        pbx: "load".into(),
        call_id: n.to_string(),
        direction: Direction::Inbound,
        customer_number: Some(phone.clone()),
        did: Some("74951234567".into()),
        started_at: Timestamp::now(),
        campaign: Default::default(),
    };
    let id = header.external_id();
    let event = |event, hangup_status| {
        CrmAction::CallEvent(CallEvent {
            event,
            phone: phone.clone(),
            codes: vec!["101".into()],
            user_ids: Vec::new(),
            hangup_status,
            call_external_id: id.clone(),
            external_phone: None,
        })
    };
    let mut actions = vec![
        event(CallEventType::In, None),
        event(CallEventType::Hangup, Some(HangupStatus::Answered)),
        CrmAction::CallHistory(CallRecord {
            date: header.started_at,
            direction: Direction::Inbound,
            phone: phone.clone(),
            code: Some("101".into()),
            result: CallResult::Answered,
            duration: 30,
            duration_waiting: 5,
            external_id: id.clone(),
            external_phone: None,
            record_url: None,
            customer: None,
            order: None,
        }),
    ];
    if n.is_multiple_of(5) {
        let order = format!("{id}-order");
        actions.extend([
            CrmAction::CreateCustomer(NewCustomer {
                external_id: id.clone(),
                phone: phone.clone(),
                first_name: None,
                manager_id: Some(3.into()),
                source: None,
            }),
            CrmAction::CreateOrder(NewOrder {
                external_id: order.clone(),
                customer: EntityRef::Step(id.clone()),
                phone: phone.clone(),
                manager_id: Some(3.into()),
                order_method: None,
                status: None,
                source: None,
                comment: None,
            }),
            CrmAction::CreateTask(NewTask {
                marker: format!("{id}#1"),
                text: "Call the client back".into(),
                commentary: None,
                performer_id: 3.into(),
                customer: None,
                order: Some(EntityRef::Step(order)),
                phone: None,
                complete: true,
                open_order: None,
                missed_call: false,
            }),
            CrmAction::SetManager(ManagerChange {
                entity: Entity::Customer,
                target: EntityRef::Step(id),
                manager_id: 4.into(),
            }),
        ]);
    }
    (header, actions)
}

/// Runs the workload once on a fresh store at `store_url` (which must be empty).
pub async fn run(store_url: &str, load: &OutboxLoad) -> anyhow::Result<OutboxLoadReport> {
    let (crm_url, crm_stop) = match load.crm {
        FakeCrm::Standin => {
            let sim = RetailCrmSim::start(SimOptions {
                rate_limit: None,
                ..SimOptions::default()
            })
            .await
            .context("starting the retailCRM stand-in")?;
            let url = sim.base_url();
            (url, Stop::Standin(sim))
        }
        FakeCrm::Bare => {
            let (url, stop) = bare_crm().await?;
            (url, Stop::Bare(stop))
        }
    };
    let crm = crate::crm::connect(
        &CrmConfig {
            kind: CrmKind::RetailCrm,
            url: crm_url,
            api_key: Secret::new(SimOptions::default().api_key),
            login: None,
            password: None,
            client_id: None,
            client_secret: None,
            identity_url: None,
            odata_path: String::new(),
            site: None,
            timeout: Duration::from_secs(10),
            rate_limit_per_sec: 1_000_000.0,
            telephony_rate_limit_per_sec: 1_000_000.0,
            give_up_after: Duration::from_secs(3600),
            concurrency: load.concurrency,
            default_region: "RU".into(),
            order_method: "phone".into(),
            final_status_groups: vec!["complete".into(), "cancel".into()],
            module_code: None,
            directory_refresh: Duration::from_secs(300),
        },
        &Default::default(),
    )?;
    let store = Store::open(store_url).await?;
    let outbox = Outbox::new(store.clone());
    let stop = CancellationToken::new();
    let options = DeliveryOptions {
        concurrency: load.concurrency,
        ..DeliveryOptions::default()
    };
    let worker = tokio::spawn(outbox.clone().run(crm, options, stop.clone()));

    let started = Instant::now();
    let mut total = 0;
    let mut n = 0;
    while n < load.calls {
        let mut items = Vec::with_capacity(load.batch);
        for _ in 0..load.batch.min(load.calls - n) {
            let (header, actions) = call_actions(n);
            total += actions.len();
            items.push(Commit::Actions { header, actions });
            n += 1;
        }
        outbox.commit(&items).await?;
    }
    while store.pending_count().await? > 0 {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let elapsed = started.elapsed();
    let m = store.outbox_metrics(Timestamp::now()).await?;
    anyhow::ensure!(
        m.done as usize == total,
        "not every action was delivered in the load run: {m:?}"
    );
    stop.cancel();
    let _ = worker.await;
    store.close().await;
    match crm_stop {
        Stop::Standin(sim) => sim.shutdown(),
        Stop::Bare(stop) => stop.cancel(),
    }
    Ok(OutboxLoadReport {
        actions: total,
        elapsed,
    })
}

enum Stop {
    Standin(RetailCrmSim),
    Bare(CancellationToken),
}

/// An HTTP server on 127.0.0.1 answering every request with API v5's success shape and a
/// new id (creates, edits, call events, uploads alike).
async fn bare_crm() -> anyhow::Result<(String, CancellationToken)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let next = Arc::new(AtomicU64::new(1));
    let app = axum::Router::new().fallback(move || {
        let id = next.fetch_add(1, Ordering::Relaxed);
        async move { axum::Json(serde_json::json!({ "success": true, "id": id })) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
    });
    Ok((format!("http://{addr}"), stop))
}
