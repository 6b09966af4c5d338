//! The AMI pipeline in memory: codec + normalize + tracker over the event mix of the
//! recorded transcripts, replicated into many concurrent calls. Also reports the
//! tracker's memory per live call and the codec's allocations per frame, counted by a
//! counting allocator.
//!
//!     cargo bench --bench pipeline
//!
//! Targets (issue 4): ≥ 1,500,000 events/s on one core; ≤ 4 KiB per live call; no
//! allocation per header in the codec.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use callbridge::call::{CallTracker, TrackerConfig};
use callbridge::pbx::ami::normalize::normalize;
use callbridge::pbx::ami::{AmiCodec, AmiItem};
use callbridge::time::Timestamp;
use callbridge::tools::sim::transcript::Transcript;
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use tokio_util::codec::Decoder;

/// Counts what the daemon's allocator (mimalloc, as in `main.rs`) hands out.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size.wrapping_sub(layout.size()), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RECORDINGS: &[&str] = &[
    "iax2/inbound_answered",
    "iax2/inbound_missed",
    "iax2/ring_group_second_answers",
    "iax2/queue_agent_answers",
    "iax2/inbound_voicemail",
    "iax2/outbound_answered",
    "iax2/outbound_no_answer",
    "iax2/recording",
    "iax2/attended_transfer",
    "local/inbound_answered",
    "local/queue_agent_answers",
];

fn transcripts() -> Vec<Transcript> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/asterisk");
    RECORDINGS
        .iter()
        .map(|name| {
            let ami = std::fs::read(format!("{dir}/{name}.ami")).expect("fixture");
            let timing = std::fs::read_to_string(format!("{dir}/{name}.timing")).expect("timing");
            Transcript::from_recording(&ami, &timing).expect("transcript")
        })
        .collect()
}

/// `calls` copies of the recorded calls (each with its own ids), `concurrent` of them
/// in progress at any time: their messages interleave one message at a time.
fn event_stream(calls: usize, concurrent: usize) -> (Vec<u8>, usize) {
    let base = transcripts();
    let split = |t: &Transcript| -> Vec<Vec<u8>> {
        let bytes = t.bytes();
        bytes
            .split_inclusive(|&b| b == b'\n')
            .fold(
                (Vec::new(), Vec::new()),
                |(mut msgs, mut cur): (Vec<Vec<u8>>, Vec<u8>), line| {
                    cur.extend_from_slice(line);
                    if line == b"\r\n" {
                        msgs.push(std::mem::take(&mut cur));
                    }
                    (msgs, cur)
                },
            )
            .0
    };
    let mut out = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
    let mut frames = 0;
    let mut next_call = 0;
    let mut live: Vec<std::collections::VecDeque<Vec<u8>>> = Vec::new();
    while next_call < calls || !live.is_empty() {
        while live.len() < concurrent && next_call < calls {
            let t = base[next_call % base.len()].replica(next_call as u32);
            live.push(split(&t).into());
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

fn run_pipeline(mut buf: BytesMut) -> (usize, usize) {
    let mut codec = AmiCodec::new();
    let mut tracker = CallTracker::new(TrackerConfig::default());
    let (mut events, mut ended) = (0, 0);
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let AmiItem::Frame(frame) = item {
            events += 1;
            if let Ok(ev) = normalize(&frame, Timestamp(0)) {
                ended += tracker.apply(&ev).len();
            }
        }
    }
    (events, ended)
}

fn pipeline(c: &mut Criterion) {
    let (stream, frames) = event_stream(2_000, 1_000);
    let mut group = c.benchmark_group("ami");
    group.throughput(Throughput::Elements(frames as u64));
    group.sample_size(20);
    // The copy of the input into a read buffer is set-up, not measured.
    let input = || BytesMut::from(&stream[..]);
    group.bench_function("codec+normalize+tracker, 1000 concurrent calls", |b| {
        b.iter_batched(input, run_pipeline, BatchSize::LargeInput)
    });
    group.bench_function("codec only", |b| {
        b.iter_batched(
            input,
            |mut buf| {
                let mut codec = AmiCodec::new();
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

/// Memory per live call: 10,000 calls all in progress (each recording cut at its first
/// third), bytes held by the tracker divided by live calls.
fn memory_report() {
    let base = transcripts();
    let mut stream = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
    for i in 0..10_000u32 {
        let t = base[i as usize % base.len()].replica(i);
        let bytes = t.bytes();
        // The first third of each call: ringing or talking, not ended.
        let cut = bytes.len() / 3;
        let end = bytes[cut..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| cut + p + 4)
            .unwrap_or(bytes.len());
        stream.extend_from_slice(&bytes[..end]);
    }
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(&stream[..]);
    let mut events = Vec::new();
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let AmiItem::Frame(frame) = item {
            if let Ok(ev) = normalize(&frame, Timestamp(0)) {
                events.push(ev);
            }
        }
    }
    drop(buf);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut tracker = CallTracker::new(TrackerConfig::default());
    for ev in &events {
        let _ = tracker.apply(ev);
    }
    let _ = tracker.take_dirty();
    let held = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
    let live = tracker.live_calls().max(1);
    eprintln!(
        "tracker memory: {} live calls, {} live channels, {} bytes = {} bytes per live call (target ≤ 4096)",
        tracker.live_calls(),
        tracker.live_channels(),
        held,
        held / live
    );

    // Allocations the codec makes per frame.
    let (stream, frames) = event_stream(200, 100);
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(&stream[..]);
    let mut headers = 0usize;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    while let Ok(Some(item)) = codec.decode(&mut buf) {
        if let AmiItem::Frame(frame) = item {
            headers += frame.headers().len();
        }
    }
    let made = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    eprintln!(
        "codec: {frames} frames, {headers} headers, {made} allocations = {:.2} per frame, {:.3} per header",
        made as f64 / frames as f64,
        made as f64 / headers.max(1) as f64
    );
}

criterion_group!(benches, pipeline);

fn main() {
    // `PIPELINE_ONCE=1`: one pass over a small stream and exit, for
    // `valgrind --tool=callgrind` (instruction counts per function).
    if std::env::var_os("PIPELINE_ONCE").is_some() {
        let (stream, frames) = event_stream(200, 100);
        let (events, updates) = run_pipeline(BytesMut::from(&stream[..]));
        eprintln!("{frames} frames, {events} decoded, {updates} call updates");
        return;
    }
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
