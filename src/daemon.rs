//! The daemon: wires the edges to the pure middle. For each PBX a client task reads
//! events and a processor task runs them through the call tracker and the action
//! rules into the outbox; one delivery worker sends the outbox to the CRM; the HTTP
//! side reports health. Shutdown stops reading first, lets the last events reach the
//! outbox, then gives requests in flight a grace period, then closes the store.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, Instrument};

use crate::actions::actions_for;
use crate::call::{CallStage, CallTracker, CallUpdate, InternalExtensions, TrackerConfig};
use crate::config::{Config, PbxKind};
use crate::crm::RetailCrm;
use crate::http::{self, HttpState};
use crate::outbox::{DeliveryOptions, Outbox};
use crate::pbx::ami;
use crate::pbx::event::PbxEvent;
use crate::pbx::status::PbxStatus;
use crate::store::Store;

/// Events buffered between a PBX reader and its processor. When the processor falls
/// behind (a slow store), the reader waits instead of dropping events.
const EVENT_BUFFER: usize = 10_000;

/// What a started daemon exposes to its caller (the CLI, the demo, tests).
#[derive(Clone)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub store: Store,
    pub pbx: PbxStatus,
}

/// Runs until `shutdown` is cancelled. `ready` receives the running handles once the
/// store is migrated and the HTTP side listens.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("opening the store (store.url = {:?})", config.store.url))?;
    let crm = RetailCrm::new(&config.crm).context("setting up the CRM client")?;
    let status = PbxStatus::default();
    for pbx in &config.pbx {
        status.register(&pbx.name, &pbx.kind.to_string());
    }

    let http_stop = CancellationToken::new();
    let (http_addr, http_task) = http::serve(
        config.http.listen,
        HttpState {
            pbx: status.clone(),
            store: store.clone(),
        },
        http_stop.clone(),
    )
    .await
    .with_context(|| format!("listening on http.listen = {}", config.http.listen))?;
    info!(%http_addr, "HTTP side listening (GET /health)");

    let outbox = Outbox::new(store.clone());
    let delivery_stop = CancellationToken::new();
    let delivery = tokio::spawn(outbox.clone().run(
        crm,
        DeliveryOptions {
            grace: config.daemon.shutdown_grace,
            ..DeliveryOptions::default()
        },
        delivery_stop.clone(),
    ));

    let readers_stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    let mut processors = JoinSet::new();
    for pbx in &config.pbx {
        let (tx, rx) = mpsc::channel::<PbxEvent>(EVENT_BUFFER);
        match pbx.kind {
            PbxKind::Asterisk => {
                readers.spawn(ami::client::run(
                    pbx.clone(),
                    tx,
                    status.clone(),
                    readers_stop.clone(),
                ));
            }
        }
        let tracker = CallTracker::new(TrackerConfig {
            pbx: pbx.name.clone(),
            internal: InternalExtensions::new(config.employees.extensions.keys().cloned())
                .with_ranges(pbx.internal_extensions.clone()),
            trunk_contexts: pbx.trunk_contexts.clone(),
        });
        processors.spawn(process(rx, tracker, outbox.clone()));
    }

    if let Some(ready) = ready {
        let _ = ready.send(Running {
            http_addr,
            store: store.clone(),
            pbx: status.clone(),
        });
    }
    info!(pbx = config.pbx.len(), crm = %config.crm.url, "callbridge running");

    shutdown.cancelled().await;
    info!("shutting down: closing PBX connections");
    readers_stop.cancel();
    while readers.join_next().await.is_some() {}
    // The readers dropped their senders: processors drain what was read, then end.
    while processors.join_next().await.is_some() {}
    info!("PBX events drained; finishing CRM requests in flight");
    delivery_stop.cancel();
    let _ = delivery.await;
    http_stop.cancel();
    let _ = http_task.await;
    store.close().await;
    info!("callbridge stopped");
    Ok(())
}

/// One PBX's call processing: tracker, action rules, outbox. One span per call.
async fn process(mut events: mpsc::Receiver<PbxEvent>, mut tracker: CallTracker, outbox: Outbox) {
    while let Some(event) = events.recv().await {
        for update in tracker.apply(&event) {
            let span = info_span!(
                "call",
                pbx = %update.header.pbx,
                call_id = %update.header.call_id,
                direction = update.header.direction.as_str()
            );
            handle(&outbox, update).instrument(span).await;
        }
    }
}

async fn handle(outbox: &Outbox, update: CallUpdate) {
    match &update.stage {
        CallStage::Ringing { new, .. } => {
            info!(caller = ?update.header.customer_number, did = ?update.header.did, ringing = ?new, "ringing")
        }
        CallStage::Answered { extension } => info!(%extension, "answered"),
        CallStage::Ended(s) => info!(
            outcome = s.outcome.as_str(),
            employee = ?s.employee,
            talk_secs = s.talk_secs,
            duration_secs = s.duration_secs,
            "ended"
        ),
    }
    let actions = match actions_for(&update) {
        Ok(actions) => actions,
        Err(reason) => {
            debug!(?reason, "no CRM action for this step");
            Vec::new()
        }
    };
    // The store must take it: retry rather than lose a call. While it fails, this PBX's
    // reading waits (the event buffer fills), which is the right pressure.
    let mut delay = Duration::from_millis(100);
    loop {
        match outbox.enqueue(&update, &actions).await {
            Ok(_) => return,
            Err(e) => {
                error!(error = %e, retry_in = ?delay, "could not store the call update; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
