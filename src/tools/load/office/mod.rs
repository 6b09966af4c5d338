//! `callbridge load`: an office's worth of calls against a real `callbridge run` process,
//! measured from the wire. The AMI simulator plays the office mix (`load::mix`) at the
//! given rate and concurrency; the retailCRM simulator answers with a realistic delay
//! and tells when each pop-up and each call-history record arrived. Ring → pop-up is
//! timed from the moment the ringing event is handed to the PBX socket to the moment
//! the pop-up request reaches the CRM; hang-up → history likewise. The daemon's CPU time
//! and memory are read from `/proc`. At the end every call's CRM effects are checked.

mod calls;
mod daemon;
mod effects;
mod options;
mod play;
mod progress;
mod report;
mod timing;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::PbxKind;
use crate::tools::load::mix;
use crate::tools::sim::ami::{AmiSim, AmiSimOptions};
use crate::tools::sim::esl::{EslSim, EslSimOptions};
use crate::tools::sim::retailcrm::{RetailCrmSim, SimOptions};
use calls::{lock, CallTimes, Shared};
use daemon::{proc_stats, sample, spawn_daemon, stop_daemon, tail, AMI_SECRET, AMI_USER};
use effects::{check_effects, customers_by_number};
use play::{play, Wire};
use progress::show_progress;
use timing::{collect, lateness, HistoryWait, RequestTimes};

pub use options::{default_progress, parse_rate, parse_rate_limit, CrmLimit, Daemon, LoadOptions};
pub use report::{write_json, LoadReport, MixShare, Percentiles};
pub use timing::LATE_AFTER;

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
