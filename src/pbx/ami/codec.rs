//! Asterisk Manager Interface (AMI) wire format: a `tokio_util` codec turning the byte
//! stream from Asterisk into a greeting line plus `Key: Value` frames, and frames (actions)
//! back into bytes. Pure protocol layer: no sockets, no login logic, no event semantics.
//!
//! Wire shape (Asterisk `main/manager.c`; real captures in `tests/fixtures/asterisk`):
//! one greeting line (`Asterisk Call Manager/11.0.0\r\n`, no blank line after it), then
//! messages made of `Key: Value\r\n` lines ended by an empty line. Asterisk ≤ 13 answered
//! the `Command` action with `Response: Follows`, a few headers, raw output lines and a
//! `--END COMMAND--` marker; those raw lines end up in [`AmiFrame::body`].
//!
//! Hot path: a decoded frame does not copy its text. The lines of the message being
//! decoded stay at the front of the read buffer; when its empty line arrives they are split
//! off zero-copy (`BytesMut::split_to(..).freeze()`) and the frame keeps them together with
//! a table of header spans (`u32` offsets). The frame is checked for UTF-8 once, so
//! [`AmiFrame::get`] hands out `&str` borrowed from it; only a frame with invalid UTF-8 is
//! copied (lossily). Per frame: one allocation (the span table), none per header.
//!
//! Scanning: in the common case (ordinary `Key: Value` lines) each line end is found by a
//! vector search over the rest of the buffer (long haystack, so the search runs its vector
//! code even though lines are ~20 bytes), and the colon by a word-at-a-time search of the
//! line's first bytes; the header span is recorded in the same step. Unusual lines (no
//! `": "`, `Response: Follows` bodies, oversized messages, unfinished lines) go through the
//! general line-by-line path, which remembers how far it searched between reads.
//! Header look-ups compare key lengths and first bytes before the keys themselves;
//! [`AmiFrame::get_many`] reads several keys in one pass.

use std::fmt;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default upper bound for one message, see [`AmiCodec::with_max_frame_bytes`].
/// The largest message in the Asterisk 22 recordings (an `AttendedTransfer`) is ~2.6 KB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Hard ceiling for [`AmiCodec::with_max_frame_bytes`], so span offsets always fit a `u32`.
const MAX_FRAME_BYTES_CEILING: usize = u32::MAX as usize;

/// Marker ending the raw output of a legacy `Response: Follows` (Asterisk ≤ 13).
const END_COMMAND: &[u8] = b"--END COMMAND--";

/// While discarding an oversized message we keep this many bytes of an unfinished line,
/// enough to still recognise `--END COMMAND--` (plus a `\r`) when the line completes.
const KEPT_LINE_TAIL: usize = END_COMMAND.len() + 1;

/// Malformed lines are logged with at most this many bytes of their content.
const LOGGED_LINE_BYTES: usize = 120;

/// Byte range of a frame's text: `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
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
    fn wire(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            len: end.saturating_sub(start) as u32,
        }
    }

    fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start.saturating_add(self.len as usize)
    }

    fn len(self) -> usize {
        self.len as usize
    }
}

/// One `Key: Value` header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    key: Span,
    value: Span,
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

    /// Exact number of bytes [`AmiCodec`] writes for this frame.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|field| field.key.len() + 2 + field.value.len() + 2)
            .sum();
        let body: usize = self.body.iter().map(|line| line.len() + 2).sum();
        headers + body + 2
    }

    /// A decoded message: `wire` is its bytes (without the final empty line), `headers` and
    /// `body` index into it.
    fn from_wire(wire: Bytes, headers: &[Field], body: &[Span]) -> Self {
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

/// `a == b` for two slices of the same length, a word at a time: AMI keys nearly always
/// come in the case they are asked for, and comparing ~10 bytes this way is much cheaper
/// than a call to `memcmp` or the general `eq_ignore_ascii_case`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < WORD {
        // Two 4-byte halves (overlapping for 5 to 7 bytes), or byte by byte below 4.
        let half = |s: &[u8], at: usize| s.get(at..).and_then(<[u8]>::first_chunk::<4>).copied();
        return match n.checked_sub(4) {
            Some(last) => half(a, 0) == half(b, 0) && half(a, last) == half(b, last),
            None => a.iter().zip(b).all(|(x, y)| x == y),
        };
    }
    let mut at = 0;
    while at + WORD < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += WORD;
    }
    // The last word, overlapping the previous one when `n` is not a multiple of 8.
    word_at(a, n - WORD) == word_at(b, n - WORD)
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

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiItem {
    /// The first line the server sends, without its line ending, e.g.
    /// `Asterisk Call Manager/11.0.0`. Not validated here: the client checks the prefix.
    Greeting(String),
    Frame(AmiFrame),
}

#[derive(Debug, thiserror::Error)]
pub enum AmiCodecError {
    #[error("AMI socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the decoder is inside the current message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Ordinary `Key: Value` lines; an empty line ends the message.
    Headers,
    /// Right after `Response: Follows`: only `Privilege`/`ActionID` are headers here; any
    /// other line is the first line of raw command output.
    FollowsHeaders,
    /// Raw command output; empty lines belong to it, only `--END COMMAND--` ends it.
    FollowsBody,
    /// After `--END COMMAND--`: back to header rules until the empty line.
    FollowsTrailer,
}

/// What one complete line means for the message being decoded. Offsets are from the
/// start of the line.
enum Step {
    /// Empty line outside any message (padding between messages).
    Padding,
    /// Empty line ending the current message.
    End,
    /// `Key: Value`: the key is `..key_end`, the value `value_start..` (to the line end).
    Header { key_end: usize, value_start: usize },
    /// Command output: the first `len` bytes of the line.
    Body { len: usize },
    /// A line that is neither a header nor command output.
    Malformed,
    /// A line that only changes state (the `--END COMMAND--` marker on its own).
    Marker,
}

/// Finds line ends with `memchr`'s vector search. On x86-64 the AVX2 searcher is picked
/// once, when the codec is made, rather than by `memchr::memchr` on every call: lines are
/// ~20 bytes, so that per-call dispatch would cost as much as the search itself.
#[derive(Debug, Clone, Copy)]
struct LineEnds {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::One>,
}

impl LineEnds {
    fn new() -> Self {
        Self {
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::One::new(b'\n'),
        }
    }

    /// Index of the first `\n` in `hay`.
    #[inline]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = &self.avx2 {
            return avx2.find(hay);
        }
        memchr::memchr(b'\n', hay)
    }
}

/// State kept while skipping an oversized message.
#[derive(Debug)]
struct Discard {
    /// Bytes of the message dropped so far (for the warning).
    bytes: usize,
    /// The start of the current, unfinished line was already dropped: when it completes it
    /// is certainly not an empty line.
    line_cut: bool,
}

/// AMI decoder/encoder. See the module docs for the wire format.
///
/// Decoding is incremental: complete lines are parsed as they arrive (their header spans
/// recorded) while the message's bytes stay at the front of the buffer, so every byte is
/// scanned once however the reads are split. When the message's empty line arrives its bytes
/// are split off the buffer without copying. Each `decode` call returns at most one item,
/// leaving later bytes in the buffer.
#[derive(Debug)]
pub struct AmiCodec {
    max_frame_bytes: usize,
    line_ends: LineEnds,
    awaiting_greeting: bool,
    /// `src[frame_bytes..scanned]` is known to contain no `\n` (0: nothing known).
    scanned: usize,
    /// Headers of the message being assembled; offsets from the start of the buffer, where
    /// the message starts. Reused from message to message.
    fields: Vec<Field>,
    /// Body lines of the message being assembled, likewise.
    body: Vec<Span>,
    section: Section,
    /// Wire bytes of the current message so far (0 = no message started yet): complete
    /// lines kept at the front of the buffer.
    frame_bytes: usize,
    /// `Some` while skipping an oversized message.
    discard: Option<Discard>,
    skipped_frames: u64,
    malformed_lines: u64,
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl AmiCodec {
    /// Codec for a fresh connection: the first line received is the greeting.
    pub fn new() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            line_ends: LineEnds::new(),
            awaiting_greeting: true,
            scanned: 0,
            fields: Vec::new(),
            body: Vec::new(),
            section: Section::Headers,
            frame_bytes: 0,
            discard: None,
            skipped_frames: 0,
            malformed_lines: 0,
        }
    }

    /// Codec for data that starts at a message boundary with no greeting (transcripts).
    pub fn without_greeting() -> Self {
        Self {
            awaiting_greeting: false,
            ..Self::new()
        }
    }

    /// Largest message kept, in wire bytes excluding its final empty line. A longer message
    /// is dropped while it streams in (memory stays bounded) and counted in
    /// [`AmiCodec::skipped_frames`]. Values above 4 GiB are treated as 4 GiB.
    pub fn with_max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n.min(MAX_FRAME_BYTES_CEILING);
        self
    }

    /// Number of oversized messages skipped so far.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped_frames
    }

    /// Number of lines skipped because they were neither a header nor command output.
    pub fn malformed_lines(&self) -> u64 {
        self.malformed_lines
    }

    /// Handles the complete line `src[self.frame_bytes..line_end]` (terminator included).
    fn on_line(&mut self, src: &mut BytesMut, line_end: usize) -> Option<AmiItem> {
        // Lines of the current message are kept in front of this one; in any other state
        // `frame_bytes` is 0.
        let start = self.frame_bytes;
        let wire_len = line_end - start;
        let content_len = strip_line_ending(&src[start..line_end]).len();

        if self.awaiting_greeting {
            self.awaiting_greeting = false;
            let greeting = String::from_utf8_lossy(&src[..content_len]).into_owned();
            src.advance(line_end);
            return Some(AmiItem::Greeting(greeting));
        }

        if let Some(mut discard) = self.discard.take() {
            let line_cut = std::mem::replace(&mut discard.line_cut, false);
            discard.bytes += wire_len;
            if let Step::End = self.classify(&src[..content_len], true, line_cut) {
                tracing::warn!(
                    bytes = discard.bytes,
                    limit = self.max_frame_bytes,
                    "skipped oversized AMI message"
                );
            } else {
                self.discard = Some(discard);
            }
            src.advance(line_end);
            return None;
        }

        let content = &src[start..start + content_len];
        match self.classify(content, start > 0, false) {
            Step::Padding => {
                src.advance(line_end);
                None
            }
            Step::End => {
                let frame = self.take_frame(src);
                src.advance(wire_len);
                frame.map(AmiItem::Frame)
            }
            step => {
                // Checked before keeping anything, so one huge line never stays buffered.
                if line_end > self.max_frame_bytes {
                    src.advance(line_end);
                    self.start_discard(line_end);
                    return None;
                }
                match step {
                    Step::Header {
                        key_end,
                        value_start,
                    } => self.fields.push(Field {
                        key: Span::wire(start, start + key_end),
                        value: Span::wire(start + value_start, start + content_len),
                    }),
                    Step::Body { len } => self.body.push(Span::wire(start, start + len)),
                    Step::Malformed => {
                        self.malformed_lines += 1;
                        let shown = &content[..content.len().min(LOGGED_LINE_BYTES)];
                        tracing::warn!(
                            line = %String::from_utf8_lossy(shown),
                            "skipping malformed AMI line (no colon)"
                        );
                    }
                    Step::Padding | Step::End | Step::Marker => {}
                }
                self.frame_bytes = line_end;
                None
            }
        }
    }

    /// Fast path for the common case, with the same result as [`AmiCodec::on_line`]: takes
    /// the ordinary `Key: Value` lines that follow in the header section of a message.
    /// Each line end is found by a vector search over the rest of the buffer (see
    /// [`LineEnds`]; one vector covers a typical line), then the colon within the line's
    /// first words. Returns the length of the empty line ending the message if it got there.
    /// Otherwise stops, leaving it to `on_line`, at the first line that needs more thought:
    /// unfinished, empty outside a message, without `": "` right after its key, a `Response`
    /// header (may start a `Follows`), or past the size limit. When it stops at an unfinished
    /// line it records that line as searched (`scanned`), so it is not searched again.
    fn fast_header_lines(&mut self, buf: &[u8]) -> Option<usize> {
        // A line ending past the size limit is left to `on_line`; so all offsets fit a u32.
        let buf = &buf[..buf.len().min(self.max_frame_bytes)];
        let mut start = self.frame_bytes;
        while let Some(rest) = buf.get(start..) {
            let Some(newline) = self.line_ends.find(rest) else {
                self.scanned = buf.len();
                break;
            };
            let line = &rest[..newline];
            let content = line.strip_suffix(b"\r").unwrap_or(line);
            if content.is_empty() {
                if start == 0 {
                    break; // Padding between messages.
                }
                self.frame_bytes = start;
                return Some(newline + 1);
            }
            // The key must be non-empty and followed by ": ". Setting bit 0x20 of each
            // byte of an 8-byte key makes ASCII letters lowercase (and only `R` or `r`
            // become `r`, and so on).
            let colon = find_byte(content, b':').unwrap_or(0);
            if colon == 0
                || content.get(colon + 1) != Some(&b' ')
                || (colon == WORD
                    && word_at(content, 0).unwrap_or(0) | LOWERCASE_BITS == RESPONSE_LOWERCASE)
            {
                break;
            }
            self.fields.push(Field {
                key: Span::wire(start, start + colon),
                value: Span::wire(start + colon + 2, start + content.len()),
            });
            start += newline + 1;
        }
        self.frame_bytes = start;
        None
    }

    /// The current message, whose lines are the first `frame_bytes` of `src`, as a frame
    /// (`None` if it had no header nor body line, only malformed ones); taken off `src`.
    fn take_frame(&mut self, src: &mut BytesMut) -> Option<AmiFrame> {
        let wire = src.split_to(self.frame_bytes.min(src.len())).freeze();
        let frame = (!self.fields.is_empty() || !self.body.is_empty())
            .then(|| AmiFrame::from_wire(wire, &self.fields, &self.body));
        self.fields.clear();
        self.body.clear();
        self.frame_bytes = 0;
        frame
    }

    /// Decides what a line means and moves `section` along. Shared by normal decoding and
    /// by discarding, so an oversized `Response: Follows` is skipped up to its real end.
    /// `started`: the current message already has lines. `line_cut`: the start of this line
    /// was dropped (discarding only), so it is not empty and cannot be parsed as a header.
    fn classify(&mut self, content: &[u8], started: bool, line_cut: bool) -> Step {
        match self.section {
            Section::Headers | Section::FollowsTrailer => {
                if content.is_empty() && !line_cut {
                    if !started {
                        return Step::Padding;
                    }
                    self.section = Section::Headers;
                    return Step::End;
                }
                if line_cut {
                    return Step::Malformed;
                }
                match split_header(content) {
                    Some((key_end, value_start)) => {
                        if self.section == Section::Headers
                            && content[..key_end].eq_ignore_ascii_case(b"Response")
                            && content[value_start..]
                                .trim_ascii()
                                .eq_ignore_ascii_case(b"Follows")
                        {
                            self.section = Section::FollowsHeaders;
                        }
                        Step::Header {
                            key_end,
                            value_start,
                        }
                    }
                    None => Step::Malformed,
                }
            }
            Section::FollowsHeaders => {
                if !line_cut {
                    if let Some((key_end, value_start)) = split_header(content) {
                        let key = &content[..key_end];
                        if key.eq_ignore_ascii_case(b"Privilege")
                            || key.eq_ignore_ascii_case(b"ActionID")
                        {
                            return Step::Header {
                                key_end,
                                value_start,
                            };
                        }
                    }
                }
                self.section = Section::FollowsBody;
                self.body_line(content)
            }
            Section::FollowsBody => self.body_line(content),
        }
    }

    /// A line of raw command output; the end marker may stand alone or be glued to the
    /// last output line (`foo--END COMMAND--`) when the output lacked a final newline.
    fn body_line(&mut self, content: &[u8]) -> Step {
        match content.strip_suffix(END_COMMAND) {
            Some(before) => {
                self.section = Section::FollowsTrailer;
                if before.is_empty() {
                    Step::Marker
                } else {
                    Step::Body { len: before.len() }
                }
            }
            None => Step::Body { len: content.len() },
        }
    }

    /// Forgets the pending frame and starts skipping the rest of its message. The caller has
    /// already removed the message's bytes from the buffer.
    fn start_discard(&mut self, bytes_so_far: usize) {
        self.fields.clear();
        self.body.clear();
        self.frame_bytes = 0;
        self.skipped_frames += 1;
        tracing::warn!(
            bytes_so_far,
            limit = self.max_frame_bytes,
            "AMI message exceeds max_frame_bytes; discarding it up to its end"
        );
        self.discard = Some(Discard {
            bytes: bytes_so_far,
            line_cut: false,
        });
    }

    /// Called when `src` holds, after the pending message's complete lines, only an
    /// unfinished line: enforces the size limit on it.
    fn on_partial_line(&mut self, src: &mut BytesMut) {
        if self.discard.is_none() {
            if self.awaiting_greeting {
                if src.len() <= self.max_frame_bytes {
                    return;
                }
                // No line end within the limit: whatever this peer sends is not a greeting.
                // Treat it as an oversized message so the buffer cannot grow without bound.
                tracing::warn!(
                    bytes = src.len(),
                    "no AMI greeting line within max_frame_bytes"
                );
                self.awaiting_greeting = false;
                self.start_discard(0);
            } else {
                // A lone `\r` may be the first half of the message-ending empty line.
                let maybe_end =
                    src.len() == self.frame_bytes + 1 && src.get(self.frame_bytes) == Some(&b'\r');
                if maybe_end || src.len() <= self.max_frame_bytes {
                    return;
                }
                let kept = self.frame_bytes;
                src.advance(kept);
                self.start_discard(kept);
            }
        }
        if let Some(discard) = self.discard.as_mut() {
            let pending = src.len();
            if pending > KEPT_LINE_TAIL {
                let dropped = pending - KEPT_LINE_TAIL;
                src.advance(dropped);
                discard.bytes += dropped;
                discard.line_cut = true;
            }
        }
    }

    /// Resets per-message state (used at EOF).
    fn reset_message(&mut self) {
        self.fields.clear();
        self.body.clear();
        self.section = Section::Headers;
        self.frame_bytes = 0;
        self.discard = None;
        self.scanned = 0;
    }
}

impl Decoder for AmiCodec {
    type Item = AmiItem;
    type Error = AmiCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<AmiItem>, AmiCodecError> {
        if self.frame_bytes > src.len() {
            // Only if the caller removed buffered bytes between calls (no `tokio_util`
            // framing does): the pending message is gone.
            tracing::warn!("AMI read buffer lost the pending message; dropping it");
            self.reset_message();
        }
        loop {
            if self.section == Section::Headers
                && self.discard.is_none()
                && !self.awaiting_greeting
                && self.scanned <= self.frame_bytes
            {
                if let Some(end_line) = self.fast_header_lines(src) {
                    let frame = self.take_frame(src);
                    src.advance(end_line);
                    self.scanned = 0;
                    if let Some(frame) = frame {
                        return Ok(Some(AmiItem::Frame(frame)));
                    }
                    continue;
                }
            }
            // Resume the `\n` search where the previous call stopped.
            let from = self.scanned.max(self.frame_bytes).min(src.len());
            match find_byte(&src[from..], b'\n') {
                Some(i) => {
                    self.scanned = 0;
                    if let Some(item) = self.on_line(src, from + i + 1) {
                        return Ok(Some(item));
                    }
                }
                None => {
                    self.on_partial_line(src);
                    // After any bytes `on_partial_line` dropped.
                    self.scanned = src.len();
                    return Ok(None);
                }
            }
        }
    }

    /// At EOF a message cut short is dropped with a warning, not an error: the connection is
    /// gone either way and the client reconnects. Exception: if every line of the message
    /// arrived whole and only the final empty line is missing (the peer closed right after
    /// it, e.g. after a `Response: Goodbye`), the frame is delivered, because all of its
    /// headers are intact; a message cut inside a line, or inside `Response: Follows` output
    /// before `--END COMMAND--`, is dropped.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<AmiItem>, AmiCodecError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        // Whatever is left after the pending message's lines is one unfinished line.
        let kept = self.frame_bytes.min(src.len());
        let rest = &src[kept..];
        let unfinished_line = !(rest.is_empty() || rest == b"\r");
        let leftover = rest.len();

        if let Some(discard) = self.discard.take() {
            src.clear();
            tracing::warn!(
                bytes = discard.bytes + leftover,
                "AMI connection closed inside an oversized message"
            );
            self.reset_message();
            return Ok(None);
        }
        if self.awaiting_greeting {
            src.clear();
            if leftover > 0 {
                tracing::warn!(
                    bytes = leftover,
                    "AMI connection closed inside the greeting line"
                );
            }
            self.reset_message();
            return Ok(None);
        }

        let bytes = kept + leftover;
        let whole_lines = matches!(self.section, Section::Headers | Section::FollowsTrailer);
        let frame = if !unfinished_line && whole_lines {
            self.take_frame(src)
        } else {
            None
        };
        src.clear();
        self.reset_message();

        if let Some(frame) = frame {
            tracing::warn!("AMI connection closed before the empty line ending the last message");
            return Ok(Some(AmiItem::Frame(frame)));
        }
        if bytes > 0 {
            tracing::warn!(
                bytes,
                "AMI connection closed mid-message; dropping partial frame"
            );
        }
        Ok(None)
    }
}

impl<'a> Encoder<&'a AmiFrame> for AmiCodec {
    type Error = AmiCodecError;

    /// Writes `Key: Value\r\n` per header, then each body line + `\r\n`, then `\r\n`.
    /// CR/LF inside keys, values or body lines are replaced by spaces: otherwise data from
    /// outside (a caller name from the CRM, say) could end the action early and inject
    /// another one. The replacement keeps [`AmiFrame::encoded_len`] exact.
    fn encode(&mut self, frame: &'a AmiFrame, dst: &mut BytesMut) -> Result<(), AmiCodecError> {
        dst.reserve(frame.encoded_len());
        for (key, value) in frame.headers() {
            put_single_line(dst, key);
            dst.extend_from_slice(b": ");
            put_single_line(dst, value);
            dst.extend_from_slice(b"\r\n");
        }
        for line in frame.body() {
            put_single_line(dst, line);
            dst.extend_from_slice(b"\r\n");
        }
        dst.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Appends `text`, with CR and LF turned into spaces (see the encoder).
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

/// Bytes of a `u64` word, for the word-at-a-time search in [`find_byte`].
const WORD: usize = 8;
const LOW_BITS: u64 = u64::from_le_bytes([0x01; WORD]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; WORD]);
/// [`find_byte`] looks at this many bytes a word at a time, then hands over to `memchr`.
const SHORT_SEARCH: usize = 4 * WORD;
/// `b"Response"` as a little-endian word, lowercase, and bit 0x20 of every byte of a word.
const RESPONSE_LOWERCASE: u64 = u64::from_le_bytes(*b"response");
const LOWERCASE_BITS: u64 = LOW_BITS * 0x20;

/// The 8 bytes of `bytes` from `at` as a little-endian word (`None` if fewer are left).
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..)?.first_chunk::<WORD>()?;
    Some(u64::from_le_bytes(*word))
}

/// Sets the high bit of each zero byte of `x` (and maybe of bytes after one; never before
/// the first, so the lowest set bit marks the first zero byte).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// Index of the byte marked by the lowest set bit of a [`zero_bytes`] mask.
#[inline]
fn first_byte(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Index of the first `needle` in `hay`. AMI lines and keys are short (~20 and ~10 bytes),
/// too short for `memchr`'s vector code to pay off: the first few words are searched
/// 8 bytes at a time in plain integer code, the rest with `memchr`.
#[inline]
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = LOW_BITS * u64::from(needle);
    let mut searched = 0;
    while searched < SHORT_SEARCH {
        let Some(word) = word_at(hay, searched) else {
            break;
        };
        let zero = zero_bytes(word ^ pattern);
        if zero != 0 {
            return Some(searched + first_byte(zero));
        }
        searched += WORD;
    }
    let rest = hay.get(searched..)?;
    let found = if rest.len() < WORD {
        rest.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, rest)
    };
    found.map(|i| searched + i)
}

/// Removes `\n` or `\r\n` (bare `\n` endings are tolerated).
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `Key: Value` at the first `": "` (values contain colons and `": "` themselves).
/// Without any `": "`, falls back to the first `:` (`Key:` → empty value; `Key:value`,
/// which Asterisk itself accepts in actions). Returns `(key_end, value_start)`; no colon at
/// all, or an empty key → `None`.
fn split_header(content: &[u8]) -> Option<(usize, usize)> {
    let first = find_byte(content, b':')?;
    let (key_end, value_start) = if content.get(first + 1) == Some(&b' ') {
        (first, first + 2)
    } else {
        match memchr::memmem::find(&content[first + 1..], b": ") {
            Some(i) => (first + 1 + i, first + 3 + i),
            None => (first, first + 1),
        }
    };
    (key_end > 0).then_some((key_end, value_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One recorded AMI session: name, raw bytes, recv() chunk table.
    struct Fixture {
        name: &'static str,
        bytes: &'static [u8],
        timing: &'static str,
    }

    macro_rules! fixture {
        ($dir:literal, $name:literal) => {
            Fixture {
                name: concat!($dir, "/", $name),
                bytes: include_bytes!(concat!(
                    "../../../tests/fixtures/asterisk/",
                    $dir,
                    "/",
                    $name,
                    ".ami"
                )),
                timing: include_str!(concat!(
                    "../../../tests/fixtures/asterisk/",
                    $dir,
                    "/",
                    $name,
                    ".timing"
                )),
            }
        };
    }

    const FIXTURES: &[Fixture] = &[
        fixture!("iax2", "attended_transfer"),
        fixture!("iax2", "inbound_answered"),
        fixture!("iax2", "inbound_missed"),
        fixture!("iax2", "inbound_voicemail"),
        fixture!("iax2", "outbound_answered"),
        fixture!("iax2", "outbound_no_answer"),
        fixture!("iax2", "queue_agent_answers"),
        fixture!("iax2", "recording"),
        fixture!("iax2", "ring_group_second_answers"),
        fixture!("local", "inbound_answered"),
        fixture!("local", "queue_agent_answers"),
    ];

    fn fixture(name: &str) -> &'static Fixture {
        match FIXTURES.iter().find(|f| f.name == name) {
            Some(f) => f,
            None => panic!("no fixture {name}"),
        }
    }

    /// Runs `decode` until it yields nothing.
    fn drain(codec: &mut AmiCodec, buf: &mut BytesMut, out: &mut Vec<AmiItem>) {
        while let Some(item) = codec.decode(buf).unwrap() {
            out.push(item);
        }
    }

    /// Feeds `chunks` one read at a time, then signals EOF.
    fn decode_reads<'a>(
        mut codec: AmiCodec,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<AmiItem>, AmiCodec) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            drain(&mut codec, &mut buf, &mut out);
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        assert!(buf.is_empty(), "decode_eof must consume everything");
        (out, codec)
    }

    fn decode_all(codec: AmiCodec, bytes: &[u8]) -> Vec<AmiItem> {
        decode_reads(codec, [bytes]).0
    }

    fn frames(items: Vec<AmiItem>) -> Vec<AmiFrame> {
        items
            .into_iter()
            .map(|item| match item {
                AmiItem::Frame(frame) => frame,
                AmiItem::Greeting(g) => panic!("unexpected greeting {g:?}"),
            })
            .collect()
    }

    fn only_frame(bytes: &[u8]) -> AmiFrame {
        let mut all = frames(decode_all(AmiCodec::without_greeting(), bytes));
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    /// Bytes of the fixture after the greeting line.
    fn after_greeting(bytes: &[u8]) -> &[u8] {
        let end = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        &bytes[end..]
    }

    /// The complete wire bytes of the first message starting with `first_line`.
    fn message_starting_with(bytes: &'static [u8], first_line: &[u8]) -> &'static [u8] {
        let start = bytes
            .windows(first_line.len())
            .position(|w| w == first_line)
            .unwrap();
        let len = bytes[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        &bytes[start..start + len]
    }

    /// (offset, length) of every recv() chunk listed in a `.timing` file.
    fn recv_chunks(timing: &str) -> Vec<(usize, usize)> {
        timing
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                assert_eq!(fields.len(), 3, "bad timing line {l:?}");
                (fields[1].parse().unwrap(), fields[2].parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn every_fixture_decodes_to_greeting_and_all_its_messages() {
        for fx in FIXTURES {
            let body = after_greeting(fx.bytes);
            // Counted independently of the codec: the recordings use CRLF only and never
            // contain blank lines inside or between messages.
            let expected_frames = count(body, b"\r\n\r\n");
            let expected_headers = body.split(|&b| b == b'\n').filter(|l| l.len() > 1).count();

            let (items, codec) = decode_reads(AmiCodec::new(), [fx.bytes]);
            assert_eq!(
                items.first(),
                Some(&AmiItem::Greeting("Asterisk Call Manager/11.0.0".into())),
                "{}",
                fx.name
            );
            let frames = frames(items.into_iter().skip(1).collect());
            assert_eq!(frames.len(), expected_frames, "{}", fx.name);
            let headers: usize = frames.iter().map(|f| f.headers().len()).sum();
            assert_eq!(headers, expected_headers, "{}: every line kept", fx.name);
            assert!(frames.iter().all(|f| f.body().len() == 0), "{}", fx.name);

            let first = &frames[0];
            assert_eq!(first.response(), Some("Success"), "{}", fx.name);
            assert_eq!(first.action_id(), Some("crm-login-1"), "{}", fx.name);
            assert_eq!(first.get("Message"), Some("Authentication accepted"));
            let last = &frames[frames.len() - 1];
            assert_eq!(last.response(), Some("Goodbye"), "{}", fx.name);
            assert_eq!(last.action_id(), Some("crm-logoff-1"), "{}", fx.name);
            assert!(frames[1..frames.len() - 1]
                .iter()
                .all(|f| f.event().is_some()));

            assert_eq!(codec.malformed_lines(), 0, "{}", fx.name);
            assert_eq!(codec.skipped_frames(), 0, "{}", fx.name);
        }
    }

    #[test]
    fn recorded_recv_splits_give_the_same_frames() {
        for fx in FIXTURES {
            let chunks = recv_chunks(fx.timing);
            let mut expected_offset = 0;
            for &(offset, len) in &chunks {
                assert_eq!(
                    offset, expected_offset,
                    "{}: chunks are contiguous",
                    fx.name
                );
                expected_offset += len;
            }
            assert_eq!(expected_offset, fx.bytes.len(), "{}", fx.name);

            let whole = decode_all(AmiCodec::new(), fx.bytes);
            let split = decode_reads(
                AmiCodec::new(),
                chunks.iter().map(|&(off, len)| &fx.bytes[off..off + len]),
            )
            .0;
            assert_eq!(split, whole, "{}", fx.name);
        }
    }

    #[test]
    fn whole_fixture_fed_byte_by_byte_gives_the_same_frames() {
        let fx = fixture("iax2/inbound_answered");
        let whole = decode_all(AmiCodec::new(), fx.bytes);
        let by_byte = decode_reads(AmiCodec::new(), fx.bytes.chunks(1)).0;
        assert_eq!(by_byte, whole);
    }

    #[test]
    fn real_frame_split_at_every_offset_gives_the_same_frames() {
        // The largest message in the recordings, followed by another one.
        let big = message_starting_with(
            fixture("iax2/attended_transfer").bytes,
            b"Event: AttendedTransfer\r\n",
        );
        let mut stream = big.to_vec();
        stream.extend_from_slice(
            b"Event: DeviceStateChange\r\nDevice: IAX2/101\r\nState: NOT_INUSE\r\n\r\n",
        );

        let expected = frames(decode_all(AmiCodec::without_greeting(), &stream));
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[0].event(), Some("AttendedTransfer"));
        assert_eq!(expected[0].headers().len(), count(big, b"\r\n") - 1);
        assert_eq!(
            expected[0].get("OrigTransfererChannel"),
            Some("IAX2/101-9203")
        );
        assert_eq!(expected[1].get("State"), Some("NOT_INUSE"));

        let by_byte = frames(decode_reads(AmiCodec::without_greeting(), stream.chunks(1)).0);
        assert_eq!(by_byte, expected);

        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let got = frames(decode_reads(AmiCodec::without_greeting(), [a, b]).0);
            assert_eq!(got, expected, "split at {cut}");
        }
    }

    #[test]
    fn value_is_split_at_the_first_colon_space_only() {
        let frame = only_frame(
            b"Event: Newexten\r\n\
              AppData: Ring group 600: 101 & 102\r\n\
              DialString: 7004/sip:7004@203.0.113.11:5062;transport=udp\r\n\
              Foo:bar: baz\r\n\r\n",
        );
        assert_eq!(frame.get("AppData"), Some("Ring group 600: 101 & 102"));
        assert_eq!(
            frame.get("DialString"),
            Some("7004/sip:7004@203.0.113.11:5062;transport=udp")
        );
        assert_eq!(frame.get("Foo:bar"), Some("baz"));
    }

    #[test]
    fn empty_values_are_headers_not_missing() {
        let frame = only_frame(
            b"Event: Newchannel\r\nAccountCode: \r\nLanguage:\r\nContext:from-trunk\r\n\r\n",
        );
        assert_eq!(frame.get("AccountCode"), Some(""));
        assert_eq!(frame.get("Language"), Some(""));
        assert_eq!(frame.get("Context"), Some("from-trunk"));
        assert_eq!(frame.get("Exten"), None);
    }

    #[test]
    fn repeated_keys_are_all_kept_in_order() {
        let frame = only_frame(
            b"Event: Hangup\r\nChanVariable: A=1\r\nUniqueid: 1.2\r\n\
              ChanVariable: B=2\r\nchanvariable: C=3\r\n\r\n",
        );
        assert_eq!(frame.get("ChanVariable"), Some("A=1"));
        assert_eq!(
            frame.get_all("CHANVARIABLE").collect::<Vec<_>>(),
            ["A=1", "B=2", "C=3"]
        );
        assert_eq!(frame.headers().nth(3), Some(("ChanVariable", "B=2")));
        assert_eq!(frame.headers().len(), 5);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let frame =
            only_frame(b"Event: Newchannel\r\nCallerIDName: Ivan \xff\xfe\xd0\r\nX\xc3: y\r\n\r\n");
        assert_eq!(
            frame.get("CallerIDName"),
            Some("Ivan \u{fffd}\u{fffd}\u{fffd}")
        );
        assert_eq!(frame.get("X\u{fffd}"), Some("y"));
        // Valid multi-byte UTF-8 and C escapes pass through untouched.
        let frame = only_frame("CallerIDName: ООО \\\"Ромашка\\\"\r\n\r\n".as_bytes());
        assert_eq!(frame.get("CallerIDName"), Some("ООО \\\"Ромашка\\\""));
    }

    #[test]
    fn lf_only_and_mixed_line_endings_are_accepted() {
        let items = decode_all(
            AmiCodec::new(),
            b"Asterisk Call Manager/11.0.0\nResponse: Success\nActionID: a\n\n\
              Event: Newstate\r\nChannelState: 6\n\r\n",
        );
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0],
            AmiItem::Greeting("Asterisk Call Manager/11.0.0".into())
        );
        let frames = frames(items[1..].to_vec());
        assert_eq!(
            frames[0],
            AmiFrame::new()
                .with("Response", "Success")
                .with("ActionID", "a")
        );
        assert_eq!(
            frames[1],
            AmiFrame::new()
                .with("Event", "Newstate")
                .with("ChannelState", "6")
        );
    }

    #[test]
    fn event_in_the_same_read_as_the_login_response_stays_in_the_buffer() {
        let fx = fixture("iax2/inbound_answered");
        // Second recv() of the recording: the Login response, FullyBooted and more, in one read.
        let (off, len) = recv_chunks(fx.timing)[1];
        let read = &fx.bytes[off..off + len];
        assert!(read.starts_with(b"Response: Success\r\nActionID: crm-login-1\r\n"));

        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&fx.bytes[..off]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(AmiItem::Greeting("Asterisk Call Manager/11.0.0".into()))
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(read);
        let Some(AmiItem::Frame(login)) = codec.decode(&mut buf).unwrap() else {
            panic!("expected the login response");
        };
        assert_eq!(login.action_id(), Some("crm-login-1"));
        // Exactly the login response was consumed; the events are still there.
        let login_len = message_starting_with(read, b"Response: Success").len();
        assert_eq!(&buf[..], &read[login_len..]);
        let Some(AmiItem::Frame(booted)) = codec.decode(&mut buf).unwrap() else {
            panic!("expected FullyBooted");
        };
        assert_eq!(booted.event(), Some("FullyBooted"));
        assert_eq!(booted.get("Status"), Some("Fully Booted"));
    }

    #[test]
    fn unfinished_line_is_not_rescanned_on_the_next_read() {
        let mut codec = AmiCodec::without_greeting();
        let mut buf = BytesMut::from(&b"Event: VarSet\r\nValue: abc"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        // The complete line was parsed into the pending frame (its bytes stay in the buffer
        // until the message completes); the rest is remembered as already searched.
        assert_eq!(&buf[..], b"Event: VarSet\r\nValue: abc");
        assert_eq!(codec.frame_bytes, b"Event: VarSet\r\n".len());
        assert_eq!(codec.scanned, buf.len());
        buf.extend_from_slice(b"def");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.scanned, buf.len());
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(AmiItem::Frame(
                AmiFrame::new()
                    .with("Event", "VarSet")
                    .with("Value", "abcdef")
            ))
        );
        assert_eq!(codec.scanned, 0);
        assert!(buf.is_empty());
    }

    #[test]
    fn greeting_is_only_the_first_line() {
        let items = decode_all(
            AmiCodec::new(),
            b"Asterisk Call Manager/5.0.1\r\nResponse: Success\r\nMessage: Authentication accepted\r\n\r\n",
        );
        assert_eq!(
            items,
            [
                AmiItem::Greeting("Asterisk Call Manager/5.0.1".into()),
                AmiItem::Frame(
                    AmiFrame::new()
                        .with("Response", "Success")
                        .with("Message", "Authentication accepted")
                ),
            ]
        );
    }

    #[test]
    fn blank_lines_between_messages_are_ignored() {
        let frames = frames(decode_all(
            AmiCodec::without_greeting(),
            b"\r\n\nEvent: One\r\n\r\n\r\n\r\n\nEvent: Two\r\n\r\n\r\n",
        ));
        assert_eq!(
            frames,
            [
                AmiFrame::new().with("Event", "One"),
                AmiFrame::new().with("Event", "Two")
            ]
        );
    }

    #[test]
    fn legacy_follows_body_is_kept_raw() {
        let frame = only_frame(
            b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-1\r\n\
              Uptime: 5 days\n\
              Channel (Context Extension Pri ) State Appl. Data\n\
              0 active channel(s)\n\
              --END COMMAND--\r\n\r\n",
        );
        assert_eq!(frame.response(), Some("Follows"));
        assert_eq!(frame.get("Privilege"), Some("Command"));
        assert_eq!(frame.action_id(), Some("cmd-1"));
        assert_eq!(frame.headers().len(), 3, "output lines are not headers");
        assert_eq!(
            frame.body().collect::<Vec<_>>(),
            [
                "Uptime: 5 days",
                "Channel (Context Extension Pri ) State Appl. Data",
                "0 active channel(s)"
            ]
        );
    }

    #[test]
    fn legacy_follows_body_may_contain_blank_lines() {
        let frames = frames(decode_all(
            AmiCodec::without_greeting(),
            b"Response: Follows\r\nActionID: cmd-2\r\nPrivilege: Command\r\n\
              \n\
              first\n\
              \r\n\
              \n\
              last: line\n\
              --END COMMAND--\r\n\r\n\
              Event: After\r\n\r\n",
        ));
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0].action_id(), Some("cmd-2"));
        assert_eq!(
            frames[0].body().collect::<Vec<_>>(),
            ["", "first", "", "", "last: line"]
        );
        assert_eq!(frames[1], AmiFrame::new().with("Event", "After"));
    }

    #[test]
    fn legacy_follows_end_marker_glued_to_the_last_line() {
        let frames = frames(decode_all(
            AmiCodec::without_greeting(),
            b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-3\r\n\
              1 database entries removed.\n\
              foo--END COMMAND--\r\n\r\n\
              Response: Follows\r\nPrivilege: Command\r\n--END COMMAND--\r\n\r\n\
              Event: After\r\n\r\n",
        ));
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(
            frames[0].body().collect::<Vec<_>>(),
            ["1 database entries removed.", "foo"]
        );
        assert_eq!(frames[1].response(), Some("Follows"));
        assert_eq!(frames[1].body().len(), 0, "empty output");
        assert_eq!(frames[2].event(), Some("After"));
    }

    #[test]
    fn modern_command_output_headers_are_not_a_body() {
        let frame = only_frame(
            b"Response: Success\r\nMessage: Command output follows\r\n\
              Output: Channel              Location\r\nOutput: \r\nOutput: 0 active calls\r\n\r\n",
        );
        assert_eq!(frame.body().len(), 0);
        assert_eq!(
            frame.get_all("Output").collect::<Vec<_>>(),
            ["Channel              Location", "", "0 active calls"]
        );
    }

    #[test]
    fn malformed_line_is_skipped_and_the_frame_kept() {
        let (items, codec) = decode_reads(
            AmiCodec::without_greeting(),
            [&b"Event: Newstate\r\nthis line has no colon\r\nChannelState: 6\r\n\r\n: no key\r\n\r\n"[..]],
        );
        assert_eq!(
            frames(items),
            [AmiFrame::new()
                .with("Event", "Newstate")
                .with("ChannelState", "6")]
        );
        assert_eq!(codec.malformed_lines(), 2);
    }

    /// An event of `headers` lines of ~50 bytes each.
    fn big_event(headers: usize) -> Vec<u8> {
        let mut bytes = b"Event: Huge\r\n".to_vec();
        for i in 0..headers {
            bytes.extend_from_slice(
                format!("ChanVariable: V{i:05}=0123456789012345678901234567\r\n").as_bytes(),
            );
        }
        bytes.extend_from_slice(b"\r\n");
        bytes
    }

    const NEXT_EVENT: &[u8] = b"Event: Next\r\nUniqueid: 1.5\r\n\r\n";

    #[test]
    fn oversized_frame_is_skipped_and_the_next_one_decoded() {
        let mut stream = big_event(100);
        stream.extend_from_slice(NEXT_EVENT);
        let (items, codec) = decode_reads(
            AmiCodec::without_greeting().with_max_frame_bytes(1024),
            [&stream[..]],
        );
        assert_eq!(
            frames(items),
            [AmiFrame::new()
                .with("Event", "Next")
                .with("Uniqueid", "1.5")]
        );
        assert_eq!(codec.skipped_frames(), 1);
        assert_eq!(codec.malformed_lines(), 0);

        // The limit is on the message without its final empty line: exactly at it is kept.
        let fits = b"Event: A\r\nB: c\r\n\r\n";
        let limit = fits.len() - 2;
        let (items, codec) = decode_reads(
            AmiCodec::without_greeting().with_max_frame_bytes(limit),
            [&fits[..]],
        );
        assert_eq!(items.len(), 1);
        assert_eq!(codec.skipped_frames(), 0);
        let (items, codec) = decode_reads(
            AmiCodec::without_greeting().with_max_frame_bytes(limit - 1),
            [&fits[..]],
        );
        assert!(items.is_empty());
        assert_eq!(codec.skipped_frames(), 1);
    }

    #[test]
    fn oversized_frame_split_across_many_reads_keeps_memory_bounded() {
        const LIMIT: usize = 1024;
        const READ: usize = 7;
        let mut stream = b"Event: Before\r\n\r\n".to_vec();
        stream.extend_from_slice(&big_event(400));
        stream.extend_from_slice(NEXT_EVENT);

        let mut codec = AmiCodec::without_greeting().with_max_frame_bytes(LIMIT);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(READ) {
            buf.extend_from_slice(chunk);
            drain(&mut codec, &mut buf, &mut out);
            assert!(buf.len() <= LIMIT + READ, "buffer grew to {}", buf.len());
            assert!(codec.frame_bytes <= LIMIT);
            // The pending message's lines are kept in the buffer, spans point into them.
            assert!(codec.frame_bytes <= buf.len());
            assert!(codec.fields.iter().all(|f| f.value.range().end <= LIMIT));
        }
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        let events: Vec<_> = frames(out)
            .iter()
            .map(|f| f.event().unwrap_or("").to_owned())
            .collect();
        assert_eq!(events, ["Before", "Next"]);
        assert_eq!(codec.skipped_frames(), 1);
    }

    #[test]
    fn giant_line_without_line_end_is_discarded_while_it_streams() {
        const READ: usize = 4096;
        let mut stream = b"Event: VarSet\r\nValue: ".to_vec();
        stream.extend(std::iter::repeat_n(b'a', 1 << 20));
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(NEXT_EVENT);

        let mut codec = AmiCodec::without_greeting();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(READ) {
            buf.extend_from_slice(chunk);
            drain(&mut codec, &mut buf, &mut out);
            assert!(
                buf.len() <= DEFAULT_MAX_FRAME_BYTES + READ,
                "buffer grew to {}",
                buf.len()
            );
        }
        assert_eq!(
            frames(out),
            [AmiFrame::new()
                .with("Event", "Next")
                .with("Uniqueid", "1.5")]
        );
        assert_eq!(codec.skipped_frames(), 1);
    }

    #[test]
    fn oversized_follows_is_skipped_up_to_its_end_marker() {
        let mut stream = b"Response: Follows\r\nPrivilege: Command\r\n".to_vec();
        for i in 0..200 {
            // Blank output lines must not end the skipped message early.
            stream.extend_from_slice(format!("line {i}: some output\n\n").as_bytes());
        }
        stream.extend_from_slice(b"tail--END COMMAND--\r\n\r\n");
        stream.extend_from_slice(NEXT_EVENT);

        for read in [1, 5, 64, stream.len()] {
            let (items, codec) = decode_reads(
                AmiCodec::without_greeting().with_max_frame_bytes(256),
                stream.chunks(read),
            );
            assert_eq!(frames(items).len(), 1, "read size {read}");
            assert_eq!(codec.skipped_frames(), 1);
            assert_eq!(
                codec.malformed_lines(),
                0,
                "no resync in the middle of the output"
            );
        }
    }

    #[test]
    fn decode_eof_drops_a_frame_cut_inside_a_line() {
        let mut codec = AmiCodec::without_greeting();
        let mut buf = BytesMut::from(&b"Event: One\r\n\r\nEvent: Hangup\r\nUniqueid: 17956"[..]);
        let Some(AmiItem::Frame(one)) = codec.decode_eof(&mut buf).unwrap() else {
            panic!("complete frame first");
        };
        assert_eq!(one.event(), Some("One"));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        // The codec is clean afterwards.
        buf.extend_from_slice(NEXT_EVENT);
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(AmiItem::Frame(f)) if f.event() == Some("Next"))
        );
    }

    #[test]
    fn decode_eof_delivers_a_frame_missing_only_its_final_blank_line() {
        for tail in [&b""[..], b"\r"] {
            let mut stream = b"Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n".to_vec();
            stream.extend_from_slice(tail);
            let items = decode_all(AmiCodec::without_greeting(), &stream);
            assert_eq!(
                items,
                [AmiItem::Frame(
                    AmiFrame::new()
                        .with("Response", "Goodbye")
                        .with("Message", "Thanks for all the fish.")
                )]
            );
        }
        // But not a Follows response still inside its output.
        let items = decode_all(
            AmiCodec::without_greeting(),
            b"Response: Follows\r\nPrivilege: Command\r\nsome output\n",
        );
        assert!(items.is_empty());
    }

    #[test]
    fn decode_eof_on_a_clean_end_or_inside_the_greeting() {
        assert!(decode_all(AmiCodec::new(), b"").is_empty());
        assert!(decode_all(AmiCodec::new(), b"Asterisk Call Man").is_empty());
        assert!(decode_all(AmiCodec::without_greeting(), b"Event: A\r\n\r\n\r\n").len() == 1);
    }

    #[test]
    fn encoder_writes_the_wire_format() {
        let login = AmiFrame::new()
            .with("Action", "Login")
            .with("ActionID", "crm-login-1")
            .with("Username", "crm")
            .with("Secret", "s3cr:et: x")
            .with("Events", "call,agent");
        let mut buf = BytesMut::new();
        AmiCodec::new().encode(&login, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            b"Action: Login\r\nActionID: crm-login-1\r\nUsername: crm\r\n\
              Secret: s3cr:et: x\r\nEvents: call,agent\r\n\r\n"
        );
        assert_eq!(buf.len(), login.encoded_len());

        let mut with_body = AmiFrame::new().with("Response", "Follows");
        with_body.push_body("out 1");
        with_body.push_body("out 2");
        let mut buf = BytesMut::new();
        AmiCodec::new().encode(&with_body, &mut buf).unwrap();
        assert_eq!(&buf[..], b"Response: Follows\r\nout 1\r\nout 2\r\n\r\n");
        assert_eq!(buf.len(), with_body.encoded_len());
    }

    #[test]
    fn encoder_cannot_be_tricked_into_ending_an_action_early() {
        let originate = AmiFrame::new()
            .with("Action", "Originate")
            .with("CallerID", "Evil\r\n\r\nAction: Logoff\nX");
        let mut buf = BytesMut::new();
        AmiCodec::new().encode(&originate, &mut buf).unwrap();
        assert_eq!(buf.len(), originate.encoded_len());
        let decoded = only_frame(&buf);
        assert_eq!(decoded.headers().len(), 2);
        assert_eq!(decoded.get("CallerID"), Some("Evil    Action: Logoff X"));
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut codec = AmiCodec::without_greeting();
        let mut buf = BytesMut::new();
        let originals: Vec<AmiFrame> = frames(decode_all(
            AmiCodec::without_greeting(),
            after_greeting(fixture("local/queue_agent_answers").bytes),
        ));
        let mut extra = AmiFrame::new()
            .with("Action", "Originate")
            .with("Channel", "Local/101@phones")
            .with("Variable", "A=1")
            .with("Variable", "B=x: y")
            .with("Account", "")
            .with("CallerID", "Иван <+79161234567>");
        extra.push("ActionID", "crm-7");
        for frame in originals.iter().chain([&extra]) {
            codec.encode(frame, &mut buf).unwrap();
        }
        let mut decoded = Vec::new();
        drain(&mut codec, &mut buf, &mut decoded);
        assert!(buf.is_empty());
        let decoded = frames(decoded);
        assert_eq!(decoded.len(), originals.len() + 1);
        assert_eq!(&decoded[..originals.len()], &originals[..]);
        assert_eq!(decoded[originals.len()], extra);
    }

    #[test]
    fn frame_accessors() {
        let frame = AmiFrame::new()
            .with("event", "DialEnd")
            .with("RESPONSE", "x")
            .with("actionid", "42")
            .with("DialStatus", "ANSWER");
        assert_eq!(frame.event(), Some("DialEnd"));
        assert_eq!(frame.response(), Some("x"));
        assert_eq!(frame.action_id(), Some("42"));
        assert_eq!(frame.get("dialstatus"), Some("ANSWER"));
        assert_eq!(frame.get("Dial"), None);
        assert_eq!(frame.get_all("missing").count(), 0);
    }

    #[tokio::test]
    async fn framed_read_over_a_socket_like_reader() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::FramedRead;

        let fx = fixture("iax2/recording");
        let expected = decode_all(AmiCodec::new(), fx.bytes);
        let (mut writer, reader) = tokio::io::duplex(512);
        let chunks = recv_chunks(fx.timing);
        let feed = tokio::spawn(async move {
            for (off, len) in chunks {
                writer.write_all(&fx.bytes[off..off + len]).await.unwrap();
            }
            // Dropping the writer is the EOF.
        });
        let got: Vec<AmiItem> = FramedRead::new(reader, AmiCodec::new())
            .map(|item| item.unwrap())
            .collect()
            .await;
        feed.await.unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded() {
        const LIMIT: usize = 300;
        let pieces: [&[u8]; 12] = [
            b"\r\n",
            b"\n",
            b"\r",
            b": ",
            b":",
            b"Response: Follows\r\n",
            b"--END COMMAND--",
            b"Event: X\r\n",
            b"ActionID: 1\r\n",
            b"\xff\xc3",
            b"abcdefghijklmnopqrstuvwxyz0123456789",
            b"Privilege: Command\r\n",
        ];
        // xorshift: deterministic, no extra crates.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut total_frames, mut total_skipped, mut total_malformed) = (0, 0, 0);
        for round in 0..200 {
            let mut codec = if round % 2 == 0 {
                AmiCodec::new()
            } else {
                AmiCodec::without_greeting()
            }
            .with_max_frame_bytes(LIMIT);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for _ in 0..400 {
                let r = next();
                let piece = pieces[(r % pieces.len() as u64) as usize];
                let repeat = if r % 97 == 0 { 50 } else { 1 };
                for _ in 0..repeat {
                    buf.extend_from_slice(piece);
                }
                drain(&mut codec, &mut buf, &mut out);
                assert!(buf.len() <= LIMIT + 50 * 40, "buffer {}", buf.len());
                assert!(codec.frame_bytes <= LIMIT);
            }
            while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
                out.push(item);
            }
            for item in &out {
                if let AmiItem::Frame(f) = item {
                    // Lossy decoding may turn one invalid byte into a 3-byte U+FFFD.
                    let text: usize = f.headers().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                        + f.body().map(str::len).sum::<usize>();
                    assert!(text <= 3 * LIMIT, "kept frame of {text} bytes");
                    total_frames += 1;
                }
            }
            total_skipped += codec.skipped_frames();
            total_malformed += codec.malformed_lines();
        }
        // The generator really exercises all paths.
        assert!(total_frames > 1000, "{total_frames}");
        assert!(total_skipped > 10, "{total_skipped}");
        assert!(total_malformed > 100, "{total_malformed}");
    }

    /// Property tests: any bytes, any read splits.
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// `bytes` fed in reads cut at `cuts` (positions, in any order), then EOF.
        fn decode_split(codec: AmiCodec, bytes: &[u8], cuts: &[usize]) -> (Vec<AmiItem>, AmiCodec) {
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            cuts.push(bytes.len());
            let mut start = 0;
            let reads = cuts.into_iter().map(|end| {
                let read = &bytes[start..end];
                start = end;
                read
            });
            decode_reads(codec, reads)
        }

        /// Bits of AMI (and of what is not AMI), or a few arbitrary bytes.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            let pieces: Vec<&'static [u8]> = vec![
                b"\r\n",
                b"\n",
                b"\r",
                b": ",
                b":",
                b" ",
                b"Event: Newstate\r\n",
                b"Uniqueid: 1795627487.61\r\n",
                b"Response: Follows\r\n",
                b"response:  FOLLOWS \n",
                b"Response: Success\r\n",
                b"Privilege: Command\r\n",
                b"ActionID: 7\r\n",
                b"--END COMMAND--",
                b"Key:value\r\n",
                b"Asterisk Call Manager/11.0.0\r\n",
                b"abcdefghijklmnopqrstuvwxyz0123456789",
                "Имя: Иван\r\n".as_bytes(),
                b"\xff\xc3",
            ];
            prop_oneof![
                3 => prop::sample::select(pieces).prop_map(<[u8]>::to_vec),
                1 => prop::collection::vec(any::<u8>(), 0..12),
            ]
        }

        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(piece(), 0..80).prop_map(|pieces| pieces.concat())
        }

        /// A frame that survives encoding: keys without `:` (they end at the first `": "`),
        /// no CR/LF anywhere, and no `Response: Follows` (which would expect command output).
        fn frame() -> impl Strategy<Value = AmiFrame> {
            let key = "[A-Za-z][A-Za-z0-9_-]{0,15}";
            let value = "[^\r\n]{0,24}";
            prop::collection::vec((key, value), 1..12).prop_map(|headers| {
                let mut frame = AmiFrame::new();
                for (key, value) in headers {
                    let key = if key.eq_ignore_ascii_case("Response") {
                        "Resp"
                    } else {
                        &key
                    };
                    frame.push(key, &value);
                }
                frame
            })
        }

        proptest! {
            /// Under the size limit, how the bytes are split into reads never matters, and
            /// nothing panics. (Above it, a few pathological lines are judged by what was
            /// seen of them when the limit hit, e.g. a greeting line longer than the limit.)
            #[test]
            fn any_bytes_split_anywhere_decode_as_in_one_read(
                bytes in stream(),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
                greeting in any::<bool>(),
            ) {
                let codec = || if greeting { AmiCodec::new() } else { AmiCodec::without_greeting() };
                let (whole, whole_codec) = decode_split(codec(), &bytes, &[]);
                let (split, split_codec) = decode_split(codec(), &bytes, &cuts);
                prop_assert_eq!(&split, &whole);
                prop_assert_eq!(split_codec.malformed_lines(), whole_codec.malformed_lines());
                prop_assert_eq!(split_codec.skipped_frames(), 0);
            }

            /// With a small limit: never a panic, the buffer and every kept frame stay bounded.
            #[test]
            fn any_bytes_under_a_small_limit_stay_bounded(
                bytes in stream(),
                read in 1usize..64,
                limit in 1usize..200,
            ) {
                let mut codec = AmiCodec::new().with_max_frame_bytes(limit);
                let mut buf = BytesMut::new();
                let mut out = Vec::new();
                for chunk in bytes.chunks(read) {
                    buf.extend_from_slice(chunk);
                    drain(&mut codec, &mut buf, &mut out);
                    // A message up to the limit and the `\r` that may start its final empty
                    // line; while skipping, the tail of an unfinished line.
                    let bound = (limit + 1).max(KEPT_LINE_TAIL);
                    prop_assert!(buf.len() <= bound, "buffer {}", buf.len());
                }
                while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
                    out.push(item);
                }
                prop_assert!(buf.is_empty());
                for item in &out {
                    if let AmiItem::Frame(frame) = item {
                        // Lossy decoding may turn one invalid byte into a 3-byte U+FFFD.
                        prop_assert!(frame.encoded_len() <= 3 * limit + 2, "{frame:?}");
                    }
                }
            }

            /// Encoded frames come back as they were, however the bytes are split.
            #[test]
            fn encoded_frames_split_anywhere_decode_to_themselves(
                frames in prop::collection::vec(frame(), 0..8),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut bytes = BytesMut::new();
                for frame in &frames {
                    AmiCodec::new().encode(frame, &mut bytes).unwrap();
                }
                let (whole, _) = decode_split(AmiCodec::without_greeting(), &bytes, &[]);
                let (split, codec) = decode_split(AmiCodec::without_greeting(), &bytes, &cuts);
                prop_assert_eq!(&split, &whole);
                prop_assert_eq!(super::frames(split), frames);
                prop_assert_eq!(codec.malformed_lines(), 0);
            }
        }
    }
}
