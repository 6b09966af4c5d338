//! The daemon: wires the edges to the pure middle. For each PBX a client task reads
//! events and a processor task runs them through the call tracker and the action
//! rules into the outbox; one delivery worker sends the outbox to the CRM; the HTTP
//! side reports health.
//!
//! Start-up goes config → store → HTTP → CRM caches → PBX connections, so that the first
//! event read has somewhere to go and the first decision knows the managers. Shutdown
//! (SIGTERM, a cancelled token) goes the other way: stop reading the PBXs, let the last
//! events reach the outbox, give CRM requests in flight a grace period (everything else
//! stays in the outbox for the next start), stop the background tasks and the HTTP
//! side, close the store.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::actions::actions_for;
use crate::call::tracker::CallSnapshot;
use crate::call::{
    CallStage, CallSummary, CallTracker, CallUpdate, InternalExtensions, Outcome, TrackerConfig,
};
use crate::config::{Config, PbxConfig, PbxKind};
use crate::crm::RetailCrm;
use crate::delivery::decider::Decider;
use crate::delivery::{DeliveryOptions, Outbox};
use crate::http::{self, HttpState};
use crate::pbx::event::PbxInput;
use crate::pbx::status::PbxStatus;
use crate::pbx::{ami, esl};
use crate::recordings;
use crate::store::Commit;
use crate::store::Store;
use crate::time::Timestamp;

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
    if crate::metrics::install().is_none() {
        warn!("another metrics recorder is installed in this process: /metrics will be empty");
    }
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| format!("opening the store (store.url = {:?})", config.store.url))?;
    let crm = RetailCrm::new(&config.crm).context("setting up the CRM client")?;
    let status = PbxStatus::default();
    for pbx in &config.pbx {
        status.register(&pbx.name, &pbx.kind.to_string());
    }

    // One key for the links decisions make and the HTTP side that checks them.
    let link_key = crate::delivery::decider::link_key(&config);
    let http_stop = CancellationToken::new();
    let (http_addr, http_task) = http::serve(
        config.http.listen,
        HttpState {
            pbx: status.clone(),
            store: store.clone(),
            pbxs: std::sync::Arc::new(config.pbx.clone()),
            link_key: link_key.clone(),
            recording_wait: config.http.recording_wait,
            crm: crm.clone(),
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
            Processor {
                pbx: pbx.clone(),
                outbox: outbox.clone(),
                alone: Default::default(),
            },
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
    crate::service::ready();
    // The watchdog is kept alive from this loop: if it stops turning, systemd restarts us.
    let mut watchdog = crate::service::Watchdog::from_env();
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
                crate::service::reloading();
                decider.reconfigure(&new).await;
                info!(extensions = new.employees.extensions.len(), seniors = new.employees.senior.len(),
                      create_on = ?new.matrix.create_on,
                      "configuration reloaded: employees map and matrix options (the rest applies at the next restart)");
                crate::service::ready();
            }
        }
    };
    crate::service::stopping();
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
    crm: RetailCrm,
    code: String,
    base_url: String,
    codes: std::collections::BTreeMap<String, u64>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        match crm.register_module(&code, &base_url, &codes).await {
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

/// What a PBX's call processor needs besides its events.
#[derive(Clone)]
struct Processor {
    pbx: PbxConfig,
    outbox: Outbox,
    /// Whether this process is the PBX's only follower (pop-ups may go ahead of the store).
    alone: crate::delivery::express::Alone,
}

/// How many PBX inputs are applied before their results are written in one
/// transaction (group commit): bursts cost one write, a lone event is written at once.
const BATCH: usize = 256;

/// A store write slower than this is worth a warning: events wait behind it, and a
/// crash meanwhile loses what they said.
const SLOW_COMMIT: Duration = Duration::from_millis(500);

/// How often calls that saw no event for `stale_call_timeout` are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Live-call snapshots are written at most this often per call (and whenever the call
/// reaches a new stage). A snapshot only spares the resync some work after a crash, so a
/// little staleness costs nothing, while writing one per event batch would make the
/// store, not the PBX, set the pace (on PostgreSQL every statement is a round trip).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

/// One PBX's call processing: tracker, action rules, outbox. One span per call.
///
/// Two halves run side by side: one applies the PBX's inputs to the tracker (and sends a
/// ringing call's pop-up at once, see `express`), the other stores what came of them. The
/// first never waits for the store unless the second is `WRITE_QUEUE` batches behind,
/// so a pop-up is not held up by the write of the events before it.
async fn process(
    inputs: mpsc::Receiver<PbxInput>,
    tracker: CallTracker,
    others_calls: HashSet<String>,
    p: Processor,
) {
    // Another process that follows this PBX may still be sending its pop-ups ahead of
    // the store: give it time to see this one and stop before reading anything.
    if look_at_followers(&p).await != Some(0) {
        let wait = FOLLOW_EVERY * 2 + FOLLOW_EVERY / 2;
        info!(pbx = %p.pbx.name, wait = ?wait,
              "another process follows this PBX (or the store cannot say): waiting for it to stop sending pop-ups ahead of the store");
        tokio::time::sleep(wait).await;
    }
    let (batches, queued) = mpsc::channel(WRITE_QUEUE);
    let work = async {
        tokio::join!(
            track(inputs, tracker, others_calls, p.clone(), batches),
            write_batches(p.clone(), queued)
        )
    };
    tokio::select! {
        _ = work => {}
        _ = keep_following(&p) => {}
    }
    p.alone.deny();
    if let Err(e) = p
        .outbox
        .store()
        .unfollow(&p.pbx.name, p.outbox.worker())
        .await
    {
        debug!(pbx = %p.pbx.name, error = %e, "could not say this process stopped following the PBX");
    }
}

/// How often a processor says it follows its PBX and looks who else does.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// A follower not heard of for this long is taken for gone.
const FOLLOWER_GONE_AFTER: Duration = Duration::from_secs(10);

/// Says this process follows the PBX and returns how many others do (`None`: the store
/// could not say); allows pop-ups ahead of the store for a while when there are none.
async fn look_at_followers(p: &Processor) -> Option<usize> {
    let alive = match others_following(p.outbox.store(), &p.pbx.name, p.outbox.worker()).await {
        Ok(alive) => alive,
        Err(e) => {
            debug!(pbx = %p.pbx.name, error = %e, "could not look at the PBX's followers");
            p.alone.deny();
            return None;
        }
    };
    if alive == 0 {
        p.alone.confirm(FOLLOW_EVERY + FOLLOW_EVERY / 2);
    } else {
        if p.alone.now() {
            info!(pbx = %p.pbx.name, others = alive, "another process follows this PBX: pop-ups are stored before they are sent");
        }
        p.alone.deny();
    }
    Some(alive)
}

/// Says `worker` follows `pbx` and returns how many other live processes do. A
/// process of this host that is gone (killed, crashed) follows nothing.
async fn others_following(
    store: &Store,
    pbx: &str,
    worker: &str,
) -> Result<usize, crate::store::StoreError> {
    let now = Timestamp::now();
    let alive_since = Timestamp(now.0 - FOLLOWER_GONE_AFTER.as_micros() as i64);
    let others = store.follow(pbx, worker, now, alive_since).await?;
    let host = crate::delivery::identity::host_name();
    let mut alive = 0;
    for other in others {
        if crate::delivery::identity::worker_is_gone(&other, &host) {
            let _ = store.unfollow(pbx, &other).await;
        } else {
            alive += 1;
        }
    }
    Ok(alive)
}

/// Takes back the calls the store has as live on this PBX (their last snapshots).
/// Called before the PBX connection starts, so that the PBX's first channel list, which
/// judges them, is newer than every snapshot.
///
/// When another process follows the PBX now, those calls are its calls: they are taken
/// back only to know them (should that process stop, this one goes on with them), and
/// returned, so that their steps wait for that process's word (see `Held`).
async fn resume_live_calls(
    store: &Store,
    pbx: &str,
    worker: &str,
    tracker: &mut CallTracker,
) -> HashSet<String> {
    let company = match others_following(store, pbx, worker).await {
        Ok(alive) => alive > 0,
        Err(e) => {
            warn!(pbx, error = %e, "could not look at the PBX's followers; the live calls are taken back as another's");
            true
        }
    };
    let mut restored = HashSet::new();
    match store.live_snapshots(pbx).await {
        Ok(snapshots) => {
            for json in snapshots {
                match serde_json::from_str::<CallSnapshot>(&json) {
                    Ok(snapshot) => {
                        restored.insert(snapshot.call_id().to_string());
                        tracker.restore(snapshot);
                    }
                    Err(e) => warn!(pbx, error = %e, "unreadable live-call snapshot skipped"),
                }
            }
        }
        Err(e) => error!(pbx, error = %e, "could not read live calls from the store"),
    }
    if restored.is_empty() {
        return restored;
    }
    if company {
        info!(pbx, calls = restored.len(),
              "another process follows this PBX: the calls it follows are known here, their steps are its to record");
        restored
    } else {
        info!(
            pbx,
            calls = restored.len(),
            "resuming calls that were live before the restart"
        );
        HashSet::new()
    }
}

/// Looks at the PBX's followers every `FOLLOW_EVERY`, for ever.
async fn keep_following(p: &Processor) {
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        look_at_followers(p).await;
    }
}

/// Batches waiting to be stored before the tracking half waits for the store.
const WRITE_QUEUE: usize = 64;

/// What the tracking half hands to the storing half.
#[derive(Default)]
struct WriteBatch {
    updates: Vec<Staged>,
    snapshots: Vec<Commit>,
}

/// One call update on its way to the store, with its call's span; a ringing one with
/// its actions decided already and, when its pop-up is on its way, the express ticket.
struct Staged {
    update: CallUpdate,
    span: tracing::Span,
    actions: Option<Vec<crate::actions::CrmAction>>,
    express: Option<crate::delivery::express::ExpressTicket>,
}

/// The tracking half: inputs → tracker → updates, pop-ups sent as ringing is read.
async fn track(
    mut inputs: mpsc::Receiver<PbxInput>,
    mut tracker: CallTracker,
    others_calls: HashSet<String>,
    p: Processor,
    batches: mpsc::Sender<WriteBatch>,
) {
    let mut held = Held {
        others_calls,
        ..Held::default()
    };
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshots = SnapshotSchedule::default();
    let mut clock = PbxClock::default();
    let mut meters = crate::metrics::PbxMeters::new(&p.pbx.name);
    loop {
        let mut updates = Vec::new();
        let snapshot_due = snapshots.due_in();
        let held_due = held.next_due();
        tokio::select! {
            first = inputs.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match inputs.try_recv() {
                        Ok(input) => batch.push(input),
                        Err(_) => break,
                    }
                }
                for input in batch {
                    if let PbxInput::Event(event) = &input {
                        meters.event(event);
                    }
                    let pbx_now = clock.now(&tracker);
                    // Staged as each input is applied: a ringing call's pop-up goes out
                    // now, not after the rest of the batch.
                    let company = !p.alone.now();
                    for update in apply(&mut tracker, pbx_now, input) {
                        if let Some(update) = held.admit(update, &tracker, company) {
                            updates.push(stage(&p, update, false));
                        }
                    }
                    clock.observe(&tracker);
                }
            }
            _ = sweep.tick() => {
                let stale = tracker.sweep(clock.now(&tracker), p.pbx.stale_call_timeout);
                if !stale.is_empty() {
                    warn!(pbx = %p.pbx.name, calls = stale.len(), timeout = ?p.pbx.stale_call_timeout,
                          "ending calls that saw no event for too long");
                }
                let company = !p.alone.now();
                for update in stale {
                    if let Some(update) = held.admit(update, &tracker, company) {
                        updates.push(stage(&p, update, false));
                    }
                }
            }
            _ = tokio::time::sleep_until(held_due.unwrap_or_else(tokio::time::Instant::now)), if held_due.is_some() => {}
            _ = tokio::time::sleep(snapshot_due.unwrap_or(SWEEP_EVERY)), if snapshot_due.is_some() => {}
        }
        updates.extend(
            held.due(p.alone.now())
                .into_iter()
                .map(|update| stage(&p, update, true)),
        );
        for staged in &updates {
            if let CallStage::Ended(summary) = &staged.update.stage {
                meters.call_ended(summary);
            }
        }
        meters.live_calls(tracker.live_calls());
        // The snapshots of another process's calls are its to write.
        let company = !p.alone.now();
        let batch = with_snapshots(&mut tracker, &mut snapshots, updates, |tracker, id| {
            company && held.is_theirs(tracker, id)
        });
        if (!batch.updates.is_empty() || !batch.snapshots.is_empty())
            && batches.send(batch).await.is_err()
        {
            return;
        }
    }
    // Stopping: what was held back is stored now rather than lost (the store keeps the
    // first word on each step, so another process's earlier one stands).
    let rest: Vec<Staged> = held
        .drain()
        .into_iter()
        .map(|u| stage(&p, u, true))
        .collect();
    if !rest.is_empty() {
        let _ = batches
            .send(WriteBatch {
                updates: rest,
                snapshots: Vec::new(),
            })
            .await;
    }
}

/// The longest the steps of a call known only in part are held back while another
/// process follows the PBX (see `Held`). Past it they are stored: late rather than
/// lost, and the store keeps the first word on each step, so another process's earlier
/// one stands.
const HOLD_PARTIAL: Duration = Duration::from_secs(60);

/// How often held steps are looked at (are we alone now?).
const HOLD_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Steps of calls this process knows only in part, held back while another process
/// follows the same PBX: calls taken up mid-call from the PBX's list or a mid-call event,
/// and calls taken back from the store that the other process follows (this process
/// started while they were in progress). That process knows them whole; the store keeps
/// the first word on each step, so this one's must come after. They are let go once no
/// other process follows the PBX (it stopped, or was killed), or after `HOLD_PARTIAL`.
/// A held call's later steps queue behind its first, so they reach the store in order.
#[derive(Default)]
struct Held {
    queue: std::collections::VecDeque<(tokio::time::Instant, CallUpdate)>,
    /// Held steps per call.
    calls: std::collections::HashMap<String, usize>,
    /// Live calls taken back from the store while another process followed them.
    others_calls: HashSet<String>,
}

impl Held {
    /// Holds `update` back (`None`) when its call is known only in part and another
    /// process may know it whole, or when earlier steps of its call are held.
    fn admit(
        &mut self,
        update: CallUpdate,
        tracker: &CallTracker,
        company: bool,
    ) -> Option<CallUpdate> {
        let id = &update.header.call_id;
        let theirs = match &update.stage {
            // The call is gone from the tracker: its summary says how it was known.
            CallStage::Ended(s) => s.reconstructed || self.others_calls.remove(id),
            _ => self.is_theirs(tracker, id),
        };
        let queued = self.calls.contains_key(id);
        if !(queued || company && theirs) {
            return Some(update);
        }
        if self.queue.is_empty() {
            info!(pbx = %update.header.pbx, hold = ?HOLD_PARTIAL,
                  "calls known here only in part while another process follows this PBX: their steps wait for that process's word");
        }
        if !queued {
            debug!(pbx = %update.header.pbx, call_id = %id, hold = ?HOLD_PARTIAL,
                  "a call known only in part while another process follows this PBX: its steps wait for that process's word");
        }
        *self.calls.entry(id.clone()).or_default() += 1;
        self.queue
            .push_back((tokio::time::Instant::now() + HOLD_PARTIAL, update));
        None
    }

    /// The call is known here only in part, or was taken back while another process
    /// followed it.
    fn is_theirs(&self, tracker: &CallTracker, id: &str) -> bool {
        self.others_calls.contains(id) || tracker.known_in_part(id)
    }

    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.queue
            .front()
            .map(|(at, _)| (*at).min(tokio::time::Instant::now() + HOLD_LOOK_EVERY))
    }

    /// The held steps to let go, in order: all of them once this process is `alone`,
    /// else those held for `HOLD_PARTIAL`.
    fn due(&mut self, alone: bool) -> Vec<CallUpdate> {
        let now = tokio::time::Instant::now();
        let mut out = Vec::new();
        while self
            .queue
            .front()
            .is_some_and(|(at, _)| alone || *at <= now)
        {
            if let Some((_, update)) = self.queue.pop_front() {
                self.release(&update.header.call_id);
                out.push(update);
            }
        }
        out
    }

    fn drain(&mut self) -> Vec<CallUpdate> {
        self.calls.clear();
        self.queue.drain(..).map(|(_, u)| u).collect()
    }

    fn release(&mut self, id: &str) {
        if let Some(n) = self.calls.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.calls.remove(id);
            }
        }
    }
}

/// Gives an update its call's span and decides a ringing call's actions now, sending
/// its pop-up when it can: ahead of the store only when this process is the PBX's one
/// follower and the step was not held back (another process may have sent it).
fn stage(p: &Processor, update: CallUpdate, held_back: bool) -> Staged {
    let span = info_span!(
        "call",
        pbx = %update.header.pbx,
        call_id = %update.header.call_id,
        direction = update.header.direction.as_str()
    );
    let (mut actions, mut express) = (None, None);
    match update.stage {
        CallStage::Ringing { .. } => span.in_scope(|| {
            let mut decided = actions_of(&update);
            express = p.outbox.send_now(
                &update.header.external_id(),
                &mut decided,
                &span,
                p.alone.now() && !held_back,
            );
            actions = Some(decided);
        }),
        CallStage::Ended(_) => p.outbox.call_ended(&update.header.external_id()),
        CallStage::Answered { .. } => {}
    }
    Staged {
        update,
        span,
        actions,
        express,
    }
}

/// A batch for the storing half: the staged updates and the live-call snapshots due.
fn with_snapshots(
    tracker: &mut CallTracker,
    snapshots: &mut SnapshotSchedule,
    updates: Vec<Staged>,
    skip: impl Fn(&CallTracker, &str) -> bool,
) -> WriteBatch {
    let staged: HashSet<String> = updates
        .iter()
        .map(|s| s.update.header.call_id.clone())
        .collect();
    let mut batch = WriteBatch {
        updates,
        snapshots: Vec::new(),
    };
    for call_id in snapshots.take(tracker, &staged) {
        if skip(tracker, &call_id) {
            continue;
        }
        if let (Some(snapshot), Some(header)) =
            (tracker.snapshot(&call_id), tracker.header_of(&call_id))
        {
            if let Ok(state) = serde_json::to_string(&snapshot) {
                batch.snapshots.push(Commit::Snapshot { header, state });
            }
        }
    }
    batch
}

/// The actions an update causes (in its call's span: says why when none).
fn actions_of(update: &CallUpdate) -> Vec<crate::actions::CrmAction> {
    match actions_for(update) {
        Ok(actions) => actions,
        Err(reason) => {
            debug!(?reason, "no CRM action for this step");
            Vec::new()
        }
    }
}

/// The storing half: every batch that queued while the last was written goes in one
/// transaction (group commit).
async fn write_batches(p: Processor, mut queued: mpsc::Receiver<WriteBatch>) {
    while let Some(mut batch) = queued.recv().await {
        while batch.updates.len() < BATCH {
            match queued.try_recv() {
                Ok(more) => {
                    batch.updates.extend(more.updates);
                    batch.snapshots.extend(more.snapshots);
                }
                Err(_) => break,
            }
        }
        write(&p, batch).await;
    }
}

/// Which live calls have changed since their last snapshot, and when the next round of
/// snapshots is due.
#[derive(Default)]
struct SnapshotSchedule {
    dirty: HashSet<String>,
    last: Option<tokio::time::Instant>,
}

impl SnapshotSchedule {
    /// How long until the dirty calls' snapshots are due (`None`: nothing to write).
    fn due_in(&self) -> Option<Duration> {
        if self.dirty.is_empty() {
            return None;
        }
        Some(match self.last {
            Some(last) => SNAPSHOT_EVERY.saturating_sub(last.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// The calls whose snapshot goes into this write: all dirty ones when due, else only
    /// those that reached a new stage in it.
    fn take(&mut self, tracker: &mut CallTracker, staged: &HashSet<String>) -> Vec<String> {
        self.dirty.extend(tracker.take_dirty());
        if self.due_in() == Some(Duration::ZERO) {
            self.last = Some(tokio::time::Instant::now());
            return self.dirty.drain().collect();
        }
        let now: Vec<String> = self
            .dirty
            .iter()
            .filter(|id| staged.contains(*id))
            .cloned()
            .collect();
        for id in &now {
            self.dirty.remove(id);
        }
        now
    }
}

/// The PBX's clock as best known here: its latest event time, moved on by the time that
/// passed on ours since. Calls are judged stale and lists of channels are dated on it,
/// so a PBX whose clock differs from this host's (or recorded calls replayed) is judged
/// by its own time.
#[derive(Default)]
struct PbxClock {
    seen: Option<(Timestamp, tokio::time::Instant)>,
}

impl PbxClock {
    fn observe(&mut self, tracker: &CallTracker) {
        let latest = tracker.pbx_clock();
        if latest.0 > 0 && self.seen.is_none_or(|(t, _)| latest > t) {
            self.seen = Some((latest, tokio::time::Instant::now()));
        }
    }

    fn now(&mut self, tracker: &CallTracker) -> Timestamp {
        self.observe(tracker);
        match self.seen {
            Some((t, when)) => Timestamp(t.0 + when.elapsed().as_micros() as i64),
            None => Timestamp::now(),
        }
    }
}

fn apply(tracker: &mut CallTracker, pbx_now: Timestamp, input: PbxInput) -> Vec<CallUpdate> {
    tracing::trace!(?input, "PBX input");
    match input {
        PbxInput::Event(event) => tracker.apply(&event),
        PbxInput::ResyncBegin { after_gap } => {
            tracker.begin_resync(after_gap);
            Vec::new()
        }
        PbxInput::Resync { at: _, channels } => {
            // The list was read now; its moment on the PBX's clock.
            let at = pbx_now;
            debug!(
                channels = channels.len(),
                live_calls = tracker.live_calls(),
                "resync with the PBX's channel list"
            );
            tracker.resync(at, &channels)
        }
        PbxInput::Restarted { .. } => {
            tracker.pbx_restarted();
            Vec::new()
        }
    }
}

/// Logs each update in its call's span, completes what only the disk knows, decides the
/// actions, and stores everything (updates, actions, live-call snapshots) in one
/// transaction; then tells the express pop-ups their ids.
async fn write(p: &Processor, batch: WriteBatch) {
    let mut items = Vec::with_capacity(batch.updates.len() + batch.snapshots.len());
    let mut tickets = Vec::new();
    for staged in batch.updates {
        let Staged {
            mut update,
            span,
            actions,
            express,
        } = staged;
        // Never hold an entered span across an await: the task may move to another
        // thread, and tracing's span stack would be left wrong (it panics on it).
        if let CallStage::Ended(summary) = &mut update.stage {
            complete_from_disk(&p.pbx, summary)
                .instrument(span.clone())
                .await;
        }
        let actions = span.in_scope(|| {
            log_update(&update);
            actions.unwrap_or_else(|| actions_of(&update))
        });
        match express {
            Some(ticket) => {
                items.push(Commit::Sending {
                    update,
                    actions,
                    claim: ticket.claim(),
                });
                tickets.push((items.len() - 1, ticket));
            }
            None => items.push(Commit::Update { update, actions }),
        }
    }
    items.extend(batch.snapshots);
    if items.is_empty() {
        return;
    }
    // The store must take it: retry rather than lose a call. While it fails, this PBX's
    // reading waits (the event buffer fills), which is the right pressure.
    let mut delay = Duration::from_millis(100);
    let started = std::time::Instant::now();
    loop {
        match p.outbox.commit(&items).await {
            Ok(mut ids) => {
                let took = started.elapsed();
                if took > SLOW_COMMIT {
                    warn!(pbx = %p.pbx.name, items = items.len(), took = ?took,
                          "storing call updates was slow; PBX events wait meanwhile");
                } else {
                    debug!(items = items.len(), took = ?took, "call updates stored");
                }
                for (i, ticket) in tickets {
                    ticket.stored(std::mem::take(&mut ids[i]));
                }
                return;
            }
            Err(e) => {
                error!(pbx = %p.pbx.name, error = %e, retry_in = ?delay, "could not store call updates; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn log_update(update: &CallUpdate) {
    match &update.stage {
        CallStage::Ringing { new, .. } => {
            info!(caller = ?update.header.customer_number, did = ?update.header.did, ringing = ?new, "ringing")
        }
        CallStage::Answered { extension } => info!(%extension, "answered"),
        CallStage::Ended(s) => info!(
            outcome = s.outcome.as_str(),
            employee = ?s.employee,
            talkers = ?s.talkers.iter().map(|t| format!("{}:{}s", t.extension, t.talk_secs)).collect::<Vec<_>>(),
            talk_secs = s.talk_secs,
            duration_secs = s.duration_secs,
            recording = ?s.recording,
            voicemail = ?s.voicemail.as_ref().map(|v| &v.mailbox),
            reconstructed = s.reconstructed,
            "ended"
        ),
    }
}

/// Fills in what the events did not say: the voicemail message an older Asterisk did
/// not name (no message found means the caller hung up before the beep: a missed
/// call), and a recording named after one of the call's channels.
async fn complete_from_disk(pbx: &PbxConfig, summary: &mut CallSummary) {
    let since = summary.header.started_at;
    if summary.outcome == Outcome::Voicemail {
        if let Some(vm) = summary.voicemail.as_mut().filter(|v| v.message.is_none()) {
            if pbx.kind == PbxKind::FreeSwitch {
                // FreeSWITCH names every message it stores (`vm::maintenance`): none
                // means the caller hung up before the beep.
                info!(mailbox = %vm.mailbox, "caller reached voicemail but left no message");
                summary.outcome = Outcome::Missed;
                summary.voicemail = None;
                return complete_recording(pbx, summary).await;
            }
            let (dir, mailbox) = (pbx.voicemail_dir.clone(), vm.mailbox.clone());
            let found = tokio::task::spawn_blocking(move || {
                recordings::find_voicemail_message(&dir, &mailbox, since)
            })
            .await
            .ok()
            .flatten();
            match found {
                Some(message) => vm.message = Some(message),
                None => {
                    info!(mailbox = %vm.mailbox, "caller reached voicemail but left no message");
                    summary.outcome = Outcome::Missed;
                    summary.voicemail = None;
                }
            }
        }
    }
    complete_recording(pbx, summary).await
}

/// A recording the events did not name, found on disk by one of the call's channel ids.
async fn complete_recording(pbx: &PbxConfig, summary: &mut CallSummary) {
    let since = summary.header.started_at;
    if summary.recording.is_none()
        && summary.outcome == Outcome::Answered
        && !summary.channels.is_empty()
    {
        let (dir, ids) = (pbx.recordings_dir.clone(), summary.channels.clone());
        let found =
            tokio::task::spawn_blocking(move || recordings::find_recording(&dir, &ids, since))
                .await
                .ok()
                .flatten();
        summary.recording = found.map(|p| p.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::TrackerConfig;
    use crate::pbx::ami::normalize::normalize;
    use crate::pbx::ami::{AmiCodec, AmiItem};
    use tokio_util::codec::Decoder;

    /// A call restored after a restart is judged by the PBX's clock: a PBX whose clock is
    /// hours behind ours (or a replayed recording) does not make every call look stale.
    #[tokio::test]
    async fn staleness_is_judged_on_the_pbx_clock() {
        // Half a call, recorded hours ago by the PBX's clock.
        let bytes = include_bytes!("../tests/fixtures/asterisk/iax2/inbound_answered.ami");
        let mut codec = AmiCodec::new();
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let mut events = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let AmiItem::Frame(f) = item {
                if let Ok(ev) = normalize(&f, Timestamp(0)) {
                    events.push(ev);
                }
            }
        }
        let mut before = CallTracker::new(TrackerConfig::default());
        for e in &events[..events.len() / 2] {
            before.apply(e);
        }
        let snapshots: Vec<_> = before
            .take_dirty()
            .iter()
            .filter_map(|id| before.snapshot(id))
            .collect();
        assert_eq!(snapshots.len(), 1);
        let mut after = CallTracker::new(TrackerConfig::default());
        for s in snapshots {
            after.restore(s);
        }
        let mut clock = PbxClock::default();
        let now = clock.now(&after);
        assert!(
            Timestamp::now().0 - now.0 > 3_600_000_000,
            "the recording's clock is hours behind this one"
        );
        assert!(after.sweep(now, Duration::from_secs(6 * 3600)).is_empty());
        assert_eq!(after.live_calls(), 1, "the call goes on");
        // By our own clock it would have been ended as stale.
        assert_eq!(
            after
                .sweep(Timestamp::now(), Duration::from_secs(3600))
                .len(),
            1
        );
    }
}
