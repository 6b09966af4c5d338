//! Which processes follow a PBX: this one says so every few seconds, looks who else
//! does (a process of this host that is gone is forgotten at once), and takes back the
//! calls the store holds as live when it starts.

use std::collections::HashSet;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::Processor;
use crate::call::tracker::CallSnapshot;
use crate::call::CallTracker;
use crate::store::Store;
use crate::time::Timestamp;

/// How often a processor says it follows its PBX and looks who else does.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// A follower not heard of for this long is taken for gone.
pub(super) const FOLLOWER_GONE_AFTER: Duration = Duration::from_secs(10);

/// Says this process follows the PBX and returns how many others do (`None`: the store
/// could not say); allows pop-ups ahead of the store for a while when there are none.
pub(super) async fn look_at_followers(p: &Processor) -> Option<usize> {
    let alive = match others_following(p.outbox.store(), &p.pbx.name, p.outbox.worker()).await {
        Ok(alive) => alive,
        Err(e) => {
            debug!(pbx = %p.pbx.name, error = %e, "could not look at the PBX's followers");
            p.alone.deny();
            return None;
        }
    };
    if alive == 0 {
        p.alone.confirm(FOLLOW_EVERY + FOLLOW_EVERY / 2);
    } else {
        if p.alone.now() {
            info!(pbx = %p.pbx.name, others = alive, "another process follows this PBX: pop-ups are stored before they are sent");
        }
        p.alone.deny();
    }
    Some(alive)
}

/// Says `worker` follows `pbx` and returns how many other live processes do. A
/// process of this host that is gone (killed, crashed) follows nothing.
pub(super) async fn others_following(
    store: &Store,
    pbx: &str,
    worker: &str,
) -> Result<usize, crate::store::StoreError> {
    let now = Timestamp::now();
    let alive_since = Timestamp(now.0 - FOLLOWER_GONE_AFTER.as_micros() as i64);
    let others = store.follow(pbx, worker, now, alive_since).await?;
    let host = crate::delivery::identity::host_name();
    let mut alive = 0;
    for other in others {
        if crate::delivery::identity::worker_is_gone(&other, &host) {
            let _ = store.unfollow(pbx, &other).await;
        } else {
            alive += 1;
        }
    }
    Ok(alive)
}

/// Takes back the calls the store has as live on this PBX (their last snapshots).
/// Called before the PBX connection starts, so that the PBX's first channel list, which
/// judges them, is newer than every snapshot.
///
/// When another process follows the PBX now, those calls are its calls: they are taken
/// back only to know them (should that process stop, this one goes on with them), and
/// returned, so that their steps wait for that process's word (see `Held`).
pub async fn resume_live_calls(
    store: &Store,
    pbx: &str,
    worker: &str,
    tracker: &mut CallTracker,
) -> HashSet<String> {
    let company = match others_following(store, pbx, worker).await {
        Ok(alive) => alive > 0,
        Err(e) => {
            warn!(pbx, error = %e, "could not look at the PBX's followers; the live calls are taken back as another's");
            true
        }
    };
    let mut restored = HashSet::new();
    match store.live_snapshots(pbx).await {
        Ok(snapshots) => {
            for json in snapshots {
                match serde_json::from_str::<CallSnapshot>(&json) {
                    Ok(snapshot) => {
                        restored.insert(snapshot.call_id().to_string());
                        tracker.restore(snapshot);
                    }
                    Err(e) => warn!(pbx, error = %e, "unreadable live-call snapshot skipped"),
                }
            }
        }
        Err(e) => error!(pbx, error = %e, "could not read live calls from the store"),
    }
    if restored.is_empty() {
        return restored;
    }
    if company {
        info!(pbx, calls = restored.len(),
              "another process follows this PBX: the calls it follows are known here, their steps are its to record");
        restored
    } else {
        info!(
            pbx,
            calls = restored.len(),
            "resuming calls that were live before the restart"
        );
        HashSet::new()
    }
}

/// Looks at the PBX's followers every `FOLLOW_EVERY`, for ever.
pub(super) async fn keep_following(p: &Processor) {
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        look_at_followers(p).await;
    }
}
