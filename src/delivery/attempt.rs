//! One attempt at one claimed action: references to earlier steps resolved, an action
//! in doubt looked at again, then the request (or, for a decision, the matrix run by
//! the decider, whose ringing pop-ups go out at once), and the result handed to the
//! writer.

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info};

use super::decider::DecideError;
use super::settle::{hand_to_writer, settle, DeliveryError};
use super::DeliveryOptions;
use crate::actions::{CallEventType, CrmAction, EntityRef};
use crate::crm::{CrmClient, Delivered};
use crate::store::{Attempt, AttemptResult, PendingAction, Store, StoreError};
use crate::time::Timestamp;

/// Why an action is not sent as it stands.
enum Hold {
    /// Settled without a request (the reason is kept as the action's note).
    Skip(String),
    /// Can never be sent (a step it depends on is dead).
    Dead(String),
}

/// Replaces references to earlier steps of the call by the ids the CRM answered, and
/// decides whether an action in doubt is still worth sending.
async fn prepare(store: &Store, pending: &mut PendingAction) -> Result<Option<Hold>, StoreError> {
    let is_step = |r: &EntityRef| matches!(r, EntityRef::Step(_));
    let steps_named = pending.action.refs_mut().iter().any(|r| is_step(r))
        || pending
            .action
            .links_mut()
            .iter()
            .any(|l| l.as_ref().is_some_and(is_step));
    if steps_named {
        let steps = store.step_results(&pending.call_id).await?;
        let id_of = |s: &crate::store::StepState| {
            s.result
                .as_ref()
                .and_then(|v| v.get("id"))
                .and_then(crate::ids::CrmId::from_json)
        };
        // Links only say what the action is about: one whose record could not be made
        // is left out rather than holding the action back.
        for link in pending.action.links_mut() {
            let Some(EntityRef::Step(step)) = link.as_ref() else {
                continue;
            };
            match steps.get(step.as_str()) {
                Some(s) if s.state == "done" => {
                    if let Some(id) = id_of(s) {
                        *link = Some(EntityRef::Id(id));
                    }
                }
                Some(s) if s.state == "dead" || s.state == "dropped" => *link = None,
                _ => {}
            }
        }
        for r in pending.action.refs_mut() {
            let EntityRef::Step(step) = r else { continue };
            match steps.get(step.as_str()) {
                Some(s) if s.state == "done" => {
                    if let Some(id) = id_of(s) {
                        *r = EntityRef::Id(id);
                    }
                    // Without an id the step stays a reference by its externalId.
                }
                Some(s) if s.state == "dead" || s.state == "dropped" => {
                    return Ok(Some(Hold::Dead(format!(
                        "depends on {step} (action {}), which is {}; retry that one first",
                        s.action_id, s.state
                    ))));
                }
                // Not stored (made by another call) or still pending: by externalId.
                _ => {}
            }
        }
    }
    // A ringing pop-up that may already have been shown is not shown again once the
    // call has moved on: it would pop up for a call that is over.
    if let CrmAction::CallEvent(e) = &pending.action {
        if pending.in_doubt && e.event != CallEventType::Hangup {
            let stage = store.call_stage(&pending.call_id).await?;
            if stage.as_deref() == Some("ended") {
                return Ok(Some(Hold::Skip(
                    "not repeated after an uncertain attempt: the call has ended".into(),
                )));
            }
        }
    }
    Ok(None)
}

/// One attempt at one action, and its record in the store.
pub(super) async fn deliver(
    store: Store,
    crm: CrmClient,
    options: DeliveryOptions,
    mut pending: PendingAction,
    results: mpsc::Sender<AttemptResult>,
) {
    let kind = pending.action.kind();
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let mut spawn = Vec::new();
    let mut sent_along = Vec::new();
    let result: Result<Delivered, DeliveryError> = match prepare(&store, &mut pending).await {
        Ok(None) => match (&pending.action, &options.decider) {
            (CrmAction::Decide(request), Some(decider)) => {
                match decider.decide(&store, &pending.call_id, request).await {
                    Ok(actions) => {
                        let kinds: Vec<&str> = actions.iter().map(CrmAction::kind).collect();
                        let note = format!(
                            "decided: {}",
                            if kinds.is_empty() {
                                "nothing".to_string()
                            } else {
                                kinds.join(", ")
                            }
                        );
                        // The pop-ups a ringing decision makes go out now, from here:
                        // storing them to claim them again would cost them two store
                        // round trips while the phone rings. They are stored as done
                        // with the decision; any that fails is stored pending instead.
                        if pending.action.is_urgent() {
                            for action in actions
                                .iter()
                                .take_while(|a| matches!(a, CrmAction::CallEvent(_)))
                            {
                                let (at, clock) = (Timestamp::now(), Instant::now());
                                match crm.send(action, false).await {
                                    Ok(delivered) => {
                                        if let Some(note) = &delivered.note {
                                            info!(kind = action.kind(), note = %note, "CRM accepted with a remark");
                                        }
                                        sent_along.push(Attempt {
                                            started_at: at,
                                            elapsed: clock.elapsed(),
                                            http_status: (delivered.status != 0)
                                                .then_some(delivered.status),
                                            error: None,
                                        });
                                    }
                                    Err(e) => {
                                        debug!(error = %e, "pop-up not sent with its decision; it is delivered on its own");
                                        break;
                                    }
                                }
                            }
                        }
                        spawn = actions;
                        Ok(Delivered {
                            status: 0,
                            note: Some(note),
                            result: None,
                        })
                    }
                    Err(DecideError::Crm(e)) => Err(DeliveryError::Crm(e)),
                    Err(DecideError::Store(e)) => Err(DeliveryError::Store(e)),
                    Err(DecideError::Wait(why)) => Err(DeliveryError::Wait(why)),
                }
            }
            (CrmAction::Decide(_), None) => Err(DeliveryError::Dead(
                "no matrix configured in this process to decide the call".into(),
            )),
            // An attempt that failed may still have been carried out (its answer lost
            // to a timeout or a proxy's 5xx): every retry looks for the record first.
            _ => crm
                .send(&pending.action, pending.in_doubt || pending.attempts > 0)
                .await
                .map_err(DeliveryError::Crm),
        },
        Ok(Some(Hold::Skip(why))) => {
            info!(kind, why = %why, "settled without a request");
            Ok(Delivered {
                status: 0,
                note: Some(why),
                result: None,
            })
        }
        Ok(Some(Hold::Dead(why))) => Err(DeliveryError::Dead(why)),
        Err(e) => Err(DeliveryError::Store(e)),
    };
    let (attempt, settled) = settle(
        kind,
        result,
        &pending,
        started_at,
        clock.elapsed(),
        &options,
        spawn,
        sent_along,
    );
    // The writer records it (with others, in one transaction). Until then the action stays
    // claimed, so nobody sends it again; if the writer is gone, the lease runs out and the
    // action is delivered again, in doubt: the CRM adapter looks before it creates.
    hand_to_writer(
        &results,
        AttemptResult {
            action: pending,
            attempt,
            settled,
        },
    )
    .await;
}
