//! The daemon: wires the edges to the pure middle. For each PBX a client task reads
//! events (`pbx`) and a call processor runs them through the call tracker and the
//! action rules into the outbox (`processor`); one delivery worker sends the outbox to
//! the CRM (`delivery`); the HTTP side reports health (`http`).
//!
//! Start-up goes config → store → HTTP → CRM caches → PBX connections, so that the first
//! event read has somewhere to go and the first decision knows the managers. Shutdown
//! (SIGTERM, a cancelled token) goes the other way: stop reading the PBXs, let the last
//! events reach the outbox, give CRM requests in flight a grace period (everything else
//! stays in the outbox for the next start), stop the background tasks and the HTTP
//! side, close the store.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::call::{CallTracker, InternalExtensions, TrackerConfig};
use crate::config::{Config, PbxKind};
use crate::crm::CrmClient;
use crate::delivery::decider::Decider;
use crate::delivery::{DeliveryOptions, Outbox};
use crate::ops::http::{self, HttpState};
use crate::pbx::event::PbxInput;
use crate::pbx::status::PbxStatus;
use crate::pbx::{ami, esl};
use crate::processor::{process, resume_live_calls, Processor};
use crate::store::Store;

/// The longest start-up waits for the CRM's managers and statuses before connecting to
/// the PBXs.
const PRIME_AT_MOST: Duration = Duration::from_secs(5);

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
    let (_no_reloads, reloads) = mpsc::channel(1);
    run_reloadable(config, shutdown, ready, reloads).await
}

/// [`run`], also taking reloaded configurations (SIGHUP): their employees map and matrix
/// options apply from the next decision on, without touching the PBX connections.
/// Everything else in a reloaded file waits for a restart.
pub async fn run_reloadable(
    config: Config,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<Running>>,
    mut reloads: mpsc::Receiver<Config>,
) -> anyhow::Result<()> {
    if crate::ops::metrics::install().is_none() {
        warn!("another metrics recorder is installed in this process: /metrics will be empty");
    }
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("opening the store (store.url = {:?})", config.store.url))?;
    let crm =
        crate::crm::connect(&config.crm, &config.creatio).context("setting up the CRM client")?;
    let status = PbxStatus::default();
    for pbx in &config.pbx {
        status.register(&pbx.name, &pbx.kind.to_string());
    }

    // One key for the links decisions make and the HTTP side that checks them.
    let link_key = crate::delivery::decider::link_key(&config);
    let http_stop = CancellationToken::new();
    let panel_hub = config.panel.enabled.then(crate::panel::PanelHub::new);
    let panel = panel_hub.clone().map(|hub| crate::panel::PanelState {
        hub,
        access: crate::panel::PanelAccess::new(link_key.clone()),
        secure: config.http.public_url.starts_with("https://"),
        stop: http_stop.clone(),
        store: store.clone(),
        records: match config.crm.kind {
            crate::config::CrmKind::RetailCrm => "orders",
            _ => "cases",
        },
    });
    let (http_addr, http_task) = http::serve(
        config.http.listen,
        HttpState {
            pbx: status.clone(),
            store: store.clone(),
            pbxs: std::sync::Arc::new(config.pbx.clone()),
            link_key: link_key.clone(),
            recording_wait: config.http.recording_wait,
            crm: crm.clone(),
            panel,
        },
        http_stop.clone(),
    )
    .await
    .with_context(|| format!("listening on http.listen = {}", config.http.listen))?;
    info!(%http_addr, "HTTP side listening (GET /health, GET /recordings/…)");

    // Tasks beside the main ones (start-up reads, the module registration): tracked, so
    // shutdown ends them and waits for them instead of leaving them mid-request.
    let background = TaskTracker::new();
    let background_stop = CancellationToken::new();
    let decider = Decider::new(crm.clone(), &config, link_key).context("crm.default_region")?;
    if let Some(hub) = &panel_hub {
        hub.identify_with(decider.clone());
    }
    // Loads the phone-number metadata in the background (decisions wait for it).
    background.spawn(decider.clone().warm_up());
    // The CRM's managers, codes and statuses, read before the PBXs' first event (never
    // waiting long for a CRM that does not answer: the calls must be read meanwhile).
    let prime_limit = config.crm.timeout.min(PRIME_AT_MOST);
    if decider.prime(prime_limit).await {
        info!("CRM managers, extension codes and order statuses read");
    } else {
        warn!(waited = ?prime_limit, "the CRM's managers and statuses could not be read at start-up; calls are followed meanwhile and they are read again at the first decision");
    }
    if let Some(code) = config.crm.module_code.clone() {
        let stop = background_stop.clone();
        let register = register_module(
            crm.clone(),
            code,
            config.http.public_url.clone(),
            config.employees.extensions.clone(),
        );
        background.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = register => {}
            }
        });
    }
    let outbox = Outbox::new(store.clone());
    let delivery_stop = CancellationToken::new();
    let delivery = tokio::spawn(outbox.clone().run(
        crm,
        DeliveryOptions {
            grace: config.daemon.shutdown_grace,
            concurrency: config.crm.concurrency,
            give_up_after: config.crm.give_up_after,
            // A claim outlives the longest attempt: waiting for the rate limiter (every
            // worker queued ahead) plus the request and its lookups.
            lease: config.crm.timeout * 2
                + Duration::from_secs_f64(
                    config.crm.concurrency as f64 / config.crm.rate_limit_per_sec,
                )
                + Duration::from_secs(10),
            decider: Some(decider.clone()),
            ..DeliveryOptions::default()
        },
        delivery_stop.clone(),
    ));

    let readers_stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    let mut processors = JoinSet::new();
    for pbx in &config.pbx {
        let mut tracker = CallTracker::new(TrackerConfig {
            pbx: pbx.name.clone(),
            internal: InternalExtensions::new(config.employees.extensions.keys().cloned())
                .with_ranges(pbx.internal_extensions.clone()),
            trunk_contexts: pbx.trunk_contexts.clone(),
            campaign_variables: pbx.campaign_variables.clone(),
        });
        // Before the PBX is asked for its first channel list: that list then judges the
        // restored calls, never one older than them.
        let others_calls =
            resume_live_calls(&store, &pbx.name, outbox.worker(), &mut tracker).await;
        let (tx, rx) = mpsc::channel::<PbxInput>(EVENT_BUFFER);
        match pbx.kind {
            PbxKind::Asterisk => {
                readers.spawn(ami::client::run(
                    pbx.clone(),
                    tx,
                    status.clone(),
                    readers_stop.clone(),
                ));
            }
            PbxKind::FreeSwitch => {
                readers.spawn(esl::client::run(
                    pbx.clone(),
                    tx,
                    status.clone(),
                    readers_stop.clone(),
                ));
            }
        }
        processors.spawn(process(
            rx,
            tracker,
            others_calls,
            Processor::new(pbx.clone(), outbox.clone()).with_panel(panel_hub.clone()),
        ));
    }

    if let Some(ready) = ready {
        let _ = ready.send(Running {
            http_addr,
            store: store.clone(),
            pbx: status.clone(),
        });
    }
    info!(pbx = config.pbx.len(), crm = %config.crm.url, "callbridge running");

    // Every task runs until shutdown. One that ends before (a panic, a bug) would leave
    // calls unread or undelivered while /health still answered: stop everything and exit
    // with an error instead, so the service manager restarts callbridge, which resumes
    // from the store.
    let mut delivery = Some(delivery);
    crate::ops::service::ready();
    // The watchdog is kept alive from this loop: if it stops turning, systemd restarts us.
    let mut watchdog = crate::ops::service::Watchdog::from_env();
    let failed = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            Some(ended) = readers.join_next() => break Some(("a PBX connection", ended)),
            Some(ended) = processors.join_next() => break Some(("a PBX call processor", ended)),
            ended = async { match delivery.as_mut() { Some(d) => d.await, None => std::future::pending().await } } => {
                delivery = None;
                break Some(("the CRM delivery", ended));
            }
            _ = watchdog.tick() => watchdog.keep_alive(),
            Some(new) = reloads.recv() => {
                crate::ops::service::reloading();
                decider.reconfigure(&new).await;
                info!(extensions = new.employees.extensions.len(), seniors = new.employees.senior.len(),
                      create_on = ?new.matrix.create_on,
                      "configuration reloaded: employees map and matrix options (the rest applies at the next restart)");
                crate::ops::service::ready();
            }
        }
    };
    crate::ops::service::stopping();
    let failure = failed.map(|(what, ended)| {
        let why = match ended {
            Ok(()) => "ended".to_string(),
            Err(e) => task_failure(e),
        };
        error!(task = what, %why, "a task stopped before shutdown; stopping callbridge");
        format!("{what} stopped unexpectedly ({why})")
    });
    if failure.is_none() {
        info!("shutting down: closing PBX connections");
    }
    readers_stop.cancel();
    while readers.join_next().await.is_some() {}
    // The readers dropped their senders: processors drain what was read, then end.
    while processors.join_next().await.is_some() {}
    info!("PBX events drained; finishing CRM requests in flight");
    delivery_stop.cancel();
    if let Some(delivery) = delivery {
        let _ = delivery.await;
    }
    background_stop.cancel();
    background.close();
    background.wait().await;
    http_stop.cancel();
    let _ = http_task.await;
    store.close().await;
    match failure {
        Some(failure) => Err(anyhow::anyhow!(failure)),
        None => {
            info!("callbridge stopped");
            Ok(())
        }
    }
}

/// Registers the telephony module, trying again while the CRM is unreachable: calls are
/// followed meanwhile, and pop-ups sent by extension code wait for nothing but this.
async fn register_module(
    crm: CrmClient,
    code: String,
    base_url: String,
    codes: std::collections::BTreeMap<String, crate::ids::CrmId>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match crm.register(&code, &base_url, &codes).await {
            Ok(_) => return,
            Err(e) if e.is_transient() => {
                warn!(module = %code, error = %e, retry_in = ?delay, "could not register the telephony module; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
            Err(e) => {
                error!(module = %code, error = %e, "the CRM refused the telephony module (crm.module_code); pop-ups by extension code may not reach managers");
                return;
            }
        }
    }
}

/// What made a task end: its panic message, or that it was cancelled.
fn task_failure(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            format!("panicked: {message}")
        }
        Err(_) => "cancelled".into(),
    }
}
