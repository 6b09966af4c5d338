//! A recorded PBX-to-client byte stream as both PBX simulators play it: the chunks a
//! client read, with the moment each was read, and playing them at that pace. How a
//! recording is cut down to a transcript is each protocol's own: `Transcript::from_recording`
//! in `ami.rs`, `transcript_from_recording` in `esl.rs`; both read the timing file here.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// A recorded server-to-client stream (AMI or event socket), reduced to what a fresh
/// client receives after its own login: the calls' events, with the recv() splits and
/// times they were read with.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub chunks: Vec<(Duration, Bytes)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("transcript has no greeting line")]
    NoGreeting,
    #[error("transcript has no Login answer")]
    NoLoginAnswer,
    #[error("timing line {line}: {text:?} is not `<seconds>\\t<offset>\\t<length>`")]
    BadTiming { line: usize, text: String },
}

impl Transcript {
    /// The bytes of `recording[start..end]`, in the reads a `*.timing` file lists
    /// (`<seconds>\t<offset>\t<length>` a line), each at its time.
    pub fn from_timing(
        recording: &[u8],
        timing: &str,
        start: usize,
        end: usize,
    ) -> Result<Transcript, TranscriptError> {
        let mut chunks = Vec::new();
        for (i, line) in timing.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || TranscriptError::BadTiming {
                line: i + 1,
                text: line.to_string(),
            };
            let mut parts = line.split('\t');
            let secs: f64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let offset: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let len: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let (from, to) = (offset.max(start), (offset + len).min(end));
            if from < to {
                chunks.push((
                    Duration::from_secs_f64(secs.max(0.0)),
                    Bytes::copy_from_slice(&recording[from..to]),
                ));
            }
        }
        Ok(Transcript { chunks })
    }

    /// The part read before `at` (seconds since the recording's connect) and the rest.
    pub fn split_at(&self, at: Duration) -> (Transcript, Transcript) {
        let (before, after): (Vec<_>, Vec<_>) =
            self.chunks.iter().cloned().partition(|(t, _)| *t < at);
        (Transcript { chunks: before }, Transcript { chunks: after })
    }

    /// The same chunks at the same times, read with a protocol's `decoder` and each
    /// whole item written anew by `write` (a recording edited item by item).
    pub fn map_items<D: Decoder>(
        &self,
        mut decoder: D,
        mut write: impl FnMut(D::Item, &mut BytesMut),
    ) -> Transcript {
        let mut buf = BytesMut::new();
        let chunks = self
            .chunks
            .iter()
            .map(|(at, chunk)| {
                let mut out = BytesMut::new();
                decode_each(&mut decoder, &mut buf, chunk, |item| write(item, &mut out));
                (*at, out.freeze())
            })
            .collect();
        Transcript { chunks }
    }

    /// The same bytes as one chunk at time zero.
    pub fn bytes(&self) -> Bytes {
        let mut all = BytesMut::new();
        for (_, c) in &self.chunks {
            all.extend_from_slice(c);
        }
        all.freeze()
    }
}

/// Hands a transcript's chunks to `send` at their recorded times, `speed` times faster.
pub async fn play(transcript: &Transcript, speed: f64, mut send: impl FnMut(Bytes)) {
    let start = tokio::time::Instant::now();
    let first = transcript
        .chunks
        .first()
        .map(|(t, _)| *t)
        .unwrap_or_default();
    for (at, chunk) in &transcript.chunks {
        let offset = at.saturating_sub(first).div_f64(speed.max(0.001));
        tokio::time::sleep_until(start + offset).await;
        send(chunk.clone());
    }
}

/// Feeds `bytes` to a protocol's decoder and hands over each whole item it yields; the
/// start of an item not whole yet waits in `buf` for the next bytes.
pub fn decode_each<D: Decoder>(
    decoder: &mut D,
    buf: &mut BytesMut,
    bytes: &[u8],
    mut each: impl FnMut(D::Item),
) {
    buf.extend_from_slice(bytes);
    while let Ok(Some(item)) = decoder.decode(buf) {
        each(item);
    }
}

/// Where `needle` first stands in `hay` at or after `from`.
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}
