//! An Asterisk AMI peer on 127.0.0.1: greets, checks `Login`, answers `Ping` and
//! `Logoff`, and plays recorded AMI byte streams (tests/fixtures/asterisk) to every
//! logged-in client with their original read splits and pace (optionally sped up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

use crate::pbx::ami::{AmiCodec, AmiFrame, AmiItem};
use crate::tools::sim::lock;
use crate::tools::sim::pbx::{
    track_channel, ChannelChange, ChannelList, Connection, PbxSim, Peer, Protocol,
};
use crate::tools::sim::transcript::{decode_each, find, Transcript, TranscriptError};

pub const GREETING: &str = "Asterisk Call Manager/11.0.0\r\n";

#[derive(Debug, Clone)]
pub struct AmiSimOptions {
    pub username: String,
    pub secret: String,
    /// When false, Ping goes unanswered (a PBX that hangs).
    pub answer_pings: bool,
}

impl Default for AmiSimOptions {
    fn default() -> Self {
        AmiSimOptions {
            username: "callbridge".into(),
            secret: "demo-secret".into(),
            answer_pings: true,
        }
    }
}

impl Transcript {
    /// Cuts a recording (`*.ami` + `*.timing`) down to the part a fresh client should
    /// receive after its own Login: drops the greeting, the recorded Login answer, and a
    /// final `Response: Goodbye` (the answer to the recorder's Logoff).
    pub fn from_recording(ami: &[u8], timing: &str) -> Result<Transcript, TranscriptError> {
        let greeting_end = find(ami, b"\r\n", 0).ok_or(TranscriptError::NoGreeting)? + 2;
        let start = find(ami, b"\r\n\r\n", greeting_end).ok_or(TranscriptError::NoLoginAnswer)? + 4;
        let mut end = ami.len();
        if let Some(last) = rfind(&ami[..ami.len().saturating_sub(4)], b"\r\n\r\n") {
            if ami[last + 4..].starts_with(b"Response: Goodbye") {
                end = last + 4;
            }
        }
        Transcript::from_timing(ami, timing, start, end)
    }

    /// The same calls with every channel, call and bridge id made unique for `replica`,
    /// so that many copies of one recording can run at once (load tests, benchmarks).
    /// Ids get a `-{replica}` suffix, channel names an `r{replica}` one (before `;1`/`;2`
    /// of Local halves), so extensions read from names stay what they were.
    pub fn replica(&self, replica: u32) -> Transcript {
        self.map_values(|key, value| replica_value(key, value, replica))
    }

    /// The same calls with every header value `from` replaced by `to` (another caller's
    /// number, say), re-encoded frame by frame.
    pub fn with_value(&self, from: &str, to: &str) -> Transcript {
        self.map_values(|_, value| value.replace(from, to))
    }

    /// Every frame re-encoded with its header values passed through `f(key, value)`.
    fn map_values(&self, f: impl Fn(&str, &str) -> String) -> Transcript {
        let mut encoder = AmiCodec::without_greeting();
        self.map_items(AmiCodec::without_greeting(), |item, out| {
            let AmiItem::Frame(frame) = item else {
                return;
            };
            let mut copy = AmiFrame::new();
            for (key, value) in frame.headers() {
                copy.push(key, &f(key, value));
            }
            let _ = encoder.encode(&copy, out);
        })
    }
}

fn replica_value(key: &str, value: &str, replica: u32) -> String {
    if value.is_empty() {
        return String::new();
    }
    if key.ends_with("Uniqueid") || key.ends_with("Linkedid") || key.ends_with("BridgeId") {
        return format!("{value}-{replica}");
    }
    if key.ends_with("Channel") && value.contains('/') {
        return match value.rsplit_once(';') {
            Some((head, half)) => format!("{head}r{replica};{half}"),
            None => format!("{value}r{replica}"),
        };
    }
    value.to_string()
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The channels the simulated Asterisk has now, learned from the events it sends, so
/// it can answer `CoreShowChannels` like the real one.
pub struct Channels {
    decoder: AmiCodec,
    buf: BytesMut,
    live: Vec<SimChannel>,
}

struct SimChannel {
    /// The snapshot headers in Asterisk's order (Channel … Linkedid).
    snapshot: Vec<(String, String)>,
    uniqueid: String,
    bridge: String,
    application: String,
    application_data: String,
    created: std::time::Instant,
}

/// The channel snapshot fields, in the order Asterisk writes them.
const SNAPSHOT: &[&str] = &[
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

impl Default for Channels {
    fn default() -> Self {
        Channels {
            decoder: AmiCodec::without_greeting(),
            buf: BytesMut::new(),
            live: Vec::new(),
        }
    }
}

impl ChannelList for Channels {
    fn count(&self) -> usize {
        self.live.len()
    }

    fn observe(&mut self, bytes: &[u8]) {
        let Channels { decoder, buf, live } = self;
        decode_each(decoder, buf, bytes, |item| {
            let AmiItem::Frame(f) = item else { return };
            let (Some(event), Some(uid)) = (f.event(), f.get("Uniqueid")) else {
                return;
            };
            let uid = uid.to_string();
            let change = match event {
                "Hangup" => ChannelChange::Ended,
                "Newchannel" => ChannelChange::Created(|| SimChannel {
                    snapshot: Vec::new(),
                    uniqueid: uid.clone(),
                    bridge: String::new(),
                    application: String::new(),
                    application_data: String::new(),
                    created: std::time::Instant::now(),
                }),
                _ => ChannelChange::Changed,
            };
            let Some(chan) = track_channel(live, &uid, |c| &c.uniqueid, change) else {
                return;
            };
            if f.get("Channel").is_some() && f.get("ChannelState").is_some() {
                chan.snapshot = SNAPSHOT
                    .iter()
                    .map(|k| (k.to_string(), f.get(k).unwrap_or_default().to_string()))
                    .collect();
            }
            match event {
                "BridgeEnter" => {
                    chan.bridge = f.get("BridgeUniqueid").unwrap_or_default().to_string()
                }
                "BridgeLeave" => chan.bridge.clear(),
                "Newexten" => {
                    chan.application = f.get("Application").unwrap_or_default().to_string();
                    chan.application_data = f.get("AppData").unwrap_or_default().to_string();
                }
                _ => {}
            }
        });
    }
}

/// The simulated Asterisk's own state.
pub struct Asterisk {
    options: AmiSimOptions,
    /// `CoreStatus`' CoreStartupTime: a new value tells clients Asterisk restarted.
    startup: String,
    actions: Mutex<Vec<AmiFrame>>,
    answer_pings: AtomicBool,
}

impl Protocol for Asterisk {
    type Options = AmiSimOptions;
    type Channels = Channels;
    const NAME: &'static str = "AMI";

    fn new(options: AmiSimOptions) -> Asterisk {
        Asterisk {
            startup: chrono::Local::now().format("%H:%M:%S%.6f").to_string(),
            answer_pings: AtomicBool::new(options.answer_pings),
            options,
            actions: Mutex::new(Vec::new()),
        }
    }

    async fn serve(stream: TcpStream, peer: Arc<Peer<Asterisk>>) {
        let Connection {
            read,
            tx,
            close,
            writer,
        } = peer.connect(stream, GREETING.as_bytes());
        let asterisk = &peer.protocol;
        let mut frames = FramedRead::new(read, AmiCodec::without_greeting());
        let mut codec = AmiCodec::without_greeting();
        let reply = |frame: AmiFrame, codec: &mut AmiCodec| {
            let mut buf = BytesMut::new();
            let _ = codec.encode(&frame, &mut buf);
            let _ = tx.send(buf.freeze());
        };
        loop {
            let next = tokio::select! {
                n = frames.next() => n,
                _ = close.cancelled() => break,
            };
            let Some(Ok(AmiItem::Frame(action))) = next else {
                break;
            };
            lock(&asterisk.actions).push(action.clone());
            let id = action.action_id().unwrap_or_default().to_string();
            match action.get("Action").map(str::to_ascii_lowercase).as_deref() {
                Some("login") => {
                    let ok = action.get("Username") == Some(asterisk.options.username.as_str())
                        && action.get("Secret") == Some(asterisk.options.secret.as_str());
                    if ok {
                        reply(
                            AmiFrame::new()
                                .with("Response", "Success")
                                .with("ActionID", &id)
                                .with("Message", "Authentication accepted"),
                            &mut codec,
                        );
                        reply(
                            AmiFrame::new()
                                .with("Event", "FullyBooted")
                                .with("Privilege", "system,all")
                                .with("Uptime", "22")
                                .with("LastReload", "22")
                                .with("Status", "Fully Booted"),
                            &mut codec,
                        );
                        peer.subscribers.add(tx.clone(), close.clone());
                    } else {
                        // Asterisk waits a second before refusing, then closes.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        reply(
                            AmiFrame::new()
                                .with("Response", "Error")
                                .with("ActionID", &id)
                                .with("Message", "Authentication failed"),
                            &mut codec,
                        );
                        break;
                    }
                }
                Some("ping") => {
                    if asterisk.answer_pings.load(Ordering::SeqCst) {
                        reply(
                            AmiFrame::new()
                                .with("Response", "Success")
                                .with("ActionID", &id)
                                .with("Ping", "Pong")
                                .with(
                                    "Timestamp",
                                    &format!("{:.6}", crate::time::Timestamp::now().as_secs_f64()),
                                ),
                            &mut codec,
                        );
                    }
                }
                Some("corestatus") => {
                    reply(
                        AmiFrame::new()
                            .with("Response", "Success")
                            .with("ActionID", &id)
                            .with("CoreStartupDate", "2026-11-25")
                            .with("CoreStartupTime", &asterisk.startup)
                            .with("CoreReloadDate", "2026-11-25")
                            .with("CoreReloadTime", &asterisk.startup)
                            .with(
                                "CoreCurrentCalls",
                                &lock(&peer.channels).count().to_string(),
                            ),
                        &mut codec,
                    );
                }
                Some("coreshowchannels") => {
                    reply(
                        AmiFrame::new()
                            .with("Response", "Success")
                            .with("ActionID", &id)
                            .with("EventList", "start")
                            .with("Message", "Channels will follow"),
                        &mut codec,
                    );
                    let items: Vec<AmiFrame> = lock(&peer.channels)
                        .live
                        .iter()
                        .filter(|c| !c.snapshot.is_empty())
                        .map(|c| {
                            let mut f = AmiFrame::new()
                                .with("Event", "CoreShowChannel")
                                .with("ActionID", &id);
                            for (k, v) in &c.snapshot {
                                f.push(k, v);
                            }
                            let secs = c.created.elapsed().as_secs();
                            f.with("Application", &c.application)
                                .with("ApplicationData", &c.application_data)
                                .with(
                                    "Duration",
                                    &format!(
                                        "{:02}:{:02}:{:02}",
                                        secs / 3600,
                                        secs / 60 % 60,
                                        secs % 60
                                    ),
                                )
                                .with("BridgeId", &c.bridge)
                        })
                        .collect();
                    let n = items.len();
                    for item in items {
                        reply(item, &mut codec);
                    }
                    reply(
                        AmiFrame::new()
                            .with("Event", "CoreShowChannelsComplete")
                            .with("ActionID", &id)
                            .with("EventList", "Complete")
                            .with("ListItems", &n.to_string()),
                        &mut codec,
                    );
                }
                Some("logoff") => {
                    reply(
                        AmiFrame::new()
                            .with("Response", "Goodbye")
                            .with("ActionID", &id)
                            .with("Message", "Thanks for all the fish."),
                        &mut codec,
                    );
                    break;
                }
                other => {
                    reply(
                        AmiFrame::new()
                            .with("Response", "Error")
                            .with("ActionID", &id)
                            .with(
                                "Message",
                                &format!("Invalid/unknown command: {}", other.unwrap_or("")),
                            ),
                        &mut codec,
                    );
                }
            }
        }
        drop(tx);
        // Let queued answers (e.g. the Goodbye) go out before the socket closes.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
}

/// Handle to a running AMI peer; clones share it.
pub type AmiSim = PbxSim<Asterisk>;

impl AmiSim {
    /// Every action received from clients, in order.
    pub fn actions(&self) -> Vec<AmiFrame> {
        lock(&self.protocol().actions).clone()
    }

    pub fn set_answer_pings(&self, on: bool) {
        self.protocol().answer_pings.store(on, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_drops_login_answer_and_goodbye() {
        let t = Transcript::from_recording(
            include_bytes!("../../../tests/fixtures/asterisk/iax2/inbound_answered.ami"),
            include_str!("../../../tests/fixtures/asterisk/iax2/inbound_answered.timing"),
        )
        .expect("transcript");
        let all = t.bytes();
        assert!(all.starts_with(b"Event: FullyBooted\r\n"));
        assert!(all.ends_with(b"\r\n\r\n"));
        assert!(!all.windows(9).any(|w| w == b"Response:"));
        assert!(t.chunks.len() > 5, "keeps the recorded read splits");
    }

    #[test]
    fn replicas_are_distinct_calls_with_the_same_shape() {
        let t = Transcript::from_recording(
            include_bytes!("../../../tests/fixtures/asterisk/local/inbound_answered.ami"),
            include_str!("../../../tests/fixtures/asterisk/local/inbound_answered.timing"),
        )
        .expect("transcript");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"Asterisk Call Manager/11.0.0\r\n");
        bytes.extend_from_slice(&t.replica(1).bytes());
        bytes.extend_from_slice(&t.replica(2).bytes());
        let report = crate::tools::replay::replay_bytes(&bytes, "office", &[]);
        let ended: Vec<_> = report
            .updates
            .iter()
            .filter_map(|u| match &u.stage {
                crate::call::CallStage::Ended(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 2);
        assert_eq!(ended[0].header.call_id, "1795627169.0-1");
        assert_eq!(ended[1].header.call_id, "1795627169.0-2");
        for s in ended {
            assert_eq!(s.employee.as_deref(), Some("101"));
            assert_eq!(s.talk_secs, 6);
        }
    }

    #[test]
    fn bad_timing_is_named() {
        let err = Transcript::from_recording(
            b"Asterisk Call Manager/1\r\nResponse: Success\r\n\r\n",
            "x\ty",
        )
        .expect_err("bad");
        assert!(err.to_string().contains("timing line 1"));
    }
}
