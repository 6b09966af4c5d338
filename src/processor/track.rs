//! The tracking half of a call processor: the PBX's inputs through the tracker, each
//! update staged in its call's span (a ringing call's actions decided, its pop-up sent
//! when it can be), handed in batches to the storing half.

use tokio::sync::mpsc;
use tracing::{debug, info_span, warn};

use super::clock::PbxClock;
use super::held::Held;
use super::snapshots::{with_snapshots, SnapshotSchedule};
use super::{Processor, Staged, WriteBatch, BATCH, SWEEP_EVERY};
use crate::actions::actions_for;
use std::collections::HashSet;

use crate::call::{CallStage, CallTracker, CallUpdate};
use crate::pbx::event::PbxInput;
use crate::time::Timestamp;

/// The tracking half: inputs → tracker → updates, pop-ups sent as ringing is read.
pub(super) async fn track(
    mut inputs: mpsc::Receiver<PbxInput>,
    mut tracker: CallTracker,
    others_calls: HashSet<String>,
    p: Processor,
    batches: mpsc::Sender<WriteBatch>,
) {
    let mut held = Held {
        others_calls,
        ..Held::default()
    };
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshots = SnapshotSchedule::default();
    let mut clock = PbxClock::default();
    let mut meters = crate::ops::metrics::PbxMeters::new(&p.pbx.name);
    loop {
        let mut updates = Vec::new();
        let snapshot_due = snapshots.due_in();
        let held_due = held.next_due();
        tokio::select! {
            first = inputs.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match inputs.try_recv() {
                        Ok(input) => batch.push(input),
                        Err(_) => break,
                    }
                }
                for input in batch {
                    if let PbxInput::Event(event) = &input {
                        meters.event(event);
                    }
                    let pbx_now = clock.now(&tracker);
                    // Staged as each input is applied: a ringing call's pop-up goes out
                    // now, not after the rest of the batch.
                    let company = !p.alone.now();
                    for update in apply(&mut tracker, pbx_now, input) {
                        if let Some(update) = held.admit(update, &tracker, company) {
                            updates.push(stage(&p, update, false));
                        }
                    }
                    clock.observe(&tracker);
                }
            }
            _ = sweep.tick() => {
                let stale = tracker.sweep(clock.now(&tracker), p.pbx.stale_call_timeout);
                if !stale.is_empty() {
                    warn!(pbx = %p.pbx.name, calls = stale.len(), timeout = ?p.pbx.stale_call_timeout,
                          "ending calls that saw no event for too long");
                }
                let company = !p.alone.now();
                for update in stale {
                    if let Some(update) = held.admit(update, &tracker, company) {
                        updates.push(stage(&p, update, false));
                    }
                }
            }
            _ = tokio::time::sleep_until(held_due.unwrap_or_else(tokio::time::Instant::now)), if held_due.is_some() => {}
            _ = tokio::time::sleep(snapshot_due.unwrap_or(SWEEP_EVERY)), if snapshot_due.is_some() => {}
        }
        updates.extend(
            held.due(p.alone.now())
                .into_iter()
                .map(|update| stage(&p, update, true)),
        );
        for staged in &updates {
            if let CallStage::Ended(summary) = &staged.update.stage {
                meters.call_ended(summary);
            }
        }
        meters.live_calls(tracker.live_calls());
        // The snapshots of another process's calls are its to write.
        let company = !p.alone.now();
        let batch = with_snapshots(&mut tracker, &mut snapshots, updates, |tracker, id| {
            company && held.is_theirs(tracker, id)
        });
        if (!batch.updates.is_empty() || !batch.snapshots.is_empty())
            && batches.send(batch).await.is_err()
        {
            return;
        }
    }
    // Stopping: what was held back is stored now rather than lost (the store keeps the
    // first word on each step, so another process's earlier one stands).
    let rest: Vec<Staged> = held
        .drain()
        .into_iter()
        .map(|u| stage(&p, u, true))
        .collect();
    if !rest.is_empty() {
        let _ = batches
            .send(WriteBatch {
                updates: rest,
                snapshots: Vec::new(),
            })
            .await;
    }
}

/// Gives an update its call's span and decides a ringing call's actions now, sending
/// its pop-up when it can: ahead of the store only when this process is the PBX's one
/// follower and the step was not held back (another process may have sent it).
pub(super) fn stage(p: &Processor, update: CallUpdate, held_back: bool) -> Staged {
    let span = info_span!(
        "call",
        pbx = %update.header.pbx,
        call_id = %update.header.call_id,
        direction = update.header.direction.as_str()
    );
    let (mut actions, mut express) = (None, None);
    if let Some(panel) = &p.panel {
        // The panel hears the step before the store does, as the express pop-up does.
        panel.publish(&update);
    }
    match update.stage {
        CallStage::Ringing { .. } => span.in_scope(|| {
            let mut decided = actions_of(&update);
            express = p.outbox.send_now(
                &update.header.external_id(),
                &mut decided,
                &span,
                p.alone.now() && !held_back,
            );
            actions = Some(decided);
        }),
        CallStage::Ended(_) => p.outbox.call_ended(&update.header.external_id()),
        CallStage::Answered { .. } => {}
    }
    Staged {
        update,
        span,
        actions,
        express,
    }
}

/// The actions an update causes (in its call's span: says why when none).
pub(super) fn actions_of(update: &CallUpdate) -> Vec<crate::actions::CrmAction> {
    match actions_for(update) {
        Ok(actions) => actions,
        Err(reason) => {
            debug!(?reason, "no CRM action for this step");
            Vec::new()
        }
    }
}

pub(super) fn apply(
    tracker: &mut CallTracker,
    pbx_now: Timestamp,
    input: PbxInput,
) -> Vec<CallUpdate> {
    tracing::trace!(?input, "PBX input");
    match input {
        PbxInput::Event(event) => tracker.apply(&event),
        PbxInput::ResyncBegin { after_gap } => {
            tracker.begin_resync(after_gap);
            Vec::new()
        }
        PbxInput::Resync { at: _, channels } => {
            // The list was read now; its moment on the PBX's clock.
            let at = pbx_now;
            debug!(
                channels = channels.len(),
                live_calls = tracker.live_calls(),
                "resync with the PBX's channel list"
            );
            tracker.resync(at, &channels)
        }
        PbxInput::Restarted { .. } => {
            tracker.pbx_restarted();
            Vec::new()
        }
    }
}
