//! The storing half of a call processor: every batch that queued while the last was
//! written goes in one transaction (group commit), with what only the disk knows (a
//! voicemail message, a recording named after a channel) filled in first.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn, Instrument};

use super::track::actions_of;
use super::{Processor, BATCH};
use super::{Staged, WriteBatch};
use crate::call::{CallStage, CallSummary, CallUpdate, Outcome};
use crate::config::{PbxConfig, PbxKind};
use crate::ops::recordings;
use crate::store::Commit;

/// A store write slower than this is worth a warning: events wait behind it, and a
/// crash meanwhile loses what they said.
pub(super) const SLOW_COMMIT: Duration = Duration::from_millis(500);

/// The storing half: every batch that queued while the last was written goes in one
/// transaction (group commit).
pub(super) async fn write_batches(p: Processor, mut queued: mpsc::Receiver<WriteBatch>) {
    while let Some(mut batch) = queued.recv().await {
        while batch.updates.len() < BATCH {
            match queued.try_recv() {
                Ok(more) => {
                    batch.updates.extend(more.updates);
                    batch.snapshots.extend(more.snapshots);
                }
                Err(_) => break,
            }
        }
        write(&p, batch).await;
    }
}

/// Logs each update in its call's span, completes what only the disk knows, decides the
/// actions, and stores everything (updates, actions, live-call snapshots) in one
/// transaction; then tells the express pop-ups their ids.
pub(super) async fn write(p: &Processor, batch: WriteBatch) {
    let mut items = Vec::with_capacity(batch.updates.len() + batch.snapshots.len());
    let mut tickets = Vec::new();
    for staged in batch.updates {
        let Staged {
            mut update,
            span,
            actions,
            express,
        } = staged;
        // Never hold an entered span across an await: the task may move to another
        // thread, and tracing's span stack would be left wrong (it panics on it).
        if let CallStage::Ended(summary) = &mut update.stage {
            complete_from_disk(&p.pbx, summary)
                .instrument(span.clone())
                .await;
        }
        let actions = span.in_scope(|| {
            log_update(&update);
            actions.unwrap_or_else(|| actions_of(&update))
        });
        match express {
            Some(ticket) => {
                items.push(Commit::Sending {
                    update,
                    actions,
                    claim: ticket.claim(),
                });
                tickets.push((items.len() - 1, ticket));
            }
            None => items.push(Commit::Update { update, actions }),
        }
    }
    items.extend(batch.snapshots);
    if items.is_empty() {
        return;
    }
    // The store must take it: retry rather than lose a call. While it fails, this PBX's
    // reading waits (the event buffer fills), which is the right pressure.
    let mut delay = Duration::from_millis(100);
    let started = std::time::Instant::now();
    loop {
        match p.outbox.commit(&items).await {
            Ok(mut ids) => {
                let took = started.elapsed();
                if took > SLOW_COMMIT {
                    warn!(pbx = %p.pbx.name, items = items.len(), took = ?took,
                          "storing call updates was slow; PBX events wait meanwhile");
                } else {
                    debug!(items = items.len(), took = ?took, "call updates stored");
                }
                for (i, ticket) in tickets {
                    ticket.stored(std::mem::take(&mut ids[i]));
                }
                return;
            }
            Err(e) => {
                error!(pbx = %p.pbx.name, error = %e, retry_in = ?delay, "could not store call updates; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

pub(super) fn log_update(update: &CallUpdate) {
    match &update.stage {
        CallStage::Ringing { new, .. } => {
            info!(caller = ?update.header.customer_number, did = ?update.header.did, ringing = ?new, "ringing")
        }
        CallStage::Answered { extension } => info!(%extension, "answered"),
        CallStage::Ended(s) => info!(
            outcome = s.outcome.as_str(),
            employee = ?s.employee,
            talkers = ?s.talkers.iter().map(|t| format!("{}:{}s", t.extension, t.talk_secs)).collect::<Vec<_>>(),
            talk_secs = s.talk_secs,
            duration_secs = s.duration_secs,
            recording = ?s.recording,
            voicemail = ?s.voicemail.as_ref().map(|v| &v.mailbox),
            reconstructed = s.reconstructed,
            "ended"
        ),
    }
}

/// Fills in what the events did not say: the voicemail message an older Asterisk did
/// not name (no message found means the caller hung up before the beep: a missed
/// call), and a recording named after one of the call's channels.
pub(super) async fn complete_from_disk(pbx: &PbxConfig, summary: &mut CallSummary) {
    let since = summary.header.started_at;
    if summary.outcome == Outcome::Voicemail {
        if let Some(vm) = summary.voicemail.as_mut().filter(|v| v.message.is_none()) {
            if pbx.kind == PbxKind::FreeSwitch {
                // FreeSWITCH names every message it stores (`vm::maintenance`): none
                // means the caller hung up before the beep.
                info!(mailbox = %vm.mailbox, "caller reached voicemail but left no message");
                summary.outcome = Outcome::Missed;
                summary.voicemail = None;
                return complete_recording(pbx, summary).await;
            }
            let (dir, mailbox) = (pbx.voicemail_dir.clone(), vm.mailbox.clone());
            let found = tokio::task::spawn_blocking(move || {
                recordings::find_voicemail_message(&dir, &mailbox, since)
            })
            .await
            .ok()
            .flatten();
            match found {
                Some(message) => vm.message = Some(message),
                None => {
                    info!(mailbox = %vm.mailbox, "caller reached voicemail but left no message");
                    summary.outcome = Outcome::Missed;
                    summary.voicemail = None;
                }
            }
        }
    }
    complete_recording(pbx, summary).await
}

/// A recording the events did not name, found on disk by one of the call's channel ids.
pub(super) async fn complete_recording(pbx: &PbxConfig, summary: &mut CallSummary) {
    let since = summary.header.started_at;
    if summary.recording.is_none()
        && summary.outcome == Outcome::Answered
        && !summary.channels.is_empty()
    {
        let (dir, ids) = (pbx.recordings_dir.clone(), summary.channels.clone());
        let found =
            tokio::task::spawn_blocking(move || recordings::find_recording(&dir, &ids, since))
                .await
                .ok()
                .flatten();
        summary.recording = found.map(|p| p.to_string_lossy().into_owned());
    }
}
