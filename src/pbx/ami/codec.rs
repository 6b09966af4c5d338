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
//! Hot path: the lines of the message being decoded stay at the front of the read buffer;
//! when its empty line arrives they are split off zero-copy (`BytesMut::split_to(..)
//! .freeze()`) and handed to [`AmiFrame`] together with a table of header spans (see
//! `frame.rs`).
//!
//! Scanning: in the common case (ordinary `Key: Value` lines) each line end is found by a
//! vector search over the rest of the buffer (long haystack, so the search runs its vector
//! code even though lines are ~20 bytes), and the colon by a word-at-a-time search of the
//! line's first bytes; the header span is recorded in the same step. Unusual lines (no
//! `": "`, `Response: Follows` bodies, oversized messages, unfinished lines) go through the
//! general line-by-line path, which remembers how far it searched between reads.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::pbx::ami::frame::{AmiFrame, Field, Span};
use crate::pbx::ami::scan::{find_byte, word_at, LOW_BITS, WORD};

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

/// `b"Response"` as a little-endian word, lowercase, and bit 0x20 of every byte of a word.
const RESPONSE_LOWERCASE: u64 = u64::from_le_bytes(*b"response");
const LOWERCASE_BITS: u64 = LOW_BITS * 0x20;

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

    /// Writes the frame as [`AmiFrame::encode_into`] does (line breaks inside its fields
    /// become spaces, so an action cannot be ended early).
    fn encode(&mut self, frame: &'a AmiFrame, dst: &mut BytesMut) -> Result<(), AmiCodecError> {
        frame.encode_into(dst);
        Ok(())
    }
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
mod tests;
