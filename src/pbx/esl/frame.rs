//! One Event Socket message as a value (the ESL frame): [`EslMessage`], a block of
//! `Key: Value` lines and the body its `Content-Length` names; [`EslCommand`], what goes
//! the other way; and [`EslEvent`], an event read whole (headers URL-decoded, own body)
//! from a `text/event-plain` message's body by [`parse_event_plain`]. The header-block
//! reading here is shared with the codec. Pure: no sockets.

use bytes::Bytes;

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

/// A command to the server (`auth …`, `event plain …`, `api …`): one line, then the
/// blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslCommand(pub String);

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

/// The end of a header block: the index just past its blank line, and the block's
/// length without it. Lines end in `\n` (FreeSWITCH) or `\r\n`.
pub(super) fn block_end(buf: &[u8]) -> Option<(usize, usize)> {
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
pub(super) fn parse_headers(block: &[u8], decode: fn(&str) -> String) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_string(), decode(value.trim())))
        })
        .collect()
}

pub(super) fn as_is(v: &str) -> String {
    v.to_string()
}

fn url_decoded(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

pub(super) fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(k, _)| k == "Content-Length")
        .and_then(|(_, v)| v.trim().parse().ok())
}
