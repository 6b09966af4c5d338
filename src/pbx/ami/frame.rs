//! One AMI message as a value: [`AmiFrame`], an event or response as decoded, or an
//! action built in code, and how it is written back as bytes. Headers keep wire order
//! and duplicates; look-ups compare keys as Asterisk does (ASCII case-insensitively).
//!
//! A decoded frame does not copy its text: the codec hands over the message's wire bytes
//! (split off the read buffer zero-copy) together with a table of header spans (`u32`
//! offsets). The frame is checked for UTF-8 once, so [`AmiFrame::get`] hands out `&str`
//! borrowed from it; only a frame with invalid UTF-8 is copied (lossily). Per frame: one
//! allocation (the span table), none per header.
//!
//! Header look-ups compare key lengths and first bytes before the keys themselves;
//! [`AmiFrame::get_many`] reads several keys in one pass.

use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::pbx::ami::scan::same_bytes;

/// Byte range of a frame's text: `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// For frames built in code. Saturating, so never a panic (text past 4 GiB cannot be
    /// addressed; no AMI frame comes near that).
    fn new(start: usize, end: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            start: clamp(start),
            len: clamp(end.saturating_sub(start)),
        }
    }

    /// For a decoded message: its offsets are below the size limit, which fits a u32.
    pub(super) fn wire(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            len: end.saturating_sub(start) as u32,
        }
    }

    pub(super) fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start.saturating_add(self.len as usize)
    }

    fn len(self) -> usize {
        self.len as usize
    }
}

/// One `Key: Value` header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) key: Span,
    pub(super) value: Span,
}

/// Where a frame's text lives; [`Span`]s index into it.
#[derive(Clone)]
enum Text {
    /// A decoded message: its wire bytes, shared zero-copy with the read buffer.
    Wire(wire::WireText),
    /// Frames built in code, and decoded messages that needed a lossy UTF-8 repair.
    Owned(String),
}

impl Default for Text {
    fn default() -> Self {
        Text::Owned(String::new())
    }
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Wire(wire) => wire.as_str(),
            Text::Owned(text) => text,
        }
    }
}

mod wire {
    use bytes::Bytes;

    /// Bytes known to be UTF-8. The field is private to this module: the only way to make
    /// one is [`WireText::new`], which checks.
    #[derive(Clone)]
    pub(super) struct WireText(Bytes);

    impl WireText {
        /// `bytes` as text if they are valid UTF-8 (one check for a whole message).
        pub(super) fn new(bytes: Bytes) -> Result<Self, Bytes> {
            if bytes.is_ascii() || std::str::from_utf8(&bytes).is_ok() {
                Ok(Self(bytes))
            } else {
                Err(bytes)
            }
        }

        pub(super) fn as_str(&self) -> &str {
            // SAFETY: `new` checked that these bytes are UTF-8, and the contents of a
            // `Bytes` never change (it has no API to mutate shared bytes in place).
            unsafe { std::str::from_utf8_unchecked(&self.0) }
        }
    }
}

/// One AMI message: an event, a response, or (from the encoder side) an action.
///
/// Headers keep wire order and duplicates (`ChanVariable`, `Output` repeat). The body holds
/// the raw output lines of a legacy `Response: Follows` and is empty for everything else.
///
/// A decoded frame shares the read buffer it was decoded from (cheap to create and to clone,
/// but it keeps that buffer's allocation alive while it lives). Equality compares headers
/// and body, not where the text is stored.
#[derive(Clone, Default)]
pub struct AmiFrame {
    text: Text,
    headers: Vec<Field>,
    body: Vec<Span>,
}

impl AmiFrame {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`AmiFrame::push`]: appends a header and returns the frame.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a header (never replaces: AMI keys may repeat).
    pub fn push(&mut self, key: &str, value: &str) {
        let mut text = self.take_owned_text();
        let key_start = text.len();
        text.push_str(key);
        let value_start = text.len();
        text.push_str(value);
        let value_end = text.len();
        self.text = Text::Owned(text);
        self.headers.push(Field {
            key: Span::new(key_start, value_start),
            value: Span::new(value_start, value_end),
        });
    }

    /// Appends a raw output line to the body (see [`AmiFrame::body`]).
    pub fn push_body(&mut self, line: &str) {
        let mut text = self.take_owned_text();
        let start = text.len();
        text.push_str(line);
        let end = text.len();
        self.text = Text::Owned(text);
        self.body.push(Span::new(start, end));
    }

    /// Headers in wire order, duplicates included.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(move |field| (self.str_at(field.key), self.str_at(field.value)))
    }

    /// Raw output lines of a legacy `Response: Follows` (without line endings); empty for
    /// everything else.
    pub fn body(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.body.iter().map(move |&span| self.str_at(span))
    }

    /// Value of the first header named `key` (ASCII case-insensitive, as Asterisk compares).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = KeyMatcher::new(key);
        let text = self.text.as_str();
        self.headers
            .iter()
            .find(|field| key.matches(text.as_bytes(), field.key))
            .map(|field| text.get(field.value.range()).unwrap_or_default())
    }

    /// The last header named `key`: the same as `get` for a key that appears once, and
    /// faster for keys that come at the end of an event (`Variable`/`Value` of VarSet,
    /// `Application`/`AppData` of Newexten come after the channel snapshot).
    pub fn get_last(&self, key: &str) -> Option<&str> {
        let key = KeyMatcher::new(key);
        let text = self.text.as_str();
        self.headers
            .iter()
            .rev()
            .find(|field| key.matches(text.as_bytes(), field.key))
            .map(|field| text.get(field.value.range()).unwrap_or_default())
    }

    /// Values of the first headers named `keys[0]`, `keys[1]`, … (each as [`AmiFrame::get`]
    /// would find it), read in one pass over the headers instead of one pass per key: for
    /// an event whose fields are all needed. At most 32 keys, each named once. A table of
    /// the wanted keys by length passes over most headers with one look-up (few keys share
    /// a length); the pass stops as soon as every key was found.
    pub fn get_many<const N: usize>(&self, keys: [&str; N]) -> [Option<&str>; N] {
        const { assert!(N <= 32) };
        // Lengths from `LONG` on share the last slot; the comparison sorts them out.
        const LONG: usize = 31;
        let mut by_len = [0u32; LONG + 1];
        for (i, key) in keys.iter().enumerate() {
            by_len[key.len().min(LONG)] |= 1 << i;
        }
        let all = u32::MAX >> (32 - N.max(1));
        let mut found = 0u32;
        let mut values = [None; N];
        let text = self.text.as_str();
        let bytes = text.as_bytes();
        for field in &self.headers {
            let mut candidates = by_len[field.key.len().min(LONG)] & !found;
            while candidates != 0 {
                let i = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if KeyMatcher::new(keys[i]).matches(bytes, field.key) {
                    values[i] = Some(text.get(field.value.range()).unwrap_or_default());
                    found |= 1 << i;
                    break;
                }
            }
            if found == all {
                break;
            }
        }
        values
    }

    /// Values of every header named `key`, in wire order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let key = KeyMatcher::new(key);
        let text = self.text.as_str();
        self.headers
            .iter()
            .filter(move |field| key.matches(text.as_bytes(), field.key))
            .map(move |field| text.get(field.value.range()).unwrap_or_default())
    }

    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// Exact number of bytes [`AmiFrame::encode_into`] writes for this frame.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|field| field.key.len() + 2 + field.value.len() + 2)
            .sum();
        let body: usize = self.body.iter().map(|line| line.len() + 2).sum();
        headers + body + 2
    }

    /// Writes the frame as AMI wire bytes: `Key: Value\r\n` per header, then each body
    /// line + `\r\n`, then `\r\n`. CR/LF inside keys, values or body lines are replaced by
    /// spaces: otherwise data from outside (a caller name from the CRM, say) could end the
    /// action early and inject another one. The replacement keeps
    /// [`AmiFrame::encoded_len`] exact.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        for (key, value) in self.headers() {
            put_single_line(dst, key);
            dst.extend_from_slice(b": ");
            put_single_line(dst, value);
            dst.extend_from_slice(b"\r\n");
        }
        for line in self.body() {
            put_single_line(dst, line);
            dst.extend_from_slice(b"\r\n");
        }
        dst.extend_from_slice(b"\r\n");
    }

    /// A decoded message: `wire` is its bytes (without the final empty line), `headers` and
    /// `body` index into it.
    pub(super) fn from_wire(wire: Bytes, headers: &[Field], body: &[Span]) -> Self {
        let wire = match wire::WireText::new(wire) {
            Ok(text) => {
                return Self {
                    text: Text::Wire(text),
                    headers: headers.to_vec(),
                    body: body.to_vec(),
                }
            }
            Err(bytes) => bytes,
        };
        // Rare: AMI is UTF-8 in practice, but a PBX may relay anything a caller's phone sent.
        // Each key, value and body line is repaired on its own.
        let piece =
            |span: Span| String::from_utf8_lossy(wire.get(span.range()).unwrap_or_default());
        let mut frame = Self {
            text: Text::Owned(String::with_capacity(wire.len() + 16)),
            headers: Vec::with_capacity(headers.len()),
            body: Vec::with_capacity(body.len()),
        };
        for field in headers {
            frame.push(&piece(field.key), &piece(field.value));
        }
        for &line in body {
            frame.push_body(&piece(line));
        }
        frame
    }

    /// The text of `span`. Spans always lie on character boundaries inside the text (a
    /// decoded frame's are next to ASCII separators or at its ends); "" if one did not.
    fn str_at(&self, span: Span) -> &str {
        self.text.as_str().get(span.range()).unwrap_or_default()
    }

    /// Takes the text out as an appendable `String` (copies a decoded frame's text once);
    /// the caller puts it back.
    fn take_owned_text(&mut self) -> String {
        match std::mem::take(&mut self.text) {
            Text::Owned(text) => text,
            Text::Wire(wire) => wire.as_str().to_owned(),
        }
    }
}

/// Compares header keys with one key, ASCII case-insensitively (as Asterisk does).
#[derive(Clone, Copy)]
struct KeyMatcher<'k> {
    key: &'k [u8],
    /// First byte with bit 0x20 set: equal for two bytes equal up to ASCII case, so a cheap
    /// first filter.
    folded_first: u8,
}

impl<'k> KeyMatcher<'k> {
    fn new(key: &'k str) -> Self {
        let key = key.as_bytes();
        Self {
            key,
            folded_first: key.first().map_or(0, |b| b | 0x20),
        }
    }

    /// Whether the key at `span` of `text` is this key.
    #[inline]
    fn matches(&self, text: &[u8], span: Span) -> bool {
        span.len() == self.key.len()
            && text.get(span.range()).is_some_and(|k| {
                k.first().map_or(0, |b| b | 0x20) == self.folded_first
                    && (same_bytes(k, self.key) || k.eq_ignore_ascii_case(self.key))
            })
    }
}

impl PartialEq for AmiFrame {
    fn eq(&self, other: &Self) -> bool {
        self.headers.len() == other.headers.len()
            && self.body.len() == other.body.len()
            && self.headers().eq(other.headers())
            && self.body().eq(other.body())
    }
}

impl Eq for AmiFrame {}

impl fmt::Debug for AmiFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'a>(&'a AmiFrame);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.headers()).finish()
            }
        }
        struct Body<'a>(&'a AmiFrame);
        impl fmt::Debug for Body<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.body()).finish()
            }
        }
        f.debug_struct("AmiFrame")
            .field("headers", &Headers(self))
            .field("body", &Body(self))
            .finish()
    }
}

/// Appends `text`, with CR and LF turned into spaces (see [`AmiFrame::encode_into`]).
fn put_single_line(dst: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    if memchr::memchr2(b'\r', b'\n', bytes).is_none() {
        dst.extend_from_slice(bytes);
        return;
    }
    tracing::warn!("line break inside an AMI action field replaced by a space");
    for &b in bytes {
        dst.extend_from_slice(&[if b == b'\r' || b == b'\n' { b' ' } else { b }]);
    }
}
