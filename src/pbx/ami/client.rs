//! The AMI connection: greeting, `Login`, `Ping` keep-alive, Asterisk's start time and
//! channel list, one session at a time; the TCP connect and the reconnect loop (forever,
//! with exponential backoff and jitter) are `pbx/connect.rs`'s. Frames become
//! `PbxEvent`s here (through the pure `normalize`) and go to the call processor; nothing
//! else about calls is known at this layer.

use std::convert::Infallible;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::PbxConfig;
use crate::pbx::ami::codec::AmiCodecError;
use crate::pbx::ami::normalize::{live_channel, normalize_with, Skip};
use crate::pbx::ami::{AmiCodec, AmiFrame, AmiItem};
use crate::pbx::connect::{connect_tcp, keep_connected, ConnectError, LogLines};
use crate::pbx::event::{LiveChannel, PbxInput};
use crate::pbx::status::PbxStatus;
use crate::time::Timestamp;

/// The event classes we ask for: calls and bridges (`call`), Newexten/VarSet
/// (`dialplan`, on Asterisk 16+), queues (`agent`), FullyBooted/Shutdown (`system`).
pub const EVENT_CLASSES: &str = "call,dialplan,agent,system";

#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no AMI greeting within {0:?}")]
    NoGreeting(Duration),
    #[error("not an Asterisk Manager Interface (greeting {0:?})")]
    NotAmi(String),
    #[error("login as {username:?} rejected: {message}")]
    LoginRejected { username: String, message: String },
    #[error("no answer to Login within {0:?}")]
    LoginTimeout(Duration),
    #[error("no answer to Ping within {0:?} and nothing else received: connection is dead")]
    PingTimeout(Duration),
    #[error("the PBX closed the connection")]
    Closed,
    #[error(transparent)]
    Codec(#[from] AmiCodecError),
}

/// Runs one PBX connection until `shutdown`: connects, logs in, forwards events, and on
/// any failure waits (1 s doubling up to `reconnect_max_delay`, with jitter) and tries
/// again. The delay starts over after a session that got logged in.
pub async fn run(
    config: PbxConfig,
    events: mpsc::Sender<PbxInput>,
    status: PbxStatus,
    shutdown: CancellationToken,
) {
    // When this Asterisk started, as it said at the previous connection: a different
    // answer means it restarted and every channel id from before is void.
    let mut startup: Option<String> = None;
    let log = LogLines {
        lost: "AMI connection lost or failed; reconnecting",
        closed: "AMI connection closed for shutdown",
    };
    keep_connected(
        &config,
        &events,
        &status,
        &shutdown,
        &mut startup,
        session,
        log,
    )
    .await
}

/// One connection, from TCP connect to its end. Returns only on failure (or never, when
/// cancelled from outside).
async fn session(
    config: &PbxConfig,
    events: &mpsc::Sender<PbxInput>,
    status: &PbxStatus,
    logged_in: &mut bool,
    startup: &mut Option<String>,
) -> Result<Infallible, AmiError> {
    let addr = format!("{}:{}", config.host, config.port);
    debug!(pbx = %config.name, %addr, "connecting to AMI");
    let stream = connect_tcp(addr, config.connect_timeout).await?;
    let mut framed = Framed::new(stream, AmiCodec::new());

    let greeting = match timeout(config.connect_timeout, framed.next()).await {
        Err(_) => return Err(AmiError::NoGreeting(config.connect_timeout)),
        Ok(None) => return Err(AmiError::Closed),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(Some(Ok(AmiItem::Greeting(g)))) => g,
        Ok(Some(Ok(AmiItem::Frame(_)))) => {
            return Err(AmiError::NotAmi("(a message instead of a greeting)".into()))
        }
    };
    if !greeting.starts_with("Asterisk Call Manager/") {
        return Err(AmiError::NotAmi(greeting.chars().take(80).collect()));
    }

    let login_id = format!("cb-login-{}", Timestamp::now().0);
    let login = AmiFrame::new()
        .with("Action", "Login")
        .with("ActionID", &login_id)
        .with("Username", &config.username)
        .with("Secret", config.secret.expose())
        .with("Events", EVENT_CLASSES);
    framed.send(&login).await?;

    // Wait for the Login answer. Events may arrive before or with it; they are kept.
    let deadline = Instant::now() + config.connect_timeout;
    loop {
        let item = match tokio::time::timeout_at(deadline, framed.next()).await {
            Err(_) => return Err(AmiError::LoginTimeout(config.connect_timeout)),
            Ok(None) => return Err(AmiError::Closed),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(item))) => item,
        };
        let AmiItem::Frame(frame) = item else {
            continue;
        };
        if let Some(answer) = frame.response() {
            // Match by ActionID; a peer that does not echo ids still answers Login first.
            if frame.action_id().is_some_and(|id| id != login_id) {
                debug!(pbx = %config.name, action_id = ?frame.action_id(), "answer to another action before Login's; taking it as Login's");
            }
            if answer.eq_ignore_ascii_case("Success") {
                break;
            }
            return Err(AmiError::LoginRejected {
                username: config.username.clone(),
                message: frame.get("Message").unwrap_or(answer).to_string(),
            });
        }
        forward(config, &frame, events, status).await?;
    }
    *logged_in = true;
    status.connected(&config.name, &greeting);
    info!(pbx = %config.name, host = %config.host, port = config.port, version = %greeting, "AMI connected and logged in");

    // Keep-alive: a Ping every ping_interval; if neither its answer nor anything else
    // arrives within ping_timeout, the connection is dead (a half-open TCP connection
    // gives no error by itself).
    let mut ping_seq: u64 = 0;
    let mut outstanding: Option<(String, Instant)> = None;
    let mut last_rx = Instant::now();
    let mut next_ping = Instant::now() + config.ping_interval;

    // Which Asterisk is this (restart detection), and which calls does it have now.
    let status_id = format!("cb-status-{}", Timestamp::now().0);
    framed
        .send(
            &AmiFrame::new()
                .with("Action", "CoreStatus")
                .with("ActionID", &status_id),
        )
        .await?;
    let mut resync = Resync::default();
    resync.start(&mut framed, events, true).await?;
    // A second round soon after the first: a call that had events while the first list
    // was being built was not judged by it (the list may be older than those events); if
    // its hang-up fell into the gap before this connection, only a later list ends it.
    let mut next_resync = Instant::now() + config.resync_interval.min(FOLLOW_UP_RESYNC);
    loop {
        let wake_at = match &outstanding {
            Some((_, sent)) => *sent + config.ping_timeout,
            None => next_ping,
        };
        tokio::select! {
            item = framed.next() => {
                let frame = match item {
                    None => return Err(AmiError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(AmiItem::Greeting(g))) => { debug!(pbx = %config.name, greeting = %g, "unexpected second greeting"); continue }
                    Some(Ok(AmiItem::Frame(f))) => f,
                };
                last_rx = Instant::now();
                let id = frame.action_id();
                if frame.response().is_some() {
                    match (&outstanding, id) {
                        (Some((ping, _)), Some(got)) if ping == got => outstanding = None,
                        (_, Some(got)) if got == status_id => {
                            core_status(config, &frame, startup, events).await?;
                        }
                        (_, Some(got)) if resync.is_ours(got) => {
                            if !frame.response().is_some_and(|r| r.eq_ignore_ascii_case("Success")) {
                                warn!(pbx = %config.name, message = ?frame.get("Message"),
                                      "Asterisk refused CoreShowChannels: calls in progress cannot be resumed after a reconnect; give the AMI user write = reporting (or system) in manager.conf");
                                resync.abandon();
                            }
                        }
                        _ => debug!(pbx = %config.name, action_id = ?id, response = ?frame.response(),
                                    message = ?frame.get("Message"), "answer to an action we did not send; ignored"),
                    }
                    continue;
                }
                if id.is_some_and(|got| resync.is_ours(got)) {
                    resync.item(&frame, events).await?;
                    continue;
                }
                forward(config, &frame, events, status).await?;
            }
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = Instant::now() + config.resync_interval;
                if !resync.in_progress() {
                    resync.start(&mut framed, events, false).await?;
                }
            }
            _ = tokio::time::sleep_until(wake_at) => {
                if let Some((_, sent)) = &outstanding {
                    if last_rx <= *sent {
                        return Err(AmiError::PingTimeout(config.ping_timeout));
                    }
                    // Traffic flowed since the Ping: the link is alive even if the
                    // answer is late; keep waiting for the next round.
                    outstanding = None;
                    next_ping = Instant::now() + config.ping_interval;
                    continue;
                }
                ping_seq += 1;
                let id = format!("cb-ping-{ping_seq}");
                framed.send(&AmiFrame::new().with("Action", "Ping").with("ActionID", &id)).await?;
                outstanding = Some((id, Instant::now()));
                next_ping = Instant::now() + config.ping_interval;
            }
        }
    }
}

/// How soon after connecting the channel list is asked for a second time.
const FOLLOW_UP_RESYNC: Duration = Duration::from_secs(3);

/// A `CoreShowChannels` round: the list of channels Asterisk has right now.
#[derive(Default)]
struct Resync {
    seq: u64,
    action_id: Option<String>,
    channels: Vec<LiveChannel>,
}

impl Resync {
    /// Asks for the list; `after_gap`: the first round of a connection.
    async fn start(
        &mut self,
        framed: &mut Framed<TcpStream, AmiCodec>,
        events: &mpsc::Sender<PbxInput>,
        after_gap: bool,
    ) -> Result<(), AmiError> {
        self.seq += 1;
        let id = format!("cb-resync-{}-{}", Timestamp::now().0, self.seq);
        // Tell the tracker first: events after this point may be newer than the list.
        send(events, PbxInput::ResyncBegin { after_gap }).await?;
        framed
            .send(
                &AmiFrame::new()
                    .with("Action", "CoreShowChannels")
                    .with("ActionID", &id),
            )
            .await?;
        self.action_id = Some(id);
        self.channels.clear();
        Ok(())
    }

    fn is_ours(&self, id: &str) -> bool {
        self.action_id.as_deref() == Some(id)
    }

    fn in_progress(&self) -> bool {
        self.action_id.is_some()
    }

    fn abandon(&mut self) {
        self.action_id = None;
        self.channels.clear();
    }

    async fn item(
        &mut self,
        frame: &AmiFrame,
        events: &mpsc::Sender<PbxInput>,
    ) -> Result<(), AmiError> {
        match frame.event() {
            Some("CoreShowChannel") => {
                if let Some(live) = live_channel(frame) {
                    self.channels.push(live);
                }
            }
            Some("CoreShowChannelsComplete") => {
                let channels = std::mem::take(&mut self.channels);
                self.action_id = None;
                debug!(channels = channels.len(), "channel list received");
                send(
                    events,
                    PbxInput::Resync {
                        at: Timestamp::now(),
                        channels,
                    },
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The answer to `CoreStatus`: when Asterisk started. A change since the previous
/// connection means it restarted.
async fn core_status(
    config: &PbxConfig,
    frame: &AmiFrame,
    startup: &mut Option<String>,
    events: &mpsc::Sender<PbxInput>,
) -> Result<(), AmiError> {
    let Some(date) = frame.get("CoreStartupDate") else {
        debug!(pbx = %config.name, message = ?frame.get("Message"), "CoreStatus gave no startup time");
        return Ok(());
    };
    let now = format!(
        "{date} {}",
        frame.get("CoreStartupTime").unwrap_or_default()
    );
    if startup.as_ref().is_some_and(|before| before != &now) {
        warn!(pbx = %config.name, started = %now, "Asterisk restarted since the last connection; calls from before are ended");
        send(
            events,
            PbxInput::Restarted {
                at: Timestamp::now(),
            },
        )
        .await?;
    }
    *startup = Some(now);
    Ok(())
}

async fn send(events: &mpsc::Sender<PbxInput>, input: PbxInput) -> Result<(), AmiError> {
    // A closed channel means the processor is gone: we are shutting down.
    events.send(input).await.map_err(|_| AmiError::Closed)
}

/// Normalizes one event frame and hands it to the call processor. Waiting on a full
/// channel is deliberate: it slows reading rather than dropping events.
async fn forward(
    config: &PbxConfig,
    frame: &AmiFrame,
    events: &mpsc::Sender<PbxInput>,
    status: &PbxStatus,
) -> Result<(), AmiError> {
    match normalize_with(frame, Timestamp::now(), &config.campaign_variables.names()) {
        Ok(event) => {
            status.count_event(&config.name);
            send(events, PbxInput::Event(event)).await?;
        }
        Err(Skip::Malformed(header)) => {
            warn!(pbx = %config.name, event = ?frame.event(), missing = header, "malformed AMI event skipped");
        }
        Err(Skip::Ignored | Skip::NotAnEvent) => {}
    }
    Ok(())
}
