//! The delivery worker: claims due actions from the store (pop-ups on a lane of their
//! own), runs each one's attempt, writes the results in batches, and on shutdown gives
//! requests in flight a grace period.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use super::attempt::deliver;
use super::express::ExpressLane;
use super::identity::{host_name, worker_is_gone};
use super::{DeliveryOptions, Outbox};
use crate::actions::CrmAction;
use crate::crm::CrmClient;
use crate::store::{AttemptResult, Lane, PendingAction, Settled};
use crate::time::Timestamp;

impl Outbox {
    /// Delivers until `shutdown`, then lets in-flight requests finish for up to
    /// `options.grace`; whatever is still unconfirmed stays pending for the next start
    /// (or for another process once its lease runs out).
    pub async fn run(self, crm: CrmClient, options: DeliveryOptions, shutdown: CancellationToken) {
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
        crm: &CrmClient,
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

/// Most results written in one transaction.
const RESULT_BATCH: usize = 256;
