//! The life of a PBX connection, the same for every protocol: a TCP connect within
//! `connect_timeout`, then one session after another until shutdown. A session that
//! fails is logged once, its error goes to the status table, and the next attempt waits
//! (1 s doubling up to `reconnect_max_delay`, with jitter, see `reconnect.rs`); the delay
//! starts over after a session that got in. The protocol (AMI, ESL) brings its session.

use std::convert::Infallible;
use std::fmt::Display;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::PbxConfig;
use crate::pbx::event::PbxInput;
use crate::pbx::reconnect::reconnect_backoff;
use crate::pbx::status::PbxStatus;

/// Why the TCP connection to the PBX could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("connecting to {addr}: {source}")]
    Failed {
        addr: String,
        source: std::io::Error,
    },
}

/// Connects to `addr` (`host:port`) within `after`, with Nagle off: commands are small
/// and go out at once.
pub async fn connect_tcp(addr: String, after: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match timeout(after, TcpStream::connect(&addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, after }),
        Ok(Err(source)) => return Err(ConnectError::Failed { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// What the log says of one protocol's connection.
#[derive(Debug, Clone, Copy)]
pub struct LogLines {
    /// A session failed, e.g. `AMI connection lost or failed; reconnecting`.
    pub lost: &'static str,
    /// The client stops for shutdown.
    pub closed: &'static str,
}

/// Runs `session` (one connection, from TCP connect to its end: it returns only on
/// failure, and sets its `logged_in` flag once the PBX let us in) again and again until
/// `shutdown`. On each failure marks the link disconnected, logs the error once with the
/// attempt number and the delay, waits, and tries again. `state` is what outlives a
/// session (which PBX process we spoke to, the legs of live calls).
pub async fn keep_connected<S, E: Display>(
    config: &PbxConfig,
    events: &mpsc::Sender<PbxInput>,
    status: &PbxStatus,
    shutdown: &CancellationToken,
    state: &mut S,
    mut session: impl AsyncFnMut(
        &PbxConfig,
        &mpsc::Sender<PbxInput>,
        &PbxStatus,
        &mut bool,
        &mut S,
    ) -> Result<Infallible, E>,
    log: LogLines,
) {
    let name = &config.name;
    let mut backoff = reconnect_backoff(config);
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let mut logged_in = false;
        let result = tokio::select! {
            r = session(config, events, status, &mut logged_in, state) => r,
            _ = shutdown.cancelled() => return info!(pbx = %name, "{}", log.closed),
        };
        let Err(error) = result;
        status.disconnected(name, &error.to_string());
        if logged_in {
            backoff = reconnect_backoff(config);
            attempt = 1;
        }
        let delay = backoff.next().unwrap_or(config.reconnect_max_delay);
        warn!(pbx = %name, host = %config.host, port = config.port, attempt, retry_in = ?delay, error = %error,
              "{}", log.lost);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
