//! The outbox: every CRM action is stored before it is attempted and marked done only
//! after the CRM confirmed it. A delivery worker sends due actions, one call's actions
//! in order, different calls concurrently (bounded), and retries transient failures with
//! exponential backoff and jitter (honouring `Retry-After`); actions the CRM refuses for
//! good are parked as `dead` with the CRM's message.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::actions::CrmAction;
use crate::call::CallUpdate;
use crate::crm::{CrmError, RetailCrm};
use crate::store::{Attempt, PendingAction, Store, StoreError};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Calls delivered at the same time.
    pub concurrency: usize,
    /// On shutdown, how long requests already sent may take to finish.
    pub grace: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            concurrency: 16,
            grace: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Cheap to clone: the store and a wake-up bell for the worker.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Outbox {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a batch of call updates, their actions and live-call snapshots (one
    /// transaction), then wakes the worker.
    pub async fn commit(&self, items: &[crate::store::Commit]) -> Result<Vec<i64>, StoreError> {
        let ids = self.store.commit(items).await?;
        if !ids.is_empty() {
            self.wake.notify_one();
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
            self.wake.notify_one();
        }
        Ok(ids)
    }

    /// Delivers until `shutdown`, then lets in-flight requests finish for up to
    /// `options.grace`; whatever is still unconfirmed stays pending for the next start.
    pub async fn run(self, crm: RetailCrm, options: DeliveryOptions, shutdown: CancellationToken) {
        let mut in_flight: JoinSet<i64> = JoinSet::new();
        let mut in_flight_ids: HashSet<i64> = HashSet::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let free = options.concurrency.saturating_sub(in_flight_ids.len());
            if free > 0 {
                let busy: Vec<i64> = in_flight_ids.iter().copied().collect();
                match self
                    .store
                    .ready_actions(Timestamp::now(), free as i64, &busy)
                    .await
                {
                    Ok(ready) => {
                        for pending in ready {
                            in_flight_ids.insert(pending.id);
                            let (store, crm, opts) =
                                (self.store.clone(), crm.clone(), options.clone());
                            let span =
                                info_span!("call", call_id = %pending.call_id, action = pending.id);
                            in_flight.spawn(deliver(store, crm, opts, pending).instrument(span));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "outbox: reading due actions failed; trying again shortly")
                    }
                }
            }
            let next_due = match self.store.next_due().await {
                Ok(Some(t)) => Duration::from_micros((t.0 - Timestamp::now().0).max(0) as u64),
                _ => Duration::from_secs(1),
            };
            let nap = next_due.clamp(Duration::from_millis(5), Duration::from_secs(1));
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(id) = done { in_flight_ids.remove(&id); }
                    // A task that panicked leaves its id pending in the store; it is
                    // picked up again after a restart.
                    while let Some(done) = in_flight.try_join_next() {
                        if let Ok(id) = done { in_flight_ids.remove(&id); }
                    }
                }
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if !in_flight.is_empty() {
            info!(count = in_flight.len(), grace = ?options.grace, "outbox: waiting for requests in flight");
            let drained = tokio::time::timeout(options.grace, async {
                while in_flight.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                warn!(
                    count = in_flight.len(),
                    "outbox: requests still in flight after the grace period; they stay pending and are retried at the next start"
                );
                in_flight.abort_all();
            }
        }
    }
}

/// One attempt at one action, and its record in the store.
async fn deliver(
    store: Store,
    crm: RetailCrm,
    options: DeliveryOptions,
    pending: PendingAction,
) -> i64 {
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let result = crm.send(&pending.action).await;
    let elapsed = clock.elapsed();
    let kind = pending.action.kind();
    let written = match result {
        Ok(delivered) => {
            if let Some(note) = &delivered.note {
                warn!(kind, note = %note, "CRM accepted with a remark");
            }
            debug!(
                kind,
                status = delivered.status,
                ms = elapsed.as_millis() as u64,
                "delivered"
            );
            let attempt = Attempt {
                started_at,
                elapsed,
                http_status: Some(delivered.status),
                error: None,
            };
            store
                .mark_done(&pending, &attempt, delivered.note.as_deref())
                .await
        }
        Err(error) => {
            let attempt = Attempt {
                started_at,
                elapsed,
                http_status: error.status(),
                error: Some(error.to_string()),
            };
            if error.is_transient() {
                let wait = retry_delay(&options, pending.attempts, &error);
                warn!(kind, error = %error, attempt = pending.attempts + 1, retry_in = ?wait, "CRM delivery failed; will retry");
                let next = Timestamp(started_at.0 + wait.as_micros() as i64);
                store.mark_retry(&pending, &attempt, next).await
            } else {
                warn!(kind, error = %error, "CRM refused the action; parked as dead (see `callbridge outbox`)");
                store.mark_dead(&pending, &attempt).await
            }
        }
    };
    if let Err(e) = written {
        // The action stays pending in the store, so it is tried again: at worst the CRM
        // sees it twice, which its externalId deduplication absorbs.
        warn!(kind, error = %e, "could not record the delivery result");
    }
    pending.id
}

/// Exponential backoff with jitter for the `attempts`-th retry, never shorter than the
/// CRM's own `Retry-After`.
fn retry_delay(options: &DeliveryOptions, attempts: u32, error: &CrmError) -> Duration {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(options.min_backoff)
        .with_max_delay(options.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.min(64) as usize)
        .unwrap_or(options.max_backoff);
    backoff.max(error.retry_after().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let o = DeliveryOptions::default();
        let net = CrmError::Transport("refused".into());
        let first = retry_delay(&o, 0, &net);
        assert!(
            first >= o.min_backoff && first <= o.min_backoff * 2,
            "{first:?}"
        );
        let later = retry_delay(&o, 6, &net);
        assert!(later >= o.min_backoff * 32, "{later:?}");
        assert!(retry_delay(&o, 100, &net) <= o.max_backoff * 2);
        let limited = CrmError::Rejected {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(retry_delay(&o, 0, &limited) >= Duration::from_secs(7));
    }
}
