//! The clients a PBX simulator sends its events to: those that logged in (AMI) or
//! subscribed (event socket), each fed through its own writer task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::tools::sim::lock;

/// The clients events go to: each a sender to its connection's writer and the token that
/// closes that connection.
#[derive(Default)]
pub struct Subscribers {
    clients: Mutex<Vec<(mpsc::UnboundedSender<Bytes>, CancellationToken)>>,
    logins: AtomicU64,
}

impl Subscribers {
    /// A client logged in or subscribed: events go to it from now on.
    pub fn add(&self, tx: mpsc::UnboundedSender<Bytes>, close: CancellationToken) {
        lock(&self.clients).push((tx, close));
        self.logins.fetch_add(1, Ordering::SeqCst);
    }

    /// Logins (subscriptions) so far.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` logins happened.
    pub async fn wait_for_logins(&self, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.logins() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Clients whose connection is still open.
    pub fn connected(&self) -> usize {
        lock(&self.clients)
            .iter()
            .filter(|(c, _)| !c.is_closed())
            .count()
    }

    /// Sends bytes to every client; returns how many took them.
    pub fn broadcast(&self, bytes: Bytes) -> usize {
        let mut clients = lock(&self.clients);
        clients.retain(|(c, _)| c.send(bytes.clone()).is_ok());
        clients.len()
    }

    /// Closes every client's connection (a network cut, a PBX restart).
    pub fn drop_all(&self) {
        for (_, close) in lock(&self.clients).drain(..) {
            close.cancel();
        }
    }

    /// Forgets every client (the peer stops).
    pub fn clear(&self) {
        lock(&self.clients).clear();
    }
}
