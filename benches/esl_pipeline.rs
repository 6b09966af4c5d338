//! The FreeSWITCH pipeline in memory: ESL codec + normalizer + call tracker over the
//! event mix of the recorded transcripts (tests/fixtures/esl), replicated into many
//! concurrent calls, on one core.
//!
//!     cargo bench --bench esl_pipeline
//!
//! Two mixes: everything `event plain ALL` delivered in the recordings (a third of it
//! CHANNEL_STATE and CODEC), and only the events callbridge subscribes to (what the
//! daemon receives). Target (issue 7): ≥ 500,000 ESL events/s.

use bytes::BytesMut;
use callbridge::call::{CallTracker, CampaignVariables, TrackerConfig};
use callbridge::pbx::esl::normalize::SUBSCRIPTION;
use callbridge::pbx::esl::{EslCodec, EslItem, EslNormalizer, PlainEvent};
use callbridge::time::Timestamp;
use callbridge::tools::sim::esl::{replica, transcript_from_recording};
use callbridge::tools::sim::transcript::Transcript;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use tokio_util::codec::Decoder;

/// The daemon's allocator (as in `main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDINGS: &[&str] = &[
    "inbound_answered",
    "inbound_missed",
    "ring_group_second_answers",
    "queue_agent_answers",
    "inbound_voicemail",
    "outbound_answered",
    "outbound_no_answer",
    "recording",
];

fn transcripts() -> Vec<Transcript> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/esl");
    RECORDINGS
        .iter()
        .map(|name| {
            let esl = std::fs::read(format!("{dir}/{name}.esl")).expect("fixture");
            let timing = std::fs::read_to_string(format!("{dir}/{name}.timing")).expect("timing");
            transcript_from_recording(&esl, &timing).expect("transcript")
        })
        .collect()
}

/// The messages of a byte stream, each as its bytes, keeping those `keep` accepts.
fn messages(bytes: &[u8], keep: &dyn Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut codec = EslCodec::new();
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        let used = bytes.len() - buf.len() - at;
        let raw = bytes[at..at + used].to_vec();
        at += used;
        if let EslItem::Message(m) = item {
            let name = PlainEvent::parse(&m.body).name().unwrap_or("").to_string();
            let subclass = PlainEvent::parse(&m.body)
                .get("Event-Subclass")
                .map(|s| s.into_owned())
                .unwrap_or_default();
            if keep(&name) || (!subclass.is_empty() && keep(&subclass)) {
                out.push(raw);
            }
        }
    }
    out
}

/// `calls` copies of the recorded calls (each with its own uuids), `concurrent` of them
/// in progress at any time: their messages interleave one message at a time.
fn event_stream(calls: usize, concurrent: usize, only_subscribed: bool) -> (Vec<u8>, usize) {
    let base = transcripts();
    let subscribed: Vec<&str> = SUBSCRIPTION.split_whitespace().collect();
    let keep = |name: &str| !only_subscribed || subscribed.contains(&name);
    // Every call is a replica of a recording with its own uuids (each ends with the
    // replica's number), split into its messages.
    let mut out = Vec::new();
    let mut frames = 0;
    let mut next_call = 0;
    let mut live: Vec<std::collections::VecDeque<Vec<u8>>> = Vec::new();
    let templates: Vec<Vec<Vec<u8>>> = (0..calls.max(base.len()))
        .map(|i| messages(&replica(&base[i % base.len()], i as u32).bytes(), &keep))
        .collect();
    while next_call < calls || !live.is_empty() {
        while live.len() < concurrent && next_call < calls {
            live.push(templates[next_call % templates.len()].clone().into());
            next_call += 1;
        }
        for call in live.iter_mut() {
            if let Some(msg) = call.pop_front() {
                out.extend_from_slice(&msg);
                frames += 1;
            }
        }
        live.retain(|c| !c.is_empty());
    }
    (out, frames)
}

/// The normalizer as the daemon makes it: reading the default campaign variables.
fn normalizer() -> EslNormalizer {
    EslNormalizer::with_variables(&CampaignVariables::default().names())
}

fn run_pipeline(mut buf: BytesMut) -> (usize, usize) {
    let mut codec = EslCodec::new();
    let mut normalizer = normalizer();
    let mut tracker = CallTracker::new(TrackerConfig::default());
    let mut events = Vec::new();
    let (mut messages, mut updates) = (0, 0);
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let EslItem::Message(m) = item {
            messages += 1;
            let _ = normalizer.normalize(&PlainEvent::parse(&m.body), Timestamp(0), &mut events);
            for ev in events.drain(..) {
                updates += tracker.apply(&ev).len();
            }
        }
    }
    (messages, updates)
}

fn pipeline(c: &mut Criterion) {
    for (label, only_subscribed) in [
        ("all events (event plain ALL)", false),
        ("subscribed events", true),
    ] {
        let (stream, frames) = event_stream(256, 128, only_subscribed);
        let mut group = c.benchmark_group(format!("esl, {label}"));
        group.throughput(Throughput::Elements(frames as u64));
        group.sample_size(20);
        let input = || BytesMut::from(&stream[..]);
        group.bench_function("codec+normalize+tracker, 128 concurrent calls", |b| {
            b.iter_batched(input, run_pipeline, BatchSize::LargeInput)
        });
        group.bench_function("codec+normalize", |b| {
            b.iter_batched(
                input,
                |mut buf| {
                    let mut codec = EslCodec::new();
                    let mut normalizer = normalizer();
                    let mut events = Vec::new();
                    while let Ok(Some(item)) = codec.decode(&mut buf) {
                        if let EslItem::Message(m) = item {
                            let _ = normalizer.normalize(
                                &PlainEvent::parse(&m.body),
                                Timestamp(0),
                                &mut events,
                            );
                            events.clear();
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function("codec only", |b| {
            b.iter_batched(
                input,
                |mut buf| {
                    let mut codec = EslCodec::new();
                    let mut n = 0;
                    while let Ok(Some(_)) = codec.decode(&mut buf) {
                        n += 1;
                    }
                    n
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, pipeline);

fn main() {
    // `PIPELINE_ONCE=1`: one pass and exit (for callgrind), printing what it saw;
    // with `PIPELINE_SUBSCRIBED=1` over the subscribed events only.
    if std::env::var_os("PIPELINE_ONCE").is_some() {
        let subscribed = std::env::var_os("PIPELINE_SUBSCRIBED").is_some();
        let (stream, frames) = event_stream(64, 64, subscribed);
        let (messages, updates) = run_pipeline(BytesMut::from(&stream[..]));
        eprintln!(
            "{frames} messages ({} bytes), {messages} decoded, {updates} call updates",
            stream.len()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
