//! How the outbox delivers: concurrency, backoff, give-up, leases, reports, and the
//! decider that runs matrix decisions.

use std::time::Duration;

use super::decider::Decider;

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
