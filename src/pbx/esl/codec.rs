//! FreeSWITCH Event Socket framing (mod_event_socket), pure: bytes in, messages out.
//!
//! A message is a block of `Key: Value` lines ended by a blank line, then exactly
//! `Content-Length` body bytes when the block names one. Events arrive as messages of
//! type `text/event-plain` whose body is itself a block of headers (values URL-encoded)
//! and, for some events, an inner `Content-Length` body: [`parse_event_plain`] reads it.
//! Commands go the other way as one line ended by a blank line.
//!
//! Like the AMI codec: reads may split anywhere; a line without a colon is skipped and
//! the message kept; a header block or a body larger than the limit is skipped (the
//! next message is decoded) without holding it in memory.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Largest header block or body kept (larger ones are skipped).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// One ESL message: its headers in order, and its body (empty when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslMessage {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl EslMessage {
    /// The first header named `name` (header names are compared exactly, as ESL does).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `auth/request`, `command/reply`, `api/response`, `text/event-plain`,
    /// `text/disconnect-notice`, …
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EslItem {
    Message(EslMessage),
    /// A message too large to keep was skipped, or bytes that are no message.
    Skipped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EslCodecError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("command {0:?} would break the framing (it holds a blank line)")]
    BadCommand(String),
}

#[derive(Debug)]
enum State {
    /// Reading a header block.
    Headers,
    /// Headers read; `len` body bytes to come.
    Body {
        headers: Vec<(String, String)>,
        len: usize,
    },
    /// Discarding the rest of an oversized header block (until its blank line).
    SkipHeaders,
    /// Discarding `remaining` bytes of an oversized body.
    SkipBody { remaining: usize },
}

#[derive(Debug)]
pub struct EslCodec {
    max: usize,
    state: State,
}

impl Default for EslCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl EslCodec {
    pub fn new() -> Self {
        Self::with_max_message_bytes(DEFAULT_MAX_MESSAGE_BYTES)
    }

    pub fn with_max_message_bytes(max: usize) -> Self {
        EslCodec {
            max: max.max(64),
            state: State::Headers,
        }
    }
}

/// The end of a header block: the index just past its blank line, and the block's
/// length without it. Lines end in `\n` (FreeSWITCH) or `\r\n`.
fn block_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
        let line_end = start + nl;
        let line = &buf[start..line_end];
        if line.is_empty() || line == b"\r" {
            return Some((line_end + 1, start));
        }
        start = line_end + 1;
    }
    None
}

/// `Key: Value` lines (a line without a colon is skipped). `decode` turns the value
/// into text (URL-decoded for event headers).
fn parse_headers(block: &[u8], decode: fn(&str) -> String) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_string(), decode(value.trim())))
        })
        .collect()
}

fn as_is(v: &str) -> String {
    v.to_string()
}

fn url_decoded(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k == "Content-Length")
        .and_then(|(_, v)| v.trim().parse().ok())
}

impl Decoder for EslCodec {
    type Item = EslItem;
    type Error = EslCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<EslItem>, EslCodecError> {
        loop {
            match &mut self.state {
                State::SkipBody { remaining } => {
                    let n = (*remaining).min(buf.len());
                    buf.advance(n);
                    *remaining -= n;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Headers;
                }
                State::SkipHeaders => match block_end(buf) {
                    Some((end, _)) => {
                        buf.advance(end);
                        self.state = State::Headers;
                    }
                    None => {
                        // Keep the last bytes: they may begin the blank line (`\n\r\n`).
                        let keep = buf.len().min(2);
                        buf.advance(buf.len() - keep);
                        return Ok(None);
                    }
                },
                State::Body { len, .. } => {
                    if buf.len() < *len {
                        buf.reserve(*len - buf.len());
                        return Ok(None);
                    }
                    let len = *len;
                    if let State::Body { headers, .. } =
                        std::mem::replace(&mut self.state, State::Headers)
                    {
                        let body = buf.split_to(len).freeze();
                        return Ok(Some(EslItem::Message(EslMessage { headers, body })));
                    }
                }
                State::Headers => {
                    let Some((end, block_len)) = block_end(buf) else {
                        if buf.len() > self.max {
                            self.state = State::SkipHeaders;
                            return Ok(Some(EslItem::Skipped(format!(
                                "header block longer than {} bytes",
                                self.max
                            ))));
                        }
                        return Ok(None);
                    };
                    let block = buf.split_to(end);
                    if block_len == 0 {
                        // A stray blank line between messages.
                        continue;
                    }
                    let headers = parse_headers(&block[..block_len], as_is);
                    if headers.is_empty() {
                        return Ok(Some(EslItem::Skipped(format!(
                            "{} bytes that are no ESL headers",
                            block.len()
                        ))));
                    }
                    match content_length(&headers) {
                        None | Some(0) => {
                            return Ok(Some(EslItem::Message(EslMessage {
                                headers,
                                body: Bytes::new(),
                            })))
                        }
                        Some(len) if len > self.max => {
                            self.state = State::SkipBody { remaining: len };
                            return Ok(Some(EslItem::Skipped(format!(
                                "body of {len} bytes (limit {})",
                                self.max
                            ))));
                        }
                        Some(len) => self.state = State::Body { headers, len },
                    }
                }
            }
        }
    }
}

/// A command to the server (`auth …`, `event plain …`, `api …`): one line, then the
/// blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslCommand(pub String);

impl Encoder<EslCommand> for EslCodec {
    type Error = EslCodecError;

    fn encode(&mut self, cmd: EslCommand, dst: &mut BytesMut) -> Result<(), EslCodecError> {
        let text = cmd.0.trim_end_matches(['\n', '\r']);
        if text.contains("\n\n") || text.contains("\r\n\r\n") {
            return Err(EslCodecError::BadCommand(text.to_string()));
        }
        dst.extend_from_slice(text.as_bytes());
        dst.extend_from_slice(b"\n\n");
        Ok(())
    }
}

/// An event from a `text/event-plain` body: its headers (URL-decoded) and its own body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslEvent {
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl EslEvent {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `CHANNEL_CREATE`, `CUSTOM`, …
    pub fn name(&self) -> Option<&str> {
        self.get("Event-Name")
    }
}

/// Reads the event in a `text/event-plain` message's body.
pub fn parse_event_plain(body: &[u8]) -> Option<EslEvent> {
    let (headers_bytes, rest) = match block_end(body) {
        Some((end, len)) => (&body[..len], &body[end..]),
        None => (body, &body[body.len()..]),
    };
    let headers = parse_headers(headers_bytes, url_decoded);
    if headers.is_empty() {
        return None;
    }
    let body = content_length(&headers)
        .filter(|len| *len > 0)
        .map(|len| String::from_utf8_lossy(&rest[..len.min(rest.len())]).into_owned());
    Some(EslEvent { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut EslCodec, bytes: &[u8]) -> Vec<EslItem> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            out.push(item);
        }
        out
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/esl/{name}.esl",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn every_recording_decodes_into_its_messages() {
        for name in [
            "inbound_answered",
            "inbound_missed",
            "inbound_voicemail",
            "outbound_answered",
            "outbound_no_answer",
            "queue_agent_answers",
            "recording",
            "ring_group_second_answers",
        ] {
            let bytes = fixture(name);
            let items = decode_all(&mut EslCodec::new(), &bytes);
            let text = String::from_utf8_lossy(&bytes);
            let events = text.matches("Content-Type: text/event-plain").count();
            let decoded: Vec<&EslMessage> = items
                .iter()
                .filter_map(|i| match i {
                    EslItem::Message(m) => Some(m),
                    EslItem::Skipped(_) => None,
                })
                .collect();
            assert_eq!(decoded.len(), items.len(), "{name}: nothing skipped");
            assert_eq!(
                decoded[0].content_type(),
                Some("auth/request"),
                "{name}: greeting"
            );
            let plain: Vec<EslEvent> = decoded
                .iter()
                .filter(|m| m.content_type() == Some("text/event-plain"))
                .map(|m| parse_event_plain(&m.body).expect("event"))
                .collect();
            assert_eq!(plain.len(), events, "{name}: every event");
            assert!(plain.iter().all(|e| e.name().is_some()), "{name}");
        }
    }

    #[test]
    fn reads_split_anywhere_give_the_same_messages() {
        let bytes = fixture("inbound_missed");
        let bytes = &bytes[..bytes.len().min(20_000)];
        let whole = decode_all(&mut EslCodec::new(), bytes);
        for step in [1, 7, 64, 1000] {
            let mut codec = EslCodec::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Ok(Some(item)) = codec.decode(&mut buf) {
                    got.push(item);
                }
            }
            assert_eq!(got, whole, "reads of {step} bytes");
        }
    }

    #[test]
    fn event_values_are_url_decoded_and_plus_is_plus() {
        let bytes = fixture("inbound_answered");
        let items = decode_all(&mut EslCodec::new(), &bytes);
        let first = items
            .iter()
            .find_map(|i| match i {
                EslItem::Message(m) if m.content_type() == Some("text/event-plain") => {
                    parse_event_plain(&m.body)
                }
                _ => None,
            })
            .expect("an event");
        assert_eq!(first.name(), Some("CHANNEL_STATE"));
        assert_eq!(
            first.get("Channel-Name"),
            Some("sofia/external/+79161234567@127.0.0.1")
        );
        assert_eq!(first.get("Event-Date-Local"), Some("2026-11-25 18:37:08"));
        assert_eq!(first.get("FreeSWITCH-IPv6"), Some("fd00::2"));
    }

    #[test]
    fn an_event_may_carry_its_own_body() {
        let event =
            b"Event-Name: BACKGROUND_JOB\nJob-UUID: 7f4db\nContent-Length: 14\n\n+OK 1234-abcd\n";
        let e = parse_event_plain(event).expect("event");
        assert_eq!(e.get("Job-UUID"), Some("7f4db"));
        assert_eq!(e.body.as_deref(), Some("+OK 1234-abcd\n"));
    }

    #[test]
    fn oversized_body_and_garbage_are_skipped_and_the_next_message_decoded() {
        let mut codec = EslCodec::with_max_message_bytes(100);
        let mut bytes = b"Content-Type: text/event-plain\nContent-Length: 500\n\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 500));
        bytes.extend_from_slice(
            b"no colon here\n\nContent-Type: command/reply\nReply-Text: +OK\n\n",
        );
        let items = decode_all(&mut codec, &bytes);
        assert!(matches!(items[0], EslItem::Skipped(_)), "{items:?}");
        assert!(matches!(items[1], EslItem::Skipped(_)), "{items:?}");
        let EslItem::Message(reply) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(reply.header("Reply-Text"), Some("+OK"));
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn endless_header_block_is_skipped_without_holding_it() {
        let mut codec = EslCodec::with_max_message_bytes(100);
        let mut buf = BytesMut::new();
        let mut skipped = 0;
        for _ in 0..100 {
            buf.extend_from_slice(&[b'a'; 1000]);
            while let Ok(Some(item)) = codec.decode(&mut buf) {
                assert!(matches!(item, EslItem::Skipped(_)));
                skipped += 1;
            }
            assert!(buf.len() <= 1_001, "memory stays bounded: {}", buf.len());
        }
        buf.extend_from_slice(b"\n\nContent-Type: auth/request\n\n");
        let items = decode_all(&mut codec, &buf.split().freeze());
        assert_eq!(skipped, 1);
        let EslItem::Message(m) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(m.content_type(), Some("auth/request"));
    }

    #[test]
    fn disconnect_notice_keeps_its_body() {
        let bytes = b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
        let items = decode_all(&mut EslCodec::new(), bytes);
        let EslItem::Message(m) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(m.content_type(), Some("text/disconnect-notice"));
        assert!(m.body.starts_with(b"Disconnected, goodbye."));
    }

    proptest::proptest! {
        /// Random bytes, split anywhere, never panic the decoder, and it always makes
        /// progress (never asks for more while holding a whole message).
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
                                    step in 1usize..300) {
            let mut codec = EslCodec::with_max_message_bytes(512);
            let mut buf = BytesMut::new();
            for chunk in bytes.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Ok(Some(_)) = codec.decode(&mut buf) {}
            }
        }
    }

    #[test]
    fn commands_end_with_a_blank_line_and_cannot_smuggle_one() {
        let mut codec = EslCodec::new();
        let mut out = BytesMut::new();
        codec
            .encode(EslCommand("auth ClueCon".into()), &mut out)
            .expect("encode");
        assert_eq!(&out[..], b"auth ClueCon\n\n");
        assert!(codec
            .encode(EslCommand("auth x\n\napi shutdown".into()), &mut out)
            .is_err());
    }
}
