//! The Event Socket connection (inbound mode): `auth`, `event plain` subscription,
//! keep-alive, FreeSWITCH's identity and channel list (read in `channels.rs`), one
//! session at a time; the TCP connect and the reconnect loop (forever, with exponential
//! backoff and jitter) are `pbx/connect.rs`'s, as for the AMI client. Events become
//! `PbxEvent`s here (through the pure `EslNormalizer`) and go to the call processor.
//!
//! Why `event plain` and not `json`: the plain body can be read in place (one look at
//! the first line drops the events we do not need, the rest are read header by header
//! without copying), where JSON would have to be parsed whole, 3-6 KB per event; and
//! every FreeSWITCH since 1.0 speaks it.

use std::collections::VecDeque;
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
use crate::pbx::connect::{connect_tcp, keep_connected, ConnectError, LogLines};
use crate::pbx::esl::codec::EslCodecError;
use crate::pbx::esl::normalize::{EslNormalizer, Skip, SUBSCRIPTION};
use crate::pbx::esl::{EslCodec, EslCommand, EslItem, EslMessage, PlainEvent};
use crate::pbx::event::PbxInput;
use crate::pbx::status::PbxStatus;
use crate::time::Timestamp;

pub use crate::pbx::esl::channels::{live_channels, Dialed};

#[derive(Debug, thiserror::Error)]
pub enum EslError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no auth/request from the event socket within {0:?}")]
    NoAuthRequest(Duration),
    #[error("not a FreeSWITCH event socket (first message {0:?})")]
    NotEsl(String),
    #[error("the event socket refused the connection: {0} (check apply-inbound-acl in event_socket.conf.xml)")]
    RudeRejection(String),
    #[error("password rejected by the event socket: {0} (check [[pbx]] secret against event_socket.conf.xml)")]
    AuthRejected(String),
    #[error("subscribing to events refused: {0}")]
    SubscribeRejected(String),
    #[error("no reply to {what} within {after:?}")]
    ReplyTimeout { what: &'static str, after: Duration },
    #[error(
        "no answer to a keep-alive within {0:?} and nothing else received: connection is dead"
    )]
    PingTimeout(Duration),
    #[error("FreeSWITCH closed the event socket ({0})")]
    Disconnected(String),
    #[error("the PBX closed the connection")]
    Closed,
    #[error(transparent)]
    Codec(#[from] EslCodecError),
}

/// Runs one FreeSWITCH connection until `shutdown`: connects, authenticates, subscribes,
/// forwards events, and on any failure waits (1 s doubling up to `reconnect_max_delay`,
/// with jitter) and tries again. The delay starts over after a session that got in.
pub async fn run(
    config: PbxConfig,
    events: mpsc::Sender<PbxInput>,
    status: PbxStatus,
    shutdown: CancellationToken,
) {
    let mut state = State {
        normalizer: EslNormalizer::with_variables(&config.campaign_variables.names()),
        core_uuid: None,
        out: Vec::new(),
    };
    let log = LogLines {
        lost: "event socket connection lost or failed; reconnecting",
        closed: "event socket closed for shutdown",
    };
    keep_connected(
        &config, &events, &status, &shutdown, &mut state, session, log,
    )
    .await
}

/// What outlives one connection: which legs belong to which calls, and which
/// FreeSWITCH process we spoke to (a new `core_uuid` means it restarted).
struct State {
    normalizer: EslNormalizer,
    core_uuid: Option<String>,
    out: Vec<crate::pbx::event::PbxEvent>,
}

/// The `api` commands sent and not yet answered; FreeSWITCH answers them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    CoreUuid,
    Channels,
    Ping,
}

type Conn = Framed<TcpStream, EslCodec>;

async fn next_message(framed: &mut Conn) -> Result<EslMessage, EslError> {
    loop {
        match framed.next().await {
            None => return Err(EslError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(EslItem::Message(m))) => return Ok(m),
            Some(Ok(EslItem::Skipped(what))) => {
                warn!(skipped = %what, "bytes from the event socket skipped")
            }
        }
    }
}

/// Waits for the `command/reply` to a command; events before it are handed on.
async fn reply(
    config: &PbxConfig,
    framed: &mut Conn,
    what: &'static str,
) -> Result<String, EslError> {
    let deadline = Instant::now() + config.connect_timeout;
    loop {
        let message = match tokio::time::timeout_at(deadline, next_message(framed)).await {
            Err(_) => {
                return Err(EslError::ReplyTimeout {
                    what,
                    after: config.connect_timeout,
                })
            }
            Ok(m) => m?,
        };
        match message.content_type() {
            Some("command/reply") => {
                return Ok(message.header("Reply-Text").unwrap_or_default().to_string())
            }
            Some("text/disconnect-notice") => return Err(EslError::Disconnected(notice(&message))),
            other => {
                debug!(pbx = %config.name, content_type = ?other, "message before the reply to {what}; ignored")
            }
        }
    }
}

fn notice(message: &EslMessage) -> String {
    let text = String::from_utf8_lossy(&message.body);
    let first = text.lines().next().unwrap_or("disconnect notice").trim();
    first.chars().take(120).collect()
}

async fn send(events: &mpsc::Sender<PbxInput>, input: PbxInput) -> Result<(), EslError> {
    // A closed channel means the processor is gone: we are shutting down.
    events.send(input).await.map_err(|_| EslError::Closed)
}

async fn session(
    config: &PbxConfig,
    events: &mpsc::Sender<PbxInput>,
    status: &PbxStatus,
    logged_in: &mut bool,
    state: &mut State,
) -> Result<Infallible, EslError> {
    let addr = format!("{}:{}", config.host, config.port);
    debug!(pbx = %config.name, %addr, "connecting to the event socket");
    let stream = connect_tcp(addr, config.connect_timeout).await?;
    let mut framed = Framed::new(stream, EslCodec::new());

    let first = match timeout(config.connect_timeout, next_message(&mut framed)).await {
        Err(_) => return Err(EslError::NoAuthRequest(config.connect_timeout)),
        Ok(m) => m?,
    };
    match first.content_type() {
        Some("auth/request") => {}
        Some("text/rude-rejection") => return Err(EslError::RudeRejection(notice(&first))),
        other => {
            return Err(EslError::NotEsl(
                other
                    .unwrap_or("(no Content-Type)")
                    .chars()
                    .take(80)
                    .collect(),
            ))
        }
    }
    // The secret goes only into this command, never into a message or a log line.
    framed
        .send(EslCommand(format!("auth {}", config.secret.expose())))
        .await?;
    let answer = reply(config, &mut framed, "auth").await?;
    if !answer.starts_with("+OK") {
        return Err(EslError::AuthRejected(answer));
    }
    framed
        .send(EslCommand(format!("event plain {SUBSCRIPTION}")))
        .await?;
    let answer = reply(config, &mut framed, "event plain").await?;
    if !answer.starts_with("+OK") {
        return Err(EslError::SubscribeRejected(answer));
    }
    *logged_in = true;
    status.connected(&config.name, "FreeSWITCH event socket");
    info!(pbx = %config.name, host = %config.host, port = config.port, "event socket connected and subscribed");

    // Which FreeSWITCH this is (restart detection), then which calls it has now.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    framed
        .send(EslCommand("api global_getvar core_uuid".into()))
        .await?;
    pending.push_back(Pending::CoreUuid);
    start_resync(
        &mut framed,
        events,
        &mut pending,
        &mut state.normalizer,
        true,
    )
    .await?;
    let mut next_resync = Instant::now() + config.resync_interval.min(FOLLOW_UP_RESYNC);

    // Keep-alive: an `api status` every ping_interval; when neither its answer nor
    // anything else arrives within ping_timeout, the connection is dead.
    let mut ping_sent: Option<Instant> = None;
    let mut last_rx = Instant::now();
    let mut next_ping = Instant::now() + config.ping_interval;
    loop {
        let wake_at = match ping_sent {
            Some(sent) => sent + config.ping_timeout,
            None => next_ping,
        };
        tokio::select! {
            message = next_message(&mut framed) => {
                let message = message?;
                last_rx = Instant::now();
                match message.content_type() {
                    Some("text/event-plain") => {
                        forward(config, &message, events, status, state).await?;
                    }
                    Some("api/response") | Some("command/reply") => {
                        match pending.pop_front() {
                            Some(Pending::Ping) => ping_sent = None,
                            Some(Pending::CoreUuid) => core_uuid(config, &message, state, events).await?,
                            Some(Pending::Channels) => channels(config, &message, state, events).await?,
                            None => debug!(pbx = %config.name, "reply to a command we did not send; ignored"),
                        }
                    }
                    Some("text/disconnect-notice") => return Err(EslError::Disconnected(notice(&message))),
                    other => debug!(pbx = %config.name, content_type = ?other, "message ignored"),
                }
            }
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = Instant::now() + config.resync_interval;
                if !pending.contains(&Pending::Channels) {
                    start_resync(&mut framed, events, &mut pending, &mut state.normalizer, false).await?;
                }
            }
            _ = tokio::time::sleep_until(wake_at) => {
                if let Some(sent) = ping_sent {
                    if last_rx <= sent {
                        return Err(EslError::PingTimeout(config.ping_timeout));
                    }
                    // Traffic flowed since: alive, even if the answer is late.
                    ping_sent = None;
                    next_ping = Instant::now() + config.ping_interval;
                    continue;
                }
                framed.send(EslCommand("api status".into())).await?;
                pending.push_back(Pending::Ping);
                ping_sent = Some(Instant::now());
                next_ping = Instant::now() + config.ping_interval;
            }
        }
    }
}

/// How soon after connecting the channel list is asked for a second time.
const FOLLOW_UP_RESYNC: Duration = Duration::from_secs(3);

/// Asks for the channel list; `after_gap`: the first round of a connection.
async fn start_resync(
    framed: &mut Conn,
    events: &mpsc::Sender<PbxInput>,
    pending: &mut VecDeque<Pending>,
    normalizer: &mut EslNormalizer,
    after_gap: bool,
) -> Result<(), EslError> {
    // Tell the tracker first: events after this point may be newer than the list.
    send(events, PbxInput::ResyncBegin { after_gap }).await?;
    normalizer.begin_resync();
    framed
        .send(EslCommand("api show channels as json".into()))
        .await?;
    pending.push_back(Pending::Channels);
    Ok(())
}

/// The answer to `global_getvar core_uuid`: a different one than at the previous
/// connection means FreeSWITCH restarted and every leg from before is gone.
async fn core_uuid(
    config: &PbxConfig,
    message: &EslMessage,
    state: &mut State,
    events: &mpsc::Sender<PbxInput>,
) -> Result<(), EslError> {
    let now = String::from_utf8_lossy(&message.body).trim().to_string();
    if now.is_empty() || now.starts_with("-ERR") {
        debug!(pbx = %config.name, "FreeSWITCH did not say its core uuid; restarts are noticed by the channel list only");
        return Ok(());
    }
    if state
        .core_uuid
        .as_ref()
        .is_some_and(|before| before != &now)
    {
        warn!(pbx = %config.name, "FreeSWITCH restarted since the last connection; calls from before are ended");
        state.normalizer.clear();
        send(
            events,
            PbxInput::Restarted {
                at: Timestamp::now(),
            },
        )
        .await?;
    }
    state.core_uuid = Some(now);
    Ok(())
}

/// The answer to `show channels as json`.
async fn channels(
    config: &PbxConfig,
    message: &EslMessage,
    state: &mut State,
    events: &mpsc::Sender<PbxInput>,
) -> Result<(), EslError> {
    let now = Timestamp::now();
    let Some((channels, dialers)) = live_channels(&message.body, now) else {
        warn!(pbx = %config.name, answer = %String::from_utf8_lossy(&message.body[..message.body.len().min(120)]),
              "FreeSWITCH gave no channel list: calls in progress cannot be resumed after a reconnect");
        return Ok(());
    };
    debug!(pbx = %config.name, channels = channels.len(), "channel list received");
    state.normalizer.learn_live(&channels, &dialers);
    send(events, PbxInput::Resync { at: now, channels }).await
}

/// Normalizes one event and hands what it gives to the call processor. Waiting on a
/// full channel is deliberate: it slows reading rather than dropping events.
async fn forward(
    config: &PbxConfig,
    message: &EslMessage,
    events: &mpsc::Sender<PbxInput>,
    status: &PbxStatus,
    state: &mut State,
) -> Result<(), EslError> {
    let event = PlainEvent::parse(&message.body);
    match state
        .normalizer
        .normalize(&event, Timestamp::now(), &mut state.out)
    {
        Ok(()) => {}
        Err(Skip::Malformed(header)) => {
            warn!(pbx = %config.name, event = ?event.name(), missing = header, "malformed FreeSWITCH event skipped");
        }
        Err(Skip::Ignored) => {}
    }
    for ev in state.out.drain(..) {
        status.count_event(&config.name);
        events
            .send(PbxInput::Event(ev))
            .await
            .map_err(|_| EslError::Closed)?;
    }
    Ok(())
}
