//! `callbridge load`: an office's worth of calls against a real `callbridge run` process,
//! measured from the wire. The AMI simulator plays the office mix (`load::mix`) at the
//! given rate and concurrency; the retailCRM simulator answers with a realistic delay
//! and tells when each pop-up and each call-history record arrived. Ring → pop-up is
//! timed from the moment the ringing event is handed to the PBX socket to the moment
//! the pop-up request reaches the CRM; hang-up → history likewise. The daemon's CPU time
//! and memory are read from `/proc`. At the end every call's CRM effects are checked.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use serde::Serialize;

use crate::config::PbxKind;
use crate::tools::load::mix::{self, CallCopy, Template};
use crate::tools::sim::ami::{AmiSim, AmiSimOptions};
use crate::tools::sim::esl::{EslSim, EslSimOptions};
use crate::tools::sim::retailcrm::{Observed, RateLimit, RetailCrmSim, SimOptions};

/// The AMI login the spawned daemon uses against the simulator.
const AMI_USER: &str = "callbridge";
const AMI_SECRET: &str = "load-run-secret";
const PBX_NAME: &str = "load";

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which PBX is simulated: Asterisk (AMI) or FreeSWITCH (event socket).
    pub pbx: PbxKind,
    pub calls: usize,
    pub concurrent: usize,
    /// New calls per second.
    pub rate: f64,
    /// Stop starting calls after this long.
    pub duration: Option<Duration>,
    /// How much faster than recorded the calls go; `None`: as fast as needed for
    /// `concurrent` calls at `rate` (never slower than recorded).
    pub speed: Option<f64>,
    pub crm_latency: Duration,
    /// `None`: no limit on either side.
    pub crm_rate_limit: Option<RateLimit>,
    pub daemon: Daemon,
    /// Where the simulators listen (port 0: any free port).
    pub ami_listen: SocketAddr,
    pub crm_listen: SocketAddr,
    /// How long to wait for the last calls' records after the last call ended.
    pub drain: Duration,
    /// A progress bar (when on a terminal) or a line every few seconds.
    pub progress: bool,
}

/// The daemon under load.
#[derive(Debug, Clone)]
pub enum Daemon {
    /// This binary's `run`, with a generated configuration; `store` is its `[store] url`
    /// (`None`: SQLite in a temporary directory).
    Spawn { store: Option<String> },
    /// A `callbridge run` already running with this pid, configured for the simulators'
    /// addresses (see `callbridge load --help`).
    Pid(u32),
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: usize,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>) -> Percentiles {
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1]
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: ms[ms.len() - 1],
            count: ms.len(),
        }
    }
}

/// The figures of a run (`--json` writes this).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub calls: usize,
    pub popup_latency_ms: Percentiles,
    pub history_latency_ms: Percentiles,
    pub wrong_effects: usize,
    pub missing_effects: usize,
    /// Calls whose history record came more than `LATE_AFTER` later than the CRM's rate
    /// limit forced (see [`lateness`]).
    pub late_histories: usize,
    /// The most any call's history record came later than the rate limit forced.
    pub late_history_worst_ms: f64,
    /// The first few effects that were wrong or missing, said in words.
    pub effect_problems: Vec<String>,
    pub events: usize,
    pub events_per_sec: f64,
    pub calls_per_sec: f64,
    pub concurrent_peak: usize,
    pub play_secs: f64,
    pub speed: f64,
    pub daemon_cpu_s: f64,
    pub daemon_rss_peak_bytes: u64,
    pub daemon_rss_idle_bytes: u64,
    pub rss_per_live_call_bytes: u64,
    pub crm_latency_ms: f64,
    pub crm_rate_limit: String,
    /// Requests the CRM took (past its rate limit), by method and path.
    pub crm_requests: std::collections::BTreeMap<String, usize>,
    pub mix: Vec<MixShare>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MixShare {
    pub kind: &'static str,
    pub calls: usize,
}

/// The simulated PBX's socket.
enum Wire {
    Ami(AmiSim),
    Esl(EslSim),
}

impl Wire {
    fn send_raw(&self, bytes: bytes::Bytes) {
        match self {
            Wire::Ami(s) => s.send_raw(bytes),
            Wire::Esl(s) => s.send_raw(bytes),
        };
    }

    async fn wait_for_logins(&self, n: u64, within: Duration) -> bool {
        match self {
            Wire::Ami(s) => s.wait_for_logins(n, within).await,
            Wire::Esl(s) => s.wait_for_logins(n, within).await,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Wire::Ami(s) => s.addr(),
            Wire::Esl(s) => s.addr(),
        }
    }

    fn stop(&self) {
        match self {
            Wire::Ami(s) => s.stop(),
            Wire::Esl(s) => s.stop(),
        }
    }

    /// The marker every event of this protocol starts its name with.
    fn event_marker(&self) -> &'static [u8] {
        match self {
            Wire::Ami(_) => b"Event: ",
            Wire::Esl(_) => b"Event-Name: ",
        }
    }
}

/// What is known of one call during the run.
#[derive(Debug, Clone, Default)]
struct CallTimes {
    template: usize,
    number: String,
    ring_written: Option<Instant>,
    hangup_written: Option<Instant>,
    popup: Option<Instant>,
    history: Option<Instant>,
    history_result: Option<String>,
    histories: u32,
}

type Shared = Arc<Mutex<Vec<CallTimes>>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Vec<CallTimes>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the load and returns its figures.
pub async fn run(opts: LoadOptions) -> anyhow::Result<LoadReport> {
    let templates = mix::office_mix(opts.pbx).context("building the call mix")?;
    // Which calls, how long each, when each starts.
    let mut kinds: Vec<usize> = (0..opts.calls).map(|n| mix::pick(&templates, n)).collect();
    let mean_len = kinds
        .iter()
        .map(|k| templates[*k].length().as_secs_f64())
        .sum::<f64>()
        / kinds.len().max(1) as f64;
    let speed = opts.speed.unwrap_or_else(|| {
        let wanted = opts.concurrent as f64 / opts.rate.max(0.001);
        (mean_len / wanted).max(1.0)
    });
    let lengths: Vec<Duration> = kinds
        .iter()
        .map(|k| templates[*k].length().div_f64(speed))
        .collect();
    let mut starts = mix::schedule(&lengths, opts.rate, opts.concurrent);
    if let Some(limit) = opts.duration {
        let n = starts.iter().take_while(|s| **s < limit).count();
        starts.truncate(n);
        kinds.truncate(n);
    }
    let calls = starts.len();
    if calls == 0 {
        bail!("no call to play: --calls 0 or a --duration shorter than the first call's start");
    }

    // The simulators.
    let ami = match opts.pbx {
        PbxKind::Asterisk => Wire::Ami(
            AmiSim::start_on(
                opts.ami_listen,
                AmiSimOptions {
                    username: AMI_USER.into(),
                    secret: AMI_SECRET.into(),
                    answer_pings: true,
                },
            )
            .await
            .with_context(|| format!("starting the AMI simulator on {}", opts.ami_listen))?,
        ),
        PbxKind::FreeSwitch => Wire::Esl(
            EslSim::start_on(
                opts.ami_listen,
                EslSimOptions {
                    password: AMI_SECRET.into(),
                },
            )
            .await
            .with_context(|| {
                format!("starting the event socket simulator on {}", opts.ami_listen)
            })?,
        ),
    };
    let crm = RetailCrmSim::start_on(
        opts.crm_listen,
        SimOptions {
            rate_limit: opts.crm_rate_limit,
            latency: (!opts.crm_latency.is_zero()).then_some(opts.crm_latency),
            ..SimOptions::default()
        },
    )
    .await
    .with_context(|| format!("starting the retailCRM simulator on {}", opts.crm_listen))?;
    let observed = crm.observe();

    // The daemon.
    let workdir = tempfile::tempdir().context("a temporary directory for the run")?;
    let mut spawned = None;
    let pid = match &opts.daemon {
        Daemon::Spawn { store } => {
            let child = spawn_daemon(&opts, store.as_deref(), workdir.path(), &ami, &crm)?;
            let pid = child.id();
            spawned = Some(child);
            pid
        }
        Daemon::Pid(pid) => {
            eprintln!(
                "waiting for callbridge (pid {pid}) to log in to the {} simulator at {} as {AMI_USER:?} / {AMI_SECRET:?}, CRM at {} key {:?}",
                opts.pbx,
                ami.addr(),
                crm.base_url(),
                crate::tools::sim::retailcrm::DEFAULT_API_KEY
            );
            *pid
        }
    };
    let log_path = workdir.path().join("daemon.log");
    let ready = ami.wait_for_logins(1, Duration::from_secs(60)).await;
    if !ready {
        if let Some(mut child) = spawned.take() {
            let _ = child.kill();
        }
        bail!(
            "the daemon did not log in to the PBX simulator within 60 s; its log: {}",
            tail(&log_path)
        );
    }
    // Let it read the CRM's managers and settle before measuring its idle memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_stats(pid).context("reading the daemon's /proc entry")?;

    let shared: Shared = Arc::new(Mutex::new(
        kinds
            .iter()
            .enumerate()
            .map(|(n, k)| CallTimes {
                template: *k,
                number: mix::national_number(n),
                ..CallTimes::default()
            })
            .collect(),
    ));
    let live = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let requests: Arc<Mutex<RequestTimes>> = Arc::default();
    let collector = tokio::spawn(collect(observed, shared.clone(), requests.clone()));
    let sampler_stop = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample(pid, live.clone(), sampler_stop.clone()));
    let progress = tokio::spawn(show_progress(
        opts.progress,
        calls,
        ended.clone(),
        live.clone(),
        shared.clone(),
        sampler_stop.clone(),
    ));

    // Play.
    let started = Instant::now();
    let events = play(
        &ami, &templates, &kinds, &starts, speed, &shared, &live, &ended,
    )
    .await;
    let play_secs = started.elapsed().as_secs_f64();

    // Drain: every call's history, or the drain time is over.
    let drain_until = Instant::now() + opts.drain;
    while Instant::now() < drain_until {
        if lock(&shared).iter().all(|c| c.history.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = proc_stats(pid).unwrap_or(idle);
    sampler_stop.cancel();
    let samples = sampler.await.unwrap_or_default();
    let _ = progress.await;
    if let Some(child) = spawned.as_mut() {
        stop_daemon(child);
    }
    collector.abort();

    // Figures.
    let calls_state = lock(&shared).clone();
    let state = crm.state();
    ami.stop();
    crm.shutdown();
    let mut popups = Vec::new();
    let mut histories = Vec::new();
    for c in &calls_state {
        if let (Some(ring), Some(popup)) = (c.ring_written, c.popup) {
            popups.push(popup.saturating_duration_since(ring).as_secs_f64() * 1000.0);
        }
        if let (Some(hangup), Some(history)) = (c.hangup_written, c.history) {
            histories.push(history.saturating_duration_since(hangup).as_secs_f64() * 1000.0);
        }
    }
    let customers = customers_by_number(&state.customers);
    let mut effects = check_effects(&templates, &calls_state, &customers);
    if effects.wrong + effects.missing > 0 && spawned.is_some() {
        // The daemon's log (and a SQLite store in the same directory) stay for a look.
        let kept = workdir.keep();
        effects.examples.push(format!(
            "the daemon's log is kept: {}",
            kept.join("daemon.log").display()
        ));
    }
    let late = {
        let mut r = requests.lock().unwrap_or_else(|p| p.into_inner());
        r.general.sort();
        r.telephony.sort();
        let waits: Vec<HistoryWait> = calls_state
            .iter()
            .filter_map(|c| {
                Some(HistoryWait {
                    kind: c.template,
                    hangup: c.hangup_written?,
                    history: c.history?,
                })
            })
            .collect();
        (
            lateness(&waits, &r.general, &r.telephony, opts.crm_rate_limit),
            std::mem::take(&mut r.counts),
        )
    };
    let (late, crm_requests) = late;
    let (peak_live, rss_at_peak) = samples
        .iter()
        .max_by_key(|s| (s.live, s.rss))
        .map(|s| (s.live, s.rss))
        .unwrap_or((0, idle.rss));
    let rss_peak = samples
        .iter()
        .map(|s| s.hwm)
        .max()
        .unwrap_or(last.hwm)
        .max(last.hwm);
    let mut mix_counts = vec![0usize; templates.len()];
    for k in &kinds {
        mix_counts[*k] += 1;
    }
    Ok(LoadReport {
        calls,
        popup_latency_ms: Percentiles::of(popups),
        history_latency_ms: Percentiles::of(histories),
        wrong_effects: effects.wrong,
        missing_effects: effects.missing,
        late_histories: late.late,
        late_history_worst_ms: late.worst.as_secs_f64() * 1000.0,
        effect_problems: effects.examples,
        events,
        events_per_sec: events as f64 / play_secs.max(0.001),
        calls_per_sec: calls as f64 / play_secs.max(0.001),
        concurrent_peak: peak_live,
        play_secs,
        speed,
        daemon_cpu_s: last.cpu.saturating_sub(idle.cpu).as_secs_f64(),
        daemon_rss_peak_bytes: rss_peak,
        daemon_rss_idle_bytes: idle.rss,
        rss_per_live_call_bytes: if peak_live > 0 {
            rss_at_peak.saturating_sub(idle.rss) / peak_live as u64
        } else {
            0
        },
        crm_latency_ms: opts.crm_latency.as_secs_f64() * 1000.0,
        crm_rate_limit: match opts.crm_rate_limit {
            None => "none".into(),
            Some(l) => format!("{}/s, telephony {}/s", l.per_sec, l.telephony_per_sec),
        },
        crm_requests,
        mix: templates
            .iter()
            .zip(mix_counts)
            .map(|(t, calls)| MixShare {
                kind: t.name,
                calls,
            })
            .collect(),
    })
}

/// Writes the calls' chunks to the PBX socket at their times; returns the events sent.
#[allow(clippy::too_many_arguments)]
async fn play(
    ami: &Wire,
    templates: &[Template],
    kinds: &[usize],
    starts: &[std::time::Duration],
    speed: f64,
    shared: &Shared,
    live: &AtomicUsize,
    ended: &AtomicUsize,
) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    /// Calls are built this long before they start (building one costs a copy of it).
    const LOOKAHEAD: Duration = Duration::from_millis(200);
    let t0 = tokio::time::Instant::now();
    let mut heap: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    let mut copies: HashMap<usize, (CallCopy, usize)> = HashMap::new();
    let mut next_call = 0;
    let mut events = 0;
    loop {
        let now = t0.elapsed();
        while next_call < starts.len() && starts[next_call] <= now + LOOKAHEAD {
            let n = next_call;
            let copy = templates[kinds[n]].copy(n, &mix::national_number(n));
            let first = starts[n] + copy.chunks[0].0.div_f64(speed);
            heap.push(Reverse((first, n)));
            copies.insert(n, (copy, 0));
            next_call += 1;
        }
        let mut batch = BytesMut::new();
        let mut rang = Vec::new();
        let mut hung_up = Vec::new();
        while let Some(Reverse((due, n))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            let Some((copy, next)) = copies.get_mut(&n) else {
                continue;
            };
            let (_, bytes) = &copy.chunks[*next];
            if *next == 0 {
                live.fetch_add(1, Ordering::Relaxed);
            }
            events += count_events(bytes, ami.event_marker());
            batch.extend_from_slice(bytes);
            if copy.ring_chunk == Some(*next) {
                rang.push(n);
            }
            if copy.hangup_chunk == *next {
                hung_up.push(n);
            }
            *next += 1;
            if let Some((at, _)) = copy.chunks.get(*next) {
                heap.push(Reverse((starts[n] + at.div_f64(speed), n)));
            } else {
                copies.remove(&n);
                live.fetch_sub(1, Ordering::Relaxed);
                ended.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !batch.is_empty() {
            let at = Instant::now();
            ami.send_raw(batch.freeze());
            if !rang.is_empty() || !hung_up.is_empty() {
                let mut calls = lock(shared);
                for n in rang {
                    calls[n].ring_written.get_or_insert(at);
                }
                for n in hung_up {
                    calls[n].hangup_written = Some(at);
                }
            }
        }
        let next_due = heap
            .peek()
            .map(|Reverse((due, _))| *due)
            .into_iter()
            .chain(starts.get(next_call).map(|s| s.saturating_sub(LOOKAHEAD)))
            .min();
        match next_due {
            Some(due) => tokio::time::sleep_until(t0 + due).await,
            None => break,
        }
    }
    events
}

/// One call's wait for its history record.
#[derive(Debug, Clone, Copy)]
struct HistoryWait {
    /// Which kind of call (the mix's template).
    kind: usize,
    hangup: Instant,
    history: Instant,
}

/// A history record this much later than forced counts as late.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Lateness {
    late: usize,
    worst: Duration,
}

/// How much later than forced each call's history came. What is forced: the call's own
/// round trips (the fastest call of its kind in the run took that long, so no call of
/// the kind can be faster), or the time the CRM's rate limit needed to let through the
/// requests it took while the call waited (on either budget), whichever is longer. Any
/// wait beyond both is time the CRM's budget had room and the call was not sent: late
/// beyond what the limit forces when more than `LATE_AFTER`.
fn lateness(
    waits: &[HistoryWait],
    general: &[Instant],
    telephony: &[Instant],
    limit: Option<RateLimit>,
) -> Lateness {
    let mut floor: HashMap<usize, Duration> = HashMap::new();
    for w in waits {
        let took = w.history.saturating_duration_since(w.hangup);
        floor
            .entry(w.kind)
            .and_modify(|f| *f = (*f).min(took))
            .or_insert(took);
    }
    let within = |times: &[Instant], from: Instant, to: Instant| {
        times.partition_point(|t| *t <= to) - times.partition_point(|t| *t < from)
    };
    let mut out = Lateness::default();
    for w in waits {
        let took = w.history.saturating_duration_since(w.hangup);
        let budget = match limit {
            Some(l) => Duration::from_secs_f64(
                (within(general, w.hangup, w.history) as f64 / f64::from(l.per_sec.max(1))).max(
                    within(telephony, w.hangup, w.history) as f64
                        / f64::from(l.telephony_per_sec.max(1)),
                ),
            ),
            None => Duration::ZERO,
        };
        let forced = floor.get(&w.kind).copied().unwrap_or_default().max(budget);
        let later = took.saturating_sub(forced);
        out.worst = out.worst.max(later);
        if later > LATE_AFTER {
            out.late += 1;
        }
    }
    out
}

fn count_events(bytes: &[u8], marker: &[u8]) -> usize {
    bytes.windows(marker.len()).filter(|w| *w == marker).count()
}

/// When the CRM let each request through, by rate-limit budget.
#[derive(Debug, Default)]
struct RequestTimes {
    general: Vec<Instant>,
    telephony: Vec<Instant>,
    /// By method and path.
    counts: std::collections::BTreeMap<String, usize>,
}

/// Records when each pop-up and each history record reached the CRM, and when every
/// request did.
async fn collect(
    mut observed: tokio::sync::mpsc::UnboundedReceiver<Observed>,
    shared: Shared,
    requests: Arc<Mutex<RequestTimes>>,
) {
    let index = |external_id: &Option<String>| -> Option<usize> {
        let id = external_id.as_deref()?;
        id.strip_prefix(&format!("cb-{PBX_NAME}-"))?
            .rsplit_once('-')?
            .1
            .parse()
            .ok()
    };
    while let Some(o) = observed.recv().await {
        if let Observed::Request {
            arrived,
            telephony,
            request,
        } = o
        {
            let mut r = requests.lock().unwrap_or_else(|p| p.into_inner());
            match telephony {
                true => r.telephony.push(arrived),
                false => r.general.push(arrived),
            }
            *r.counts.entry(request).or_default() += 1;
            continue;
        }
        let mut calls = lock(&shared);
        match o {
            Observed::CallEvent {
                arrived,
                r#type,
                call_external_id,
            } if r#type == "in" => {
                if let Some(c) = index(&call_external_id).and_then(|n| calls.get_mut(n)) {
                    c.popup.get_or_insert(arrived);
                }
            }
            Observed::CallEvent { .. } => {}
            Observed::CallUploaded {
                arrived,
                external_id,
                result,
            } => {
                if let Some(c) = index(&external_id).and_then(|n| calls.get_mut(n)) {
                    c.history.get_or_insert(arrived);
                    c.history_result = result;
                    c.histories += 1;
                }
            }
            Observed::Request { .. } => {}
        }
    }
}

/// The daemon's resources at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    cpu: Duration,
    rss: u64,
    hwm: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    live: usize,
    rss: u64,
    hwm: u64,
}

/// `/proc/<pid>`: user + system CPU time, resident memory now and at its peak.
fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the command name (which may hold spaces): state is the first.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after the name.
    let cpu = Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(ProcStats {
        cpu,
        rss: kb("VmRSS:"),
        hwm: kb("VmHWM:"),
    })
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    100.0
}

async fn sample(
    pid: u32,
    live: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = every.tick() => {
                if let Ok(s) = proc_stats(pid) {
                    samples.push(Sample { live: live.load(Ordering::Relaxed), rss: s.rss, hwm: s.hwm });
                }
            }
        }
    }
}

async fn show_progress(
    enabled: bool,
    calls: usize,
    ended: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    shared: Shared,
    stop: tokio_util::sync::CancellationToken,
) {
    if !enabled {
        return;
    }
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = indicatif::ProgressBar::new(calls as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:32}] {pos}/{len} calls ended · {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut every = tokio::time::interval(if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    });
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = every.tick() => false,
        };
        let (popups, histories) = {
            let calls = lock(&shared);
            (
                calls.iter().filter(|c| c.popup.is_some()).count(),
                calls.iter().filter(|c| c.history.is_some()).count(),
            )
        };
        let done = ended.load(Ordering::Relaxed);
        let msg = format!(
            "{} live · {popups} pop-ups · {histories} histories",
            live.load(Ordering::Relaxed)
        );
        match &bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(msg);
            }
            None => eprintln!(
                "load: {:>5.0}s  {done}/{calls} calls ended · {msg}",
                started.elapsed().as_secs_f64()
            ),
        }
        if stopping {
            if let Some(bar) = bar {
                bar.finish();
            }
            return;
        }
    }
}

fn spawn_daemon(
    opts: &LoadOptions,
    store: Option<&str>,
    dir: &std::path::Path,
    ami: &Wire,
    crm: &RetailCrmSim,
) -> anyhow::Result<Child> {
    let store = store
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("load.db").display()));
    // The daemon keeps to the CRM's limit as it would to the real one's.
    let (general, telephony) = match opts.crm_rate_limit {
        Some(l) => (l.per_sec, l.telephony_per_sec),
        None => (100_000, 100_000),
    };
    let config = format!(
        r#"[store]
url = "{store}"
[http]
listen = "127.0.0.1:0"
link_secret = "load-run-link-secret"
[[pbx]]
name = "{PBX_NAME}"
host = "127.0.0.1"
port = {ami_port}
secret = "{AMI_SECRET}"
stale_call_timeout = "1h"
{login}
[crm]
kind = "retailcrm"
url = "{crm_url}"
api_key = "{key}"
rate_limit_per_sec = {general}
telephony_rate_limit_per_sec = {telephony}
[employees]
senior = [7]
[employees.extensions]
"101" = 3
"102" = 4
[log]
level = "warn"
"#,
        ami_port = ami.addr().port(),
        login = match opts.pbx {
            PbxKind::Asterisk => format!("kind = \"asterisk\"\nusername = \"{AMI_USER}\""),
            PbxKind::FreeSwitch => "kind = \"freeswitch\"".to_string(),
        },
        crm_url = crm.base_url(),
        key = crate::tools::sim::retailcrm::DEFAULT_API_KEY,
    );
    let path = dir.join("callbridge.toml");
    std::fs::write(&path, config).context("writing the daemon's configuration")?;
    let log = std::fs::File::create(dir.join("daemon.log")).context("the daemon's log file")?;
    let exe = std::env::current_exe().context("finding this binary")?;
    Command::new(exe)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting `callbridge run`")
}

/// SIGTERM, as systemd stops it; SIGKILL after 20 s.
fn stop_daemon(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Customers per 10-digit national number (the last ten digits of each phone).
fn customers_by_number(
    customers: &[crate::tools::sim::retailcrm::Customer],
) -> HashMap<String, usize> {
    let mut by_number: HashMap<String, usize> = HashMap::new();
    for c in customers {
        let mut numbers: Vec<String> = c
            .phones
            .iter()
            .map(|p| {
                let digits: String = p.number.chars().filter(char::is_ascii_digit).collect();
                digits[digits.len().saturating_sub(10)..].to_string()
            })
            .collect();
        numbers.sort();
        numbers.dedup();
        for n in numbers {
            *by_number.entry(n).or_default() += 1;
        }
    }
    by_number
}

struct Effects {
    wrong: usize,
    missing: usize,
    examples: Vec<String>,
}

/// Each call's CRM effects as its kind needs them: a pop-up for an inbound call, one
/// history record with the right result, one customer for a new inbound caller and
/// none for an outbound call to an unknown number.
fn check_effects(
    templates: &[Template],
    calls: &[CallTimes],
    customers: &HashMap<String, usize>,
) -> Effects {
    let mut e = Effects {
        wrong: 0,
        missing: 0,
        examples: Vec::new(),
    };
    let note = |e: &mut Effects, wrong: bool, text: String| {
        if wrong {
            e.wrong += 1;
        } else {
            e.missing += 1;
        }
        if e.examples.len() < 10 {
            e.examples.push(text);
        }
    };
    for (n, c) in calls.iter().enumerate() {
        let t = &templates[c.template];
        if t.inbound && c.popup.is_none() {
            note(&mut e, false, format!("call {n} ({}): no pop-up", t.name));
        }
        match (&c.history_result, c.histories) {
            (_, 0) => note(
                &mut e,
                false,
                format!("call {n} ({}): no history record", t.name),
            ),
            (Some(r), 1) if r == t.result => {}
            (r, k) => note(
                &mut e,
                true,
                format!(
                    "call {n} ({}): history {k} record(s), result {r:?}, expected one {:?}",
                    t.name, t.result
                ),
            ),
        }
        let found = customers.get(&c.number).copied().unwrap_or(0);
        match (t.inbound, found) {
            (true, 1) | (false, 0) => {}
            (true, 0) => note(&mut e, false, format!("call {n} ({}): no customer", t.name)),
            (_, k) => note(
                &mut e,
                true,
                format!("call {n} ({}): {k} customers for {}", t.name, c.number),
            ),
        }
    }
    e
}

impl LoadReport {
    /// The figures for a person.
    pub fn text(&self) -> String {
        let p = |l: &Percentiles| {
            format!(
                "p50 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms ({} calls)",
                l.p50, l.p99, l.p999, l.max, l.count
            )
        };
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mut out = String::new();
        out.push_str(&format!(
            "calls: {} in {:.1} s ({:.1} calls/s, peak {} in progress, played {:.2}x faster than recorded)\n",
            self.calls, self.play_secs, self.calls_per_sec, self.concurrent_peak, self.speed
        ));
        out.push_str(&format!(
            "events: {} ({:.0} events/s)\n",
            self.events, self.events_per_sec
        ));
        out.push_str(&format!(
            "ring → pop-up:     {}\n",
            p(&self.popup_latency_ms)
        ));
        out.push_str(&format!(
            "hang-up → history: {}\n",
            p(&self.history_latency_ms)
        ));
        out.push_str(&format!(
            "late histories:    {} calls more than {} s later than the CRM's rate limit forced (worst {:.0} ms later)\n",
            self.late_histories,
            LATE_AFTER.as_secs(),
            self.late_history_worst_ms
        ));
        out.push_str(&format!(
            "CRM: answers after {:.0} ms, rate limit {}\n",
            self.crm_latency_ms, self.crm_rate_limit
        ));
        let requests: usize = self.crm_requests.values().sum();
        out.push_str(&format!(
            "CRM requests: {requests} ({:.1} per call)\n",
            requests as f64 / self.calls.max(1) as f64
        ));
        out.push_str(&format!(
            "daemon: {:.2} s CPU, RSS peak {:.1} MiB (idle {:.1} MiB), {:.1} KiB per live call\n",
            self.daemon_cpu_s,
            mib(self.daemon_rss_peak_bytes),
            mib(self.daemon_rss_idle_bytes),
            self.rss_per_live_call_bytes as f64 / 1024.0
        ));
        out.push_str(&format!(
            "effects: {} wrong, {} missing\n",
            self.wrong_effects, self.missing_effects
        ));
        for problem in &self.effect_problems {
            out.push_str(&format!("  {problem}\n"));
        }
        out
    }
}

/// `200/s`, `200` or `12000/min` → calls per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, per) = match s.split_once('/') {
        Some((n, unit)) => (
            n,
            match unit.trim() {
                "s" | "sec" => 1.0,
                "min" | "m" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("unknown unit {other:?}; use /s, /min or /h")),
            },
        ),
        None => (s, 1.0),
    };
    match n.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v / per),
        _ => Err(format!("expected a rate like 200/s, got {s:?}")),
    }
}

/// A CRM rate limit given on the command line (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmLimit(pub Option<RateLimit>);

/// `none`, `real` (retailCRM's 10/s and 40/s for telephony) or `G/T` (per second).
pub fn parse_rate_limit(s: &str) -> Result<CrmLimit, String> {
    parse_limit(s).map(CrmLimit)
}

fn parse_limit(s: &str) -> Result<Option<RateLimit>, String> {
    match s.trim() {
        "none" => Ok(None),
        "real" => Ok(Some(RateLimit::REAL)),
        other => {
            let (g, t) = other.split_once('/').unwrap_or((other, other));
            match (g.trim().parse::<u32>(), t.trim().parse::<u32>()) {
                (Ok(g), Ok(t)) if g > 0 && t > 0 => Ok(Some(RateLimit {
                    per_sec: g,
                    telephony_per_sec: t,
                })),
                _ => Err(format!(
                    "expected none, real or GENERAL/TELEPHONY per second like 10/40, got {s:?}"
                )),
            }
        }
    }
}

/// Whether to show progress: always, as a bar on a terminal or lines otherwise.
pub fn default_progress() -> bool {
    true
}

/// The path `--json` writes to, created with its figures.
pub fn write_json(report: &LoadReport, path: &PathBuf) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_rank() {
        let p = Percentiles::of((1..=1000).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }

    #[test]
    fn a_history_is_late_only_beyond_its_own_round_trips_and_the_limits_pace() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let wait = |kind, from, to| HistoryWait {
            kind,
            hangup: at(from),
            history: at(to),
        };
        let limit = Some(RateLimit {
            per_sec: 10,
            telephony_per_sec: 40,
        });
        // Kind 0 takes at least 200 ms (its round trips); kind 1 at least 100 ms.
        let fast = [wait(0, 0, 200), wait(1, 0, 100)];
        assert_eq!(lateness(&fast, &[], &[], limit).late, 0);
        // 3 s for a kind-0 call while the CRM let 30 general requests through: the
        // limit (10/s) forced those 3 s.
        let busy: Vec<Instant> = (0..30).map(|i| at(1000 + i * 100)).collect();
        let waits = [wait(0, 0, 200), wait(0, 1000, 4000)];
        let l = lateness(&waits, &busy, &[], limit);
        assert_eq!(l.late, 0, "{l:?}");
        // The same 3 s with only 5 requests let through: the CRM had room, 2.5 s late.
        let idle: Vec<Instant> = (0..5).map(|i| at(1000 + i * 100)).collect();
        let l = lateness(&waits, &idle, &[], limit);
        assert_eq!(l.late, 1);
        assert_eq!(l.worst, Duration::from_millis(2500));
        // Without a limit only the round trips are forced.
        let l = lateness(&waits, &busy, &[], None);
        assert_eq!((l.late, l.worst), (1, Duration::from_millis(2800)));
        // Within LATE_AFTER of what was forced is not late.
        let l = lateness(&[wait(1, 0, 100), wait(1, 0, 900)], &[], &[], None);
        assert_eq!((l.late, l.worst), (0, Duration::from_millis(800)));
    }

    #[test]
    fn rates_and_limits_parse_or_say_why_not() {
        assert_eq!(parse_rate("200/s"), Ok(200.0));
        assert_eq!(parse_rate("120/min"), Ok(2.0));
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_limit("none"), Ok(None));
        assert_eq!(
            parse_rate_limit("real"),
            Ok(CrmLimit(Some(RateLimit::REAL)))
        );
        assert_eq!(
            parse_limit("20/80"),
            Ok(Some(RateLimit {
                per_sec: 20,
                telephony_per_sec: 80
            }))
        );
        assert!(parse_rate_limit("0/1").is_err());
    }

    #[test]
    fn proc_stats_reads_this_process() {
        let s = proc_stats(std::process::id()).expect("own /proc entry");
        assert!(s.rss > 0 && s.hwm >= s.rss);
    }
}
