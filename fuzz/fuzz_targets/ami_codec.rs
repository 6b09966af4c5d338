//! AMI decoder on arbitrary bytes: `cargo +nightly fuzz run ami_codec`.
//!
//! The first input byte picks where the rest is split into two reads (and whether a greeting
//! line is expected). Checks: no panic, everything consumed at EOF, the split gives what one
//! read gives, and under a small size limit the buffer stays bounded.

#![no_main]

use bytes::BytesMut;
use callbridge::pbx::ami::codec::DEFAULT_MAX_FRAME_BYTES;
use callbridge::pbx::ami::{AmiCodec, AmiItem};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Size limit for the bounded-memory run.
const SMALL_LIMIT: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let greeting = control & 1 == 1;
    let cut = stream.len() * usize::from(control >> 1) / 127;
    let codec = |limit| {
        if greeting {
            AmiCodec::new()
        } else {
            AmiCodec::without_greeting()
        }
        .with_max_frame_bytes(limit)
    };

    let whole = decode(codec(DEFAULT_MAX_FRAME_BYTES), &[stream], usize::MAX);
    let split = decode(
        codec(DEFAULT_MAX_FRAME_BYTES),
        &[&stream[..cut], &stream[cut..]],
        usize::MAX,
    );
    // Under the size limit the read boundaries never matter.
    if stream.len() <= DEFAULT_MAX_FRAME_BYTES {
        assert_eq!(split, whole);
    }

    // Once `decode` has nothing more, the buffer holds at most a message up to the limit and
    // the `\r` that may start its final empty line (while skipping an oversized message, only
    // the 16-byte tail of an unfinished line).
    decode(
        codec(SMALL_LIMIT),
        &[&stream[..cut], &stream[cut..]],
        SMALL_LIMIT + 1,
    );
});

/// Feeds `reads` one at a time, then EOF; asserts the buffer never exceeds `bound` after a
/// `decode` returned nothing, and that EOF consumed everything.
fn decode(mut codec: AmiCodec, reads: &[&[u8]], bound: usize) -> Vec<AmiItem> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        while let Some(item) = codec.decode(&mut buf).expect("decoding never fails") {
            items.push(item);
        }
        assert!(buf.len() <= bound, "buffer {} > {bound}", buf.len());
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        items.push(item);
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
    items
}
