//! Talking to systemd (`Type=notify`): `READY=1` once the store is migrated, the HTTP
//! side listens and the PBX connections are started; `WATCHDOG=1` from the daemon's
//! supervising loop at half the unit's `WatchdogSec` (a loop that stops turning gets
//! the service restarted); `RELOADING=1` … `READY=1` around a reload; `STOPPING=1` at
//! shutdown. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        debug!(error = %e, "could not notify systemd");
    }
}

/// Start-up is done.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("following calls")]);
}

/// A reload (SIGHUP) has begun; `ready` ends it. systemd 253+ wants the monotonic time
/// with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Shutdown has begun.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The unit's watchdog, when it has one: `tick` resolves every half period.
pub struct Watchdog {
    interval: Option<tokio::time::Interval>,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (set by systemd for a unit with `WatchdogSec`).
    pub fn from_env() -> Self {
        let mut usec = 0;
        let interval = sd_notify::watchdog_enabled(false, &mut usec).then(|| {
            let half = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
            tokio::time::interval(half)
        });
        Watchdog { interval }
    }

    /// Waits for the next keep-alive moment (forever without a watchdog).
    pub async fn tick(&mut self) {
        match self.interval.as_mut() {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Tells systemd this process is alive.
    pub fn keep_alive(&self) {
        notify(&[NotifyState::Watchdog]);
    }
}
