//! The outbox: every CRM action is stored before it is attempted and marked done only
//! after the CRM confirmed it. A delivery worker claims due actions from the store (under
//! a lease, so several workers or processes never send one action twice), sends them, one
//! call's actions in order and different calls concurrently (bounded), and retries
//! transient failures with exponential backoff and jitter (honouring `Retry-After`).
//! Actions the CRM refuses for good, and actions still failing `give_up_after` after they
//! were made, are parked as `dead` with the reason. The guarantees per kind of action are
//! in docs/delivery.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::actions::{CallEventType, CrmAction, EntityRef};
use crate::call::CallUpdate;
use crate::crm::{CrmError, Delivered, RetailCrm};
use crate::decider::{DecideError, Decider};
use crate::express::{ExpressLane, ExpressTicket};
use crate::store::{
    Attempt, AttemptResult, Commit, Lane, PendingAction, Settled, Store, StoreError,
};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Calls delivered at the same time.
    pub concurrency: usize,
    /// On shutdown, how long requests already sent may take to finish.
    pub grace: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// An action still failing this long after it was made (or retried by hand) is
    /// dead-lettered.
    pub give_up_after: Duration,
    /// How long a claim keeps other workers off an action: longer than one attempt
    /// (rate-limit wait + request timeout) can take.
    pub lease: Duration,
    /// How often the outbox's state is written to the log.
    pub report_every: Duration,
    /// Runs matrix decisions (`CrmAction::Decide`); without one they wait (dead with
    /// the reason) until a process that has one is started.
    pub decider: Option<Decider>,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            concurrency: 16,
            grace: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(120),
            report_every: Duration::from_secs(60),
            decider: None,
        }
    }
}

/// Cheap to clone: the store and a wake-up bell for the worker.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    wake: Arc<Notify>,
    /// Set when urgent actions (pop-ups) were stored: the worker claims them on their
    /// own lane at once, without asking the store when there are none.
    urgent: Arc<AtomicBool>,
    /// Pop-ups sent as their ringing is read (see `express`), while `run` delivers.
    express: Arc<std::sync::RwLock<Option<ExpressLane>>>,
    /// This process's name on its claims (and as a PBX's follower).
    worker: Arc<str>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Outbox {
            store,
            wake: Arc::new(Notify::new()),
            urgent: Arc::new(AtomicBool::new(false)),
            express: Arc::new(std::sync::RwLock::new(None)),
            worker: worker_name().into(),
        }
    }

    /// This process's name on its claims: host, process id and a random tag.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Sends a ringing decision's pop-ups now if it can be made from memory, replacing
    /// the decision in `actions` by them; store them with [`Commit::Sending`] under the
    /// ticket's claim, then give the ticket their ids. `None`: store `actions` as usual.
    /// `allowed`: this process is the PBX's one follower (else the ringing is only
    /// noted, so the call's later pop-ups keep their order).
    pub fn send_now(
        &self,
        call_id: &str,
        actions: &mut Vec<CrmAction>,
        span: &tracing::Span,
        allowed: bool,
    ) -> Option<ExpressTicket> {
        let lane = match self.express.read() {
            Ok(lane) => lane,
            Err(poisoned) => poisoned.into_inner(),
        };
        lane.as_ref()?.send_now(call_id, actions, span, allowed)
    }

    /// A call ended: the express lane forgets it.
    pub fn call_ended(&self, call_id: &str) {
        let lane = match self.express.read() {
            Ok(lane) => lane,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(lane) = lane.as_ref() {
            lane.forget(call_id);
        }
    }

    fn set_express(&self, lane: Option<ExpressLane>) {
        match self.express.write() {
            Ok(mut l) => *l = lane,
            Err(poisoned) => *poisoned.into_inner() = lane,
        }
    }

    fn wake_for(&self, urgent: bool) {
        if urgent {
            self.urgent.store(true, Ordering::Release);
        }
        self.wake.notify_one();
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a batch of call updates, their actions and live-call snapshots (one
    /// transaction), then wakes the worker. Returns each item's new action ids.
    pub async fn commit(&self, items: &[Commit]) -> Result<Vec<Vec<i64>>, StoreError> {
        let ids = self.store.commit_each(items).await?;
        // Actions stored claimed are on their way already: nothing to wake for.
        let waiting = |item: &(&Commit, &Vec<i64>)| {
            !item.1.is_empty() && !matches!(item.0, Commit::Sending { .. })
        };
        let stored: Vec<_> = items.iter().zip(&ids).filter(waiting).collect();
        if !stored.is_empty() {
            let urgent = stored.iter().any(|(item, _)| match item {
                Commit::Update { actions, .. } | Commit::Actions { actions, .. } => {
                    actions.iter().any(CrmAction::is_urgent)
                }
                _ => false,
            });
            self.wake_for(urgent);
        }
        Ok(ids)
    }

    /// Stores a call update and the actions it causes (one transaction), then wakes the
    /// worker.
    pub async fn enqueue(
        &self,
        update: &CallUpdate,
        actions: &[CrmAction],
    ) -> Result<Vec<i64>, StoreError> {
        let ids = self.store.record(update, actions).await?;
        if !ids.is_empty() {
            self.wake_for(actions.iter().any(CrmAction::is_urgent));
        }
        Ok(ids)
    }

    /// Delivers until `shutdown`, then lets in-flight requests finish for up to
    /// `options.grace`; whatever is still unconfirmed stays pending for the next start
    /// (or for another process once its lease runs out).
    pub async fn run(self, crm: RetailCrm, options: DeliveryOptions, shutdown: CancellationToken) {
        let worker = self.worker.to_string();
        info!(%worker, concurrency = options.concurrency, "outbox: delivering");
        self.expire_dead_workers_claims().await;
        let mut in_flight: JoinSet<()> = JoinSet::new();
        // Pop-ups have slots of their own: they never wait for a history upload or a
        // customer lookup of another call to finish.
        let mut urgent: JoinSet<()> = JoinSet::new();
        let (results, results_rx) = mpsc::channel::<AttemptResult>(options.concurrency.max(1) * 8);
        let writer = tokio::spawn(write_results(self.clone(), results_rx));
        let express_tasks = tokio_util::task::TaskTracker::new();
        let express_stop = CancellationToken::new();
        if options.decider.is_some() {
            self.set_express(Some(ExpressLane {
                crm: crm.clone(),
                options: options.clone(),
                worker: worker.clone(),
                results: results.clone(),
                slots: Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1))),
                tasks: express_tasks.clone(),
                stop: express_stop.clone(),
                calls: Default::default(),
            }));
        }
        let mut next_report = Instant::now() + options.report_every;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let urgent_free = options.concurrency.saturating_sub(urgent.len());
            if urgent_free > 0 && self.urgent.swap(false, Ordering::AcqRel) {
                let now = Timestamp::now();
                let lease_until = Timestamp(now.0 + options.lease.as_micros() as i64);
                match self
                    .store
                    .claim_lane(&worker, now, lease_until, urgent_free, Lane::Urgent)
                    .await
                {
                    Ok(claimed) => {
                        if claimed.len() == urgent_free {
                            // More may be waiting for a slot.
                            self.urgent.store(true, Ordering::Release);
                        }
                        for pending in claimed {
                            urgent.spawn(self.delivery(&crm, &options, pending, &results));
                        }
                    }
                    Err(e) => {
                        self.urgent.store(true, Ordering::Release);
                        warn!(error = %e, "outbox: claiming pop-ups failed; trying again shortly")
                    }
                }
            }
            let free = options.concurrency.saturating_sub(in_flight.len());
            let mut claimed_all = false;
            // Claim in handfuls, not one by one: every claim is a committed transaction
            // (a disk flush on PostgreSQL), and the flushes, not the CRM, would set the pace.
            let worth_claiming =
                free > 0 && (in_flight.is_empty() || free * 4 >= options.concurrency.max(4));
            if worth_claiming {
                let now = Timestamp::now();
                let lease_until = Timestamp(now.0 + options.lease.as_micros() as i64);
                match self.store.claim(&worker, now, lease_until, free).await {
                    Ok(claimed) => {
                        claimed_all = claimed.len() == free;
                        for pending in claimed {
                            in_flight.spawn(self.delivery(&crm, &options, pending, &results));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "outbox: claiming due actions failed; trying again shortly")
                    }
                }
            }
            if Instant::now() >= next_report {
                next_report = Instant::now() + options.report_every;
                self.report().await;
                self.expire_dead_workers_claims().await;
            }
            // Next look: soon after a full claim, else when the earliest action is due.
            let nap = if claimed_all || !worth_claiming {
                // More may be due at once, or a handful of workers must free up first.
                Duration::from_millis(5)
            } else {
                match self.store.next_due().await {
                    Ok(Some(t)) => Duration::from_micros((t.0 - Timestamp::now().0).max(0) as u64),
                    _ => Duration::from_secs(1),
                }
                .clamp(Duration::from_millis(5), Duration::from_secs(1))
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {
                    // A task that panicked leaves its action claimed; the lease runs out
                    // and it is delivered again, "in doubt".
                    while in_flight.try_join_next().is_some() {}
                }
                Some(_) = urgent.join_next(), if !urgent.is_empty() => {
                    while urgent.try_join_next().is_some() {}
                }
                _ = tokio::time::sleep(nap), if in_flight.len() < options.concurrency => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // No more express pop-ups: the call processors store their decisions from now.
        self.set_express(None);
        express_tasks.close();
        // Pop-ups in flight get the same grace period as the rest.
        let busy = in_flight.len() + urgent.len() + express_tasks.len();
        if busy > 0 {
            info!(count = busy, grace = ?options.grace, "outbox: waiting for requests in flight");
            let drained = tokio::time::timeout(options.grace, async {
                while in_flight.join_next().await.is_some() {}
                while urgent.join_next().await.is_some() {}
                express_tasks.wait().await;
            })
            .await;
            if drained.is_err() {
                warn!(
                    count = in_flight.len() + urgent.len() + express_tasks.len(),
                    "outbox: requests still in flight after the grace period; they stay pending and are retried (in doubt) at the next start"
                );
                in_flight.abort_all();
                urgent.abort_all();
                express_stop.cancel();
                while in_flight.join_next().await.is_some() {}
                while urgent.join_next().await.is_some() {}
                express_tasks.wait().await;
            }
        }
        // The last results are written before the store closes.
        drop(results);
        let _ = writer.await;
        self.report().await;
    }

    /// One claimed action's delivery, in its call's span.
    fn delivery(
        &self,
        crm: &RetailCrm,
        options: &DeliveryOptions,
        pending: PendingAction,
        results: &mpsc::Sender<AttemptResult>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let span = info_span!("call", call_id = %pending.call_id, action = pending.id);
        deliver(
            self.store.clone(),
            crm.clone(),
            options.clone(),
            pending,
            results.clone(),
        )
        .instrument(span)
    }

    /// One log line with the outbox's state.
    async fn report(&self) {
        match self.store.outbox_metrics(Timestamp::now()).await {
            Ok(m) => info!(
                pending = m.pending,
                in_flight = m.in_flight,
                failed = m.failed,
                dead = m.dead,
                done = m.done,
                latency_ms_median = m.latency_ms_median,
                latency_ms_p95 = m.latency_ms_p95,
                "outbox"
            ),
            Err(e) => warn!(error = %e, "outbox: reading its state failed"),
        }
    }
}

impl Outbox {
    /// Claims of callbridge processes of this host that are gone (killed, crashed) need
    /// not wait for their leases: they are made claimable now, in doubt. Claims of other
    /// hosts run out by their lease.
    async fn expire_dead_workers_claims(&self) {
        let now = Timestamp::now();
        let host = host_name();
        let Ok(claimers) = self.store.claimers(now).await else {
            return;
        };
        for worker in claimers {
            if !worker_is_gone(&worker, &host) {
                continue;
            }
            match self.store.expire_claims(&worker, now).await {
                Ok(n) if n > 0 => info!(
                    %worker,
                    actions = n,
                    "outbox: taking over the claims of a callbridge process that is gone (in doubt: looked up before re-creating)"
                ),
                Ok(_) => {}
                Err(e) => warn!(%worker, error = %e, "outbox: could not take over claims"),
            }
        }
    }
}

/// Whether `worker` (a name from [`Outbox::worker`]) was a process of this host that is
/// no longer running. Workers of other hosts are not judged here.
pub(crate) fn worker_is_gone(worker: &str, host: &str) -> bool {
    let mut parts = worker.split(':');
    match (parts.next(), parts.next()) {
        (Some(h), Some(pid)) => h == host && !process_is_callbridge(pid),
        _ => false,
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Whether `pid` is a running callbridge process (a reused pid belongs to something else).
fn process_is_callbridge(pid: &str) -> bool {
    if pid == std::process::id().to_string() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().starts_with("callbridge"))
        .unwrap_or(false)
}

/// Names this process's claims in the store: host, process id and a random tag, so two
/// processes (or a restarted one) never mistake each other's claims.
fn worker_name() -> String {
    format!(
        "{}:{}:{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Why an action is not sent as it stands.
enum Hold {
    /// Settled without a request (the reason is kept as the action's note).
    Skip(String),
    /// Can never be sent (a step it depends on is dead).
    Dead(String),
}

/// Replaces references to earlier steps of the call by the ids the CRM answered, and
/// decides whether an action in doubt is still worth sending.
async fn prepare(store: &Store, pending: &mut PendingAction) -> Result<Option<Hold>, StoreError> {
    if pending
        .action
        .refs_mut()
        .iter()
        .any(|r| matches!(r, EntityRef::Step(_)))
    {
        let steps = store.step_results(&pending.call_id).await?;
        for r in pending.action.refs_mut() {
            let EntityRef::Step(step) = r else { continue };
            match steps.get(step.as_str()) {
                Some(s) if s.state == "done" => {
                    if let Some(id) = s
                        .result
                        .as_ref()
                        .and_then(|v| v.get("id"))
                        .and_then(|v| v.as_u64())
                    {
                        *r = EntityRef::Id(id);
                    }
                    // Without an id the step stays a reference by its externalId.
                }
                Some(s) if s.state == "dead" || s.state == "dropped" => {
                    return Ok(Some(Hold::Dead(format!(
                        "depends on {step} (action {}), which is {}; retry that one first",
                        s.action_id, s.state
                    ))));
                }
                // Not stored (made by another call) or still pending: by externalId.
                _ => {}
            }
        }
    }
    // A ringing pop-up that may already have been shown is not shown again once the
    // call has moved on: it would pop up for a call that is over.
    if let CrmAction::CallEvent(e) = &pending.action {
        if pending.in_doubt && e.event != CallEventType::Hangup {
            let stage = store.call_stage(&pending.call_id).await?;
            if stage.as_deref() == Some("ended") {
                return Ok(Some(Hold::Skip(
                    "not repeated after an uncertain attempt: the call has ended".into(),
                )));
            }
        }
    }
    Ok(None)
}

/// One attempt at one action, and its record in the store.
async fn deliver(
    store: Store,
    crm: RetailCrm,
    options: DeliveryOptions,
    mut pending: PendingAction,
    results: mpsc::Sender<AttemptResult>,
) {
    let kind = pending.action.kind();
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let mut spawn = Vec::new();
    let mut sent_along = Vec::new();
    let result: Result<Delivered, DeliveryError> = match prepare(&store, &mut pending).await {
        Ok(None) => match (&pending.action, &options.decider) {
            (CrmAction::Decide(request), Some(decider)) => {
                match decider.decide(&store, &pending.call_id, request).await {
                    Ok(actions) => {
                        let kinds: Vec<&str> = actions.iter().map(CrmAction::kind).collect();
                        let note = format!(
                            "decided: {}",
                            if kinds.is_empty() {
                                "nothing".to_string()
                            } else {
                                kinds.join(", ")
                            }
                        );
                        // The pop-ups a ringing decision makes go out now, from here:
                        // storing them to claim them again would cost them two store
                        // round trips while the phone rings. They are stored as done
                        // with the decision; any that fails is stored pending instead.
                        if pending.action.is_urgent() {
                            for action in actions
                                .iter()
                                .take_while(|a| matches!(a, CrmAction::CallEvent(_)))
                            {
                                let (at, clock) = (Timestamp::now(), Instant::now());
                                match crm.send(action, false).await {
                                    Ok(delivered) => {
                                        if let Some(note) = &delivered.note {
                                            info!(kind = action.kind(), note = %note, "CRM accepted with a remark");
                                        }
                                        sent_along.push(Attempt {
                                            started_at: at,
                                            elapsed: clock.elapsed(),
                                            http_status: (delivered.status != 0)
                                                .then_some(delivered.status),
                                            error: None,
                                        });
                                    }
                                    Err(e) => {
                                        debug!(error = %e, "pop-up not sent with its decision; it is delivered on its own");
                                        break;
                                    }
                                }
                            }
                        }
                        spawn = actions;
                        Ok(Delivered {
                            status: 0,
                            note: Some(note),
                            result: None,
                        })
                    }
                    Err(DecideError::Crm(e)) => Err(DeliveryError::Crm(e)),
                    Err(DecideError::Store(e)) => Err(DeliveryError::Store(e)),
                    Err(DecideError::Wait(why)) => Err(DeliveryError::Wait(why)),
                }
            }
            (CrmAction::Decide(_), None) => Err(DeliveryError::Dead(
                "no matrix configured in this process to decide the call".into(),
            )),
            _ => crm
                .send(&pending.action, pending.in_doubt)
                .await
                .map_err(DeliveryError::Crm),
        },
        Ok(Some(Hold::Skip(why))) => {
            info!(kind, why = %why, "settled without a request");
            Ok(Delivered {
                status: 0,
                note: Some(why),
                result: None,
            })
        }
        Ok(Some(Hold::Dead(why))) => Err(DeliveryError::Dead(why)),
        Err(e) => Err(DeliveryError::Store(e)),
    };
    let (attempt, settled) = settle(
        kind,
        result,
        &pending,
        started_at,
        clock.elapsed(),
        &options,
        spawn,
        sent_along,
    );
    // The writer records it (with others, in one transaction). Until then the action stays
    // claimed, so nobody sends it again; if the writer is gone, the lease runs out and the
    // action is delivered again, in doubt: the CRM adapter looks before it creates.
    hand_to_writer(
        &results,
        AttemptResult {
            action: pending,
            attempt,
            settled,
        },
    )
    .await;
}

/// Gives an attempt's result to the result writer (see `write_results`).
pub(crate) async fn hand_to_writer(results: &mpsc::Sender<AttemptResult>, result: AttemptResult) {
    let kind = result.action.action.kind();
    if results.send(result).await.is_err() {
        warn!(
            kind,
            "could not record the delivery result: the result writer stopped"
        );
    }
}

/// How an attempt ended, as the store records it: done, retried later (backoff, the
/// CRM's `Retry-After`), or parked as dead.
#[allow(clippy::too_many_arguments)]
pub(crate) fn settle(
    kind: &str,
    result: Result<Delivered, DeliveryError>,
    pending: &PendingAction,
    started_at: Timestamp,
    elapsed: Duration,
    options: &DeliveryOptions,
    spawn: Vec<CrmAction>,
    sent_along: Vec<Attempt>,
) -> (Attempt, Settled) {
    let attempt = |http_status: Option<u16>, error: Option<String>| Attempt {
        started_at,
        elapsed,
        http_status,
        error,
    };
    let age = Duration::from_micros((started_at.0 - pending.round_started_at.0).max(0) as u64);
    match result {
        Ok(delivered) => {
            if let Some(note) = &delivered.note {
                info!(kind, note = %note, "CRM accepted with a remark");
            }
            debug!(
                kind,
                status = delivered.status,
                ms = elapsed.as_millis() as u64,
                "delivered"
            );
            (
                attempt((delivered.status != 0).then_some(delivered.status), None),
                Settled::Done {
                    note: delivered.note,
                    result: delivered.result,
                    spawn,
                    sent_along,
                },
            )
        }
        Err(DeliveryError::Dead(why)) => {
            warn!(kind, why = %why, "action cannot be sent; parked as dead (see `callbridge outbox`)");
            (attempt(None, Some(why)), Settled::Dead)
        }
        Err(DeliveryError::Wait(why)) if age < options.give_up_after => {
            // Not a failure: looked at again soon (never later than WAIT_AT_MOST).
            let wait = retry_delay(options, pending.attempts, None).min(WAIT_AT_MOST);
            info!(kind, why = %why, retry_in = ?wait, "waiting");
            (
                attempt(None, Some(why)),
                Settled::Retry {
                    next_attempt_at: Timestamp(started_at.0 + wait.as_micros() as i64),
                },
            )
        }
        Err(error) if error.is_transient() && age < options.give_up_after => {
            let wait = retry_delay(options, pending.attempts, error.retry_after());
            warn!(kind, error = %error, attempt = pending.attempts + 1, retry_in = ?wait, "CRM delivery failed; will retry");
            (
                attempt(error.status(), Some(error.to_string())),
                Settled::Retry {
                    next_attempt_at: Timestamp(started_at.0 + wait.as_micros() as i64),
                },
            )
        }
        Err(error) if error.is_transient() => {
            let why = format!(
                "gave up after {} (give_up_after): {error}",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            );
            warn!(kind, error = %error, "CRM delivery still failing after give_up_after; parked as dead (see `callbridge outbox`)");
            (attempt(error.status(), Some(why)), Settled::Dead)
        }
        Err(error) => {
            warn!(kind, error = %error, "CRM refused the action; parked as dead (see `callbridge outbox`)");
            (
                attempt(error.status(), Some(error.to_string())),
                Settled::Dead,
            )
        }
    }
}

/// Writes delivery results as they come, in batches: one transaction for all that
/// arrived while the previous one was written. Ends when every sender is gone and the
/// last results are written.
async fn write_results(outbox: Outbox, mut results: mpsc::Receiver<AttemptResult>) {
    let store = &outbox.store;
    let mut batch = Vec::new();
    while let Some(first) = results.recv().await {
        batch.push(first);
        while batch.len() < RESULT_BATCH {
            match results.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match store.record_attempts(&batch).await {
                Ok(()) => {
                    // A decision's actions are due now, and a call's next action may be.
                    let urgent = batch.iter().any(|r| match &r.settled {
                        Settled::Done {
                            spawn, sent_along, ..
                        } => spawn
                            .iter()
                            .skip(sent_along.len())
                            .any(CrmAction::is_urgent),
                        _ => false,
                    }) || batch.iter().any(|r| {
                        // A call's next pop-up may wait behind this one.
                        r.action.action.is_urgent() && !matches!(r.settled, Settled::Retry { .. })
                    });
                    outbox.wake_for(urgent);
                    break;
                }
                Err(e) if delay < Duration::from_secs(5) => {
                    warn!(error = %e, results = batch.len(), retry_in = ?delay, "could not record delivery results; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    // Left claimed: redelivered in doubt when the leases run out.
                    error!(error = %e, results = batch.len(), "could not record delivery results; the actions will be delivered again, in doubt");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// The longest a decision waits before looking again at what it waits for.
const WAIT_AT_MOST: Duration = Duration::from_secs(5);

/// Most results written in one transaction.
const RESULT_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("{0}")]
    Crm(CrmError),
    #[error("{0}")]
    Dead(String),
    #[error("store: {0}")]
    Store(StoreError),
    /// Not now: something this action depends on is still on its way.
    #[error("{0}")]
    Wait(String),
}

impl DeliveryError {
    /// Whether trying again later can help: CRM trouble that passes, or a store that was
    /// briefly unavailable.
    fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Crm(e) => e.is_transient(),
            DeliveryError::Dead(_) => false,
            DeliveryError::Store(_) | DeliveryError::Wait(_) => true,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Crm(e) => e.status(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Crm(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Exponential backoff with jitter for the `attempts`-th retry, never shorter than the
/// CRM's own `Retry-After`.
fn retry_delay(
    options: &DeliveryOptions,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(options.min_backoff)
        .with_max_delay(options.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.min(64) as usize)
        .unwrap_or(options.max_backoff);
    backoff.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let o = DeliveryOptions::default();
        let net = CrmError::Transport("refused".into()).retry_after();
        let first = retry_delay(&o, 0, net);
        assert!(
            first >= o.min_backoff && first <= o.min_backoff * 2,
            "{first:?}"
        );
        let later = retry_delay(&o, 6, net);
        assert!(later >= o.min_backoff * 32, "{later:?}");
        assert!(retry_delay(&o, 100, net) <= o.max_backoff * 2);
        let limited = CrmError::Rejected {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(retry_delay(&o, 0, limited.retry_after()) >= Duration::from_secs(7));
    }
}
