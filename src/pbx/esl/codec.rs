//! FreeSWITCH Event Socket framing (mod_event_socket), pure: bytes in, messages out.
//!
//! A message is a block of `Key: Value` lines ended by a blank line, then exactly
//! `Content-Length` body bytes when the block names one. Events arrive as messages of
//! type `text/event-plain` whose body is itself a block of headers (values URL-encoded)
//! and, for some events, an inner `Content-Length` body: `frame::parse_event_plain` reads
//! it. Commands go the other way as one line ended by a blank line.
//!
//! Like the AMI codec: reads may split anywhere; a line without a colon is skipped and
//! the message kept; a header block or a body larger than the limit is skipped (the
//! next message is decoded) without holding it in memory.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::pbx::esl::frame::{as_is, block_end, content_length, parse_headers};
use crate::pbx::esl::frame::{EslCommand, EslMessage};

/// Largest header block or body kept (larger ones are skipped).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

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

#[cfg(test)]
mod tests;
