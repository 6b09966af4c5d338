//! A PBX's call processor: its events through the call tracker into the store and the
//! outbox, one `tracing` span per call. Two halves run side by side: `track` applies the
//! PBX's inputs (and sends a ringing call's pop-up at once), `write` stores what came of
//! them; `followers` says which processes follow the PBX, `held` holds back the steps of
//! calls this process knows only in part, `snapshots` and `clock` keep live calls
//! resumable and judged by the PBX's time.

mod clock;
mod followers;
mod held;
mod snapshots;
mod track;
mod write;

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::call::CallTracker;
use crate::config::PbxConfig;
use crate::delivery::Outbox;
use crate::pbx::event::PbxInput;

pub use followers::resume_live_calls;
use followers::{keep_following, look_at_followers, FOLLOW_EVERY};
use track::track;
use write::write_batches;

/// What a PBX's call processor needs besides its events.
#[derive(Clone)]
pub struct Processor {
    pbx: PbxConfig,
    outbox: Outbox,
    /// Whether this process is the PBX's only follower (pop-ups may go ahead of the store).
    alone: crate::delivery::express::Alone,
    /// The operators' panel, told of every step as it is read.
    panel: Option<crate::panel::PanelHub>,
}

impl Processor {
    pub fn new(pbx: PbxConfig, outbox: Outbox) -> Self {
        Processor {
            pbx,
            outbox,
            alone: Default::default(),
            panel: None,
        }
    }

    /// Tells `hub` of every call step this processor reads.
    pub fn with_panel(mut self, hub: Option<crate::panel::PanelHub>) -> Self {
        self.panel = hub;
        self
    }
}

/// How many PBX inputs are applied before their results are written in one
/// transaction (group commit): bursts cost one write, a lone event is written at once.
const BATCH: usize = 256;

/// How often calls that saw no event for `stale_call_timeout` are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Batches waiting to be stored before the tracking half waits for the store.
const WRITE_QUEUE: usize = 64;

/// One PBX's call processing: tracker, action rules, outbox. One span per call.
///
/// Two halves run side by side: one applies the PBX's inputs to the tracker (and sends a
/// ringing call's pop-up at once, see `express`), the other stores what came of them. The
/// first never waits for the store unless the second is `WRITE_QUEUE` batches behind,
/// so a pop-up is not held up by the write of the events before it.
pub async fn process(
    inputs: mpsc::Receiver<PbxInput>,
    tracker: CallTracker,
    others_calls: HashSet<String>,
    p: Processor,
) {
    // Another process that follows this PBX may still be sending its pop-ups ahead of
    // the store: give it time to see this one and stop before reading anything.
    if look_at_followers(&p).await != Some(0) {
        let wait = FOLLOW_EVERY * 2 + FOLLOW_EVERY / 2;
        info!(pbx = %p.pbx.name, wait = ?wait,
              "another process follows this PBX (or the store cannot say): waiting for it to stop sending pop-ups ahead of the store");
        tokio::time::sleep(wait).await;
    }
    let (batches, queued) = mpsc::channel(WRITE_QUEUE);
    let work = async {
        tokio::join!(
            track(inputs, tracker, others_calls, p.clone(), batches),
            write_batches(p.clone(), queued)
        )
    };
    tokio::select! {
        _ = work => {}
        _ = keep_following(&p) => {}
    }
    p.alone.deny();
    if let Err(e) = p
        .outbox
        .store()
        .unfollow(&p.pbx.name, p.outbox.worker())
        .await
    {
        debug!(pbx = %p.pbx.name, error = %e, "could not say this process stopped following the PBX");
    }
}

/// What the tracking half hands to the storing half.
#[derive(Default)]
struct WriteBatch {
    updates: Vec<Staged>,
    snapshots: Vec<crate::store::Commit>,
}

/// One call update on its way to the store, with its call's span; a ringing one with
/// its actions decided already and, when its pop-up is on its way, the express ticket.
struct Staged {
    update: crate::call::CallUpdate,
    span: tracing::Span,
    actions: Option<Vec<crate::actions::CrmAction>>,
    express: Option<crate::delivery::express::ExpressTicket>,
}
