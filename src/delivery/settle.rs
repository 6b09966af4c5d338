//! How an attempt ended, as the store records it: done, retried later with backoff (never
//! sooner than the CRM's `Retry-After`), or parked as dead with the reason.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::DeliveryOptions;
use crate::actions::CrmAction;
use crate::crm::{CrmError, Delivered};
use crate::store::{Attempt, AttemptResult, PendingAction, Settled, StoreError};
use crate::time::Timestamp;

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

/// The longest a decision waits before looking again at what it waits for.
const WAIT_AT_MOST: Duration = Duration::from_secs(5);

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
