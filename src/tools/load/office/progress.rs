//! The run's progress while it plays: a bar on a terminal, a line every few seconds
//! otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::calls::{lock, Shared};

pub(super) async fn show_progress(
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
