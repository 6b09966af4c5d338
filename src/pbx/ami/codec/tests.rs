//! Tests of the AMI codec (and of the frames it decodes): the recorded sessions, reads
//! split anywhere, the legacy `Follows` output, size limits, EOF, the encoder.

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
                "../../../../tests/fixtures/asterisk/",
                $dir,
                "/",
                $name,
                ".ami"
            )),
            timing: include_str!(concat!(
                "../../../../tests/fixtures/asterisk/",
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
