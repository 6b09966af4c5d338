//! Tests of the ESL codec: the recorded sessions, reads split anywhere, size limits,
//! commands, and events read whole from their bodies.

use super::*;
use crate::pbx::esl::frame::{parse_event_plain, EslEvent};

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
    bytes.extend_from_slice(b"no colon here\n\nContent-Type: command/reply\nReply-Text: +OK\n\n");
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
