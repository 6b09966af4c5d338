//! A FreeSWITCH event socket on 127.0.0.1 (mod_event_socket, inbound mode): sends
//! `auth/request`, checks `auth`, acknowledges `event plain …`, answers the `api`
//! commands callbridge sends (`status`, `global_getvar core_uuid`, `show channels as
//! json`, from the channels its recordings created), says goodbye to `exit`, and plays
//! recorded ESL byte streams (tests/fixtures/esl) to every subscribed client with their
//! original read splits and pace (optionally sped up). A wrong password gets what
//! FreeSWITCH sends: `-ERR invalid`, the disconnect notice, and the socket closed.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::pbx::esl::{EslCodec, EslItem, PlainEvent};
use crate::tools::sim::lock;
use crate::tools::sim::pbx::{
    track_channel, ChannelChange, ChannelList, Connection, PbxSim, Peer, Protocol,
};
use crate::tools::sim::transcript::{decode_each, find, Transcript, TranscriptError};

/// What FreeSWITCH sends before closing a socket.
pub const DISCONNECT_NOTICE: &str = "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

#[derive(Debug, Clone)]
pub struct EslSimOptions {
    pub password: String,
}

impl Default for EslSimOptions {
    fn default() -> Self {
        EslSimOptions {
            password: "ClueCon".into(),
        }
    }
}

/// Cuts a recording (`*.esl` + `*.timing`) down to the part a fresh client receives
/// after its own subscription: drops `auth/request`, the two recorded replies, and the
/// closing `+OK bye` and disconnect notice.
pub fn transcript_from_recording(esl: &[u8], timing: &str) -> Result<Transcript, TranscriptError> {
    let marker = b"Reply-Text: +OK event listener enabled";
    let at = find(esl, marker, 0).ok_or(TranscriptError::NoLoginAnswer)?;
    let start = find(esl, b"\n\n", at).ok_or(TranscriptError::NoLoginAnswer)? + 2;
    let end = find(
        esl,
        b"Content-Type: command/reply\nReply-Text: +OK bye",
        start,
    )
    .or_else(|| find(esl, b"Content-Type: text/disconnect-notice", start))
    .unwrap_or(esl.len());
    Transcript::from_timing(esl, timing, start, end)
}

/// The same calls with every event header value passed through `f(name, value)`,
/// re-encoded event by event (URL-encoding and `Content-Length`s made anew).
pub fn map_event_values(transcript: &Transcript, f: impl Fn(&str, &str) -> String) -> Transcript {
    transcript.map_items(EslCodec::new(), |item, out| {
        let EslItem::Message(message) = item else {
            return;
        };
        if message.content_type() != Some("text/event-plain") {
            for (k, v) in &message.headers {
                out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
            }
            out.extend_from_slice(b"\n");
            out.extend_from_slice(&message.body);
            return;
        }
        let event = PlainEvent::parse(&message.body);
        let mut body = String::new();
        for (k, v) in event.headers() {
            if k == "Content-Length" {
                continue;
            }
            body.push_str(&k);
            body.push_str(": ");
            body.push_str(&url_encode(&f(&k, &v)));
            body.push('\n');
        }
        match event.body() {
            Some(inner) => {
                body.push_str(&format!("Content-Length: {}\n\n{inner}", inner.len()));
            }
            None => body.push('\n'),
        }
        out.extend_from_slice(
            format!(
                "Content-Length: {}\nContent-Type: text/event-plain\n\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body.as_bytes());
    })
}

/// The same calls with every uuid made unique for `replica` (load tests, benchmarks).
pub fn replica(transcript: &Transcript, replica: u32) -> Transcript {
    map_event_values(transcript, |key, value| {
        if value.is_empty() {
            return String::new();
        }
        let is_uuid = |v: &str| v.len() == 36 && v.bytes().filter(|b| *b == b'-').count() == 4;
        if is_uuid(value) && !key.starts_with("Core-UUID") {
            return format!("{value}-{replica}");
        }
        value.to_string()
    })
}

/// FreeSWITCH's `switch_url_encode`: control bytes, non-ASCII and
/// `SWITCH_URL_UNSAFE` (`\r\n "#%&+:;<=>?@[\]^`{|}`) as `%XX`; `/`, `.`, `-` and the
/// rest as they are (`sofia/external/%2B7916…%40127.0.0.1`).
fn url_encode(value: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'+')
        .add(b':')
        .add(b';')
        .add(b'<')
        .add(b'=')
        .add(b'>')
        .add(b'?')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    percent_encoding::utf8_percent_encode(value, UNSAFE).to_string()
}

/// A channel the sim's recordings created and have not destroyed: a row of
/// `show channels as json`.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    uuid: String,
    direction: String,
    created_epoch: String,
    name: String,
    state: String,
    cid_num: String,
    dest: String,
    context: String,
    application: String,
    application_data: String,
    callstate: String,
    call_uuid: String,
}

/// The channels the simulated FreeSWITCH has now: the rows of `show channels as json`.
#[derive(Default)]
pub struct Channels {
    decoder: EslCodec,
    buf: BytesMut,
    rows: Vec<Row>,
}

impl ChannelList for Channels {
    fn count(&self) -> usize {
        self.rows.len()
    }

    fn observe(&mut self, bytes: &[u8]) {
        let Channels { decoder, buf, rows } = self;
        decode_each(decoder, buf, bytes, |item| {
            let EslItem::Message(m) = item else { return };
            if m.content_type() != Some("text/event-plain") {
                return;
            }
            let ev = PlainEvent::parse(&m.body);
            let (Some(name), Some(uuid)) = (ev.name(), ev.get("Unique-ID")) else {
                return;
            };
            let uuid = uuid.into_owned();
            let get = |k: &str| ev.get(k).map(|v| v.into_owned()).unwrap_or_default();
            let change = match name {
                "CHANNEL_DESTROY" => ChannelChange::Ended,
                "CHANNEL_CREATE" => ChannelChange::Created(|| Row {
                    uuid: uuid.clone(),
                    direction: get("Call-Direction"),
                    created_epoch: get("Caller-Channel-Created-Time")
                        .parse::<i64>()
                        .map(|us| (us / 1_000_000).to_string())
                        .unwrap_or_default(),
                    name: get("Channel-Name"),
                    state: get("Channel-State"),
                    cid_num: get("Caller-Caller-ID-Number"),
                    dest: get("Caller-Destination-Number"),
                    context: get("Caller-Context"),
                    application: String::new(),
                    application_data: String::new(),
                    callstate: get("Channel-Call-State"),
                    call_uuid: get("Channel-Call-UUID"),
                }),
                _ => ChannelChange::Changed,
            };
            let Some(row) = track_channel(rows, &uuid, |r| &r.uuid, change) else {
                return;
            };
            if let Some(s) = ev.get("Channel-Call-State") {
                row.callstate = s.into_owned();
            }
            if let Some(s) = ev.get("Channel-State") {
                row.state = s.into_owned();
            }
            if let Some(s) = ev.get("Channel-Call-UUID") {
                // While a dialed leg is joined its Call-UUID names the A-leg; keep that
                // rather than the flip back at the end.
                if s.as_ref() != uuid || row.call_uuid.is_empty() {
                    row.call_uuid = s.into_owned();
                }
            }
            if name == "CHANNEL_EXECUTE" {
                row.application = get("Application");
                row.application_data = get("Application-Data");
            }
        });
    }
}

impl Channels {
    /// The answer to `show channels as json`.
    fn json(&self) -> String {
        if self.rows.is_empty() {
            return "{\"row_count\":0}".into();
        }
        serde_json::json!({ "row_count": self.rows.len(), "rows": self.rows }).to_string()
    }
}

/// The simulated FreeSWITCH's own state.
pub struct FreeSwitch {
    options: EslSimOptions,
    core_uuid: String,
    commands: Mutex<Vec<String>>,
}

impl Protocol for FreeSwitch {
    type Options = EslSimOptions;
    type Channels = Channels;
    const NAME: &'static str = "ESL";

    fn new(options: EslSimOptions) -> FreeSwitch {
        FreeSwitch {
            options,
            core_uuid: format!(
                "c0e1b2a3-0000-4000-8000-{:012x}",
                crate::time::Timestamp::now().0 & 0xffff_ffff_ffff
            ),
            commands: Mutex::new(Vec::new()),
        }
    }

    async fn serve(stream: TcpStream, peer: Arc<Peer<FreeSwitch>>) {
        let Connection {
            mut read,
            tx,
            close,
            writer,
        } = peer.connect(stream, b"Content-Type: auth/request\n\n");
        let freeswitch = &peer.protocol;
        let mut buf = BytesMut::new();
        let mut authed = false;
        'conn: loop {
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                n = read.read(&mut chunk) => n,
                _ = close.cancelled() => break,
            };
            let Ok(n) = n else { break };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = find(&buf, b"\n\n", 0) {
                let command = String::from_utf8_lossy(&buf[..end]).trim().to_string();
                let _ = buf.split_to(end + 2);
                lock(&freeswitch.commands).push(command.clone());
                let (verb, rest) = command.split_once(' ').unwrap_or((command.as_str(), ""));
                if !authed && verb != "auth" {
                    let _ = tx.send(reply("-ERR command not found"));
                    continue;
                }
                match verb {
                    "auth" => {
                        if rest == freeswitch.options.password {
                            authed = true;
                            let _ = tx.send(reply("+OK accepted"));
                        } else {
                            let _ = tx.send(reply("-ERR invalid"));
                            let _ = tx.send(Bytes::from_static(DISCONNECT_NOTICE.as_bytes()));
                            break 'conn;
                        }
                    }
                    "event" => {
                        let format = rest.split_whitespace().next().unwrap_or("plain");
                        let _ = tx.send(reply(&format!("+OK event listener enabled {format}")));
                        peer.subscribers.add(tx.clone(), close.clone());
                    }
                    "filter" => {
                        let _ = tx.send(reply(&format!("+OK filter added. [{rest}]")));
                    }
                    "api" => {
                        let body = match rest.trim() {
                            "status" => "UP 0 years, 0 days, 0 hours, 1 minute, 2 seconds, 3 milliseconds, 4 microseconds\nFreeSWITCH (Version 1.10.12-release 64bit) is ready\n".to_string(),
                            "global_getvar core_uuid" => freeswitch.core_uuid.clone(),
                            "show channels as json" => lock(&peer.channels).json(),
                            other => format!("-ERR {} Command not found!\n", other.split_whitespace().next().unwrap_or("")),
                        };
                        let _ = tx.send(api_response(&body));
                    }
                    "exit" => {
                        let _ = tx.send(reply("+OK bye"));
                        let _ = tx.send(Bytes::from_static(DISCONNECT_NOTICE.as_bytes()));
                        break 'conn;
                    }
                    _ => {
                        let _ = tx.send(reply("-ERR command not found"));
                    }
                }
            }
        }
        drop(tx);
        close.cancel();
        let _ = writer.await;
    }
}

/// Handle to a running event socket; clones share it.
pub type EslSim = PbxSim<FreeSwitch>;

impl EslSim {
    /// Every command received, as sent (the `auth` line included: tests check it).
    pub fn commands(&self) -> Vec<String> {
        lock(&self.protocol().commands).clone()
    }
}

fn reply(text: &str) -> Bytes {
    Bytes::from(format!(
        "Content-Type: command/reply\nReply-Text: {text}\n\n"
    ))
}

fn api_response(body: &str) -> Bytes {
    Bytes::from(format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
        body.len()
    ))
}

#[cfg(test)]
mod tests {
    use tokio_util::codec::Decoder;

    use super::*;

    fn events(t: &Transcript) -> Vec<Vec<(String, String)>> {
        let mut codec = EslCodec::new();
        let mut buf = BytesMut::from(&t.bytes()[..]);
        let mut out = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            if let EslItem::Message(m) = item {
                let ev = PlainEvent::parse(&m.body);
                out.push(
                    ev.headers()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                );
            }
        }
        out
    }

    fn recording(name: &str) -> Transcript {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/esl");
        let esl = std::fs::read(format!("{dir}/{name}.esl")).expect("fixture");
        let timing = std::fs::read_to_string(format!("{dir}/{name}.timing")).expect("timing");
        transcript_from_recording(&esl, &timing).expect("transcript")
    }

    #[test]
    fn a_transcript_starts_after_the_subscription_and_ends_before_the_goodbye() {
        let t = recording("inbound_answered");
        let bytes = t.bytes();
        assert!(bytes.starts_with(b"Content-Length: "), "first an event");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("auth/request") && !text.contains("+OK bye"));
        assert!(!text.contains("disconnect-notice"));
        assert_eq!(events(&t).len(), 53);
    }

    #[test]
    fn re_encoding_keeps_every_header_and_value() {
        for name in [
            "inbound_answered",
            "queue_agent_answers",
            "inbound_voicemail",
        ] {
            let t = recording(name);
            let same = map_event_values(&t, |_, v| v.to_string());
            assert_eq!(events(&t), events(&same), "{name}");
        }
    }

    #[test]
    fn a_replica_has_its_own_uuids_and_the_same_calls() {
        let t = recording("inbound_answered");
        let r = replica(&t, 7);
        let (a, b) = (events(&t), events(&r));
        assert_eq!(a.len(), b.len());
        let uuid = |e: &Vec<(String, String)>| {
            e.iter()
                .find(|(k, _)| k == "Unique-ID")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            uuid(&b[0]),
            uuid(&a[0]).map(|u| format!("{u}-7")),
            "ids get the replica's suffix"
        );
        let name = |e: &Vec<(String, String)>| {
            e.iter()
                .find(|(k, _)| k == "Channel-Name")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(name(&a[0]), name(&b[0]), "names stay");
    }
}
