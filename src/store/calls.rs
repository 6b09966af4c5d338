//! The call side of the store: a call's stages, the actions each stage causes, and the
//! tracker's snapshot of a live call, written together so a restart resumes exactly where
//! the store says the call was.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{to_i64, Backend, CallRow, Claim, Commit, Store, StoreError};
use crate::actions::CrmAction;
use crate::call::{CallHeader, CallStage, CallUpdate};
use crate::time::Timestamp;

impl Store {
    /// Writes a call's new stage and the actions it causes in one transaction; returns
    /// the new action ids.
    pub async fn record(
        &self,
        update: &CallUpdate,
        actions: &[CrmAction],
    ) -> Result<Vec<i64>, StoreError> {
        self.commit(&[Commit::Update {
            update: update.clone(),
            actions: actions.to_vec(),
        }])
        .await
    }

    /// Writes a batch of call updates (with their actions) and live-call snapshots in
    /// one transaction. A step already recorded for a call (a resumed call announced
    /// again after a restart, or the same call seen by a second process) adds no second
    /// action: the store is what remembers what was sent. Returns the new action ids.
    pub async fn commit(&self, items: &[Commit]) -> Result<Vec<i64>, StoreError> {
        Ok(self.commit_each(items).await?.concat())
    }

    /// [`Store::commit`], with the new action ids of each item (none for a snapshot, or
    /// for a step the store already had).
    pub async fn commit_each(&self, items: &[Commit]) -> Result<Vec<Vec<i64>>, StoreError> {
        let now = Timestamp::now().0;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let mut all = Vec::with_capacity(items.len());
        for item in items {
            let mut ids = Vec::new();
            match item {
                Commit::Update { update, actions } => {
                    if record_update(&mut tx, self.backend, update, now).await? {
                        let call_id = update.header.external_id();
                        insert_actions(&mut tx, &call_id, actions, now, None, &mut ids).await?;
                    }
                }
                Commit::Sending {
                    update,
                    actions,
                    claim,
                } => {
                    if record_update(&mut tx, self.backend, update, now).await? {
                        let call_id = update.header.external_id();
                        insert_actions(&mut tx, &call_id, actions, now, Some(claim), &mut ids)
                            .await?;
                    }
                }
                Commit::Actions { header, actions } => {
                    insert_call(&mut tx, header, "live", now).await?;
                    let call_id = header.external_id();
                    insert_actions(&mut tx, &call_id, actions, now, None, &mut ids).await?;
                }
                Commit::Snapshot { header, state } => {
                    // One statement: on PostgreSQL each is a round trip.
                    sqlx::query(
                        "INSERT INTO calls (id, pbx, pbx_call_id, direction, customer_number, did, stage, started_at, updated_at, state)
                         VALUES ($1, $2, $3, $4, $5, $6, 'live', $7, $8, $9)
                         ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
                         WHERE calls.stage <> 'ended'",
                    )
                    .bind(header.external_id())
                    .bind(header.pbx.as_str())
                    .bind(header.call_id.as_str())
                    .bind(header.direction.as_str())
                    .bind(header.customer_number.clone())
                    .bind(header.did.clone())
                    .bind(header.started_at.0)
                    .bind(now)
                    .bind(state.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            all.push(ids);
        }
        tx.commit().await?;
        Ok(all)
    }

    /// Tracker snapshots of the calls of `pbx` that were live when the daemon stopped.
    pub async fn live_snapshots(&self, pbx: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT state FROM calls WHERE pbx = $1 AND stage <> 'ended' AND state IS NOT NULL",
        )
        .bind(pbx)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// The stage the store has for a call (`live`, `ringing`, `answered`, `ended`).
    pub async fn call_stage(&self, call_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT stage FROM calls WHERE id = $1")
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// One call by its id (`cb-<pbx>-<id>`).
    pub async fn call(&self, call_id: &str) -> Result<Option<CallRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, direction, customer_number, did, stage, employee, outcome, talk_secs, started_at,
                    rang, talkers, recording, voicemail, reconstructed, updated_at
             FROM calls WHERE id = $1",
        )
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_row).transpose()
    }

    pub async fn calls(&self) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, direction, customer_number, did, stage, employee, outcome, talk_secs, started_at,
                    rang, talkers, recording, voicemail, reconstructed, updated_at
             FROM calls ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_row).collect()
    }
}

fn call_row(r: &AnyRow) -> Result<CallRow, StoreError> {
    Ok(CallRow {
        id: r.try_get("id")?,
        direction: r.try_get("direction")?,
        customer_number: r.try_get("customer_number")?,
        did: r.try_get("did")?,
        stage: r.try_get("stage")?,
        employee: r.try_get("employee")?,
        outcome: r.try_get("outcome")?,
        talk_secs: r.try_get("talk_secs")?,
        started_at: r.try_get("started_at")?,
        rang: r.try_get("rang")?,
        talkers: r.try_get("talkers")?,
        recording: r.try_get("recording")?,
        voicemail: r.try_get("voicemail")?,
        reconstructed: r.try_get::<i64, _>("reconstructed")? != 0,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Creates the call's row if it is new (`stage` is the stage of a new row).
async fn insert_call(
    tx: &mut Transaction<'_, Any>,
    h: &CallHeader,
    stage: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO calls (id, pbx, pbx_call_id, direction, customer_number, did, stage, started_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(h.external_id())
    .bind(h.pbx.as_str())
    .bind(h.call_id.as_str())
    .bind(h.direction.as_str())
    .bind(h.customer_number.clone())
    .bind(h.did.clone())
    .bind(stage)
    .bind(h.started_at.0)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores actions pending; with a `claim`, held by that worker with one attempt begun
/// (it is sending them already).
pub(super) async fn insert_actions(
    tx: &mut Transaction<'_, Any>,
    call_id: &str,
    actions: &[CrmAction],
    now: i64,
    claim: Option<&Claim>,
    ids: &mut Vec<i64>,
) -> Result<(), StoreError> {
    for action in actions {
        let payload = payload_of(action)?;
        let row = sqlx::query(
            "INSERT INTO actions (call_id, kind, payload, step, next_attempt_at, created_at, round_started_at, urgent,
                                  claimed_by, claimed_until, started)
             VALUES ($1, $2, $3, $4, $5, $5, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(call_id)
        .bind(action.kind())
        .bind(payload)
        .bind(action.step())
        .bind(now)
        .bind(i64::from(action.is_urgent()))
        .bind(claim.map(|c| c.worker.clone()))
        .bind(claim.map(|c| c.until.0))
        .bind(i64::from(claim.is_some()))
        .fetch_one(&mut **tx)
        .await?;
        ids.push(row.try_get::<i64, _>(0)?);
    }
    Ok(())
}

/// An action that was already delivered when it is stored (a pop-up its decision sent):
/// written as done, with the answer's status, in one statement.
pub(super) async fn insert_sent_action(
    tx: &mut Transaction<'_, Any>,
    call_id: &str,
    action: &CrmAction,
    http_status: Option<u16>,
    now: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO actions (call_id, kind, payload, step, next_attempt_at, created_at, round_started_at, urgent,
                              state, attempts, started, done_at, last_status, note)
         VALUES ($1, $2, $3, $4, $5, $5, $5, $6, 'done', 1, 1, $5, $7, 'sent with its decision') RETURNING id",
    )
    .bind(call_id)
    .bind(action.kind())
    .bind(payload_of(action)?)
    .bind(action.step())
    .bind(now)
    .bind(i64::from(action.is_urgent()))
    .bind(http_status.map(i64::from))
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

fn payload_of(action: &CrmAction) -> Result<String, StoreError> {
    serde_json::to_string(action).map_err(|e| StoreError::BadPayload {
        id: 0,
        error: e.to_string(),
    })
}

/// Upserts the call row for one update. Returns false when the update repeats a step
/// the store already has (its actions must not be sent again). The call's row is
/// written first and then read locked, so two processes recording the same call take
/// turns and only the first records each step.
async fn record_update(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    update: &CallUpdate,
    now: i64,
) -> Result<bool, StoreError> {
    let h = &update.header;
    let id = h.external_id();
    insert_call(tx, h, "new", now).await?;
    let row = sqlx::query(&format!(
        "SELECT stage, rang FROM calls WHERE id = $1{}",
        backend.for_update()
    ))
    .bind(id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let stage_before: String = row.try_get("stage")?;
    let rang_before: Vec<String> =
        serde_json::from_str(&row.try_get::<String, _>("rang")?).unwrap_or_default();
    let fresh = match (&update.stage, stage_before.as_str()) {
        (_, "ended") => false,
        (CallStage::Answered { .. }, "answered") => false,
        (CallStage::Ringing { new, .. }, _) => !new.iter().all(|e| rang_before.contains(e)),
        _ => true,
    };
    if !fresh {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE calls SET direction = $1, customer_number = COALESCE($2, customer_number),
             did = COALESCE($3, did), updated_at = $4,
             stage = CASE WHEN stage IN ('new', 'live') THEN 'ringing' ELSE stage END
         WHERE id = $5",
    )
    .bind(h.direction.as_str())
    .bind(h.customer_number.clone())
    .bind(h.did.clone())
    .bind(now)
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    match &update.stage {
        CallStage::Ringing { extensions, .. } => {
            let mut rang = rang_before;
            for e in extensions {
                if !rang.contains(e) {
                    rang.push(e.clone());
                }
            }
            sqlx::query("UPDATE calls SET rang = $1 WHERE id = $2")
                .bind(serde_json::to_string(&rang).unwrap_or_default())
                .bind(id.as_str())
                .execute(&mut **tx)
                .await?;
        }
        CallStage::Answered { extension } => {
            sqlx::query(
                "UPDATE calls SET stage = 'answered', employee = $1, answered_at = $2 WHERE id = $3",
            )
            .bind(extension.as_str())
            .bind(update.at.0)
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
        }
        CallStage::Ended(s) => {
            sqlx::query(
                "UPDATE calls SET stage = 'ended', rang = $1, employee = $2, outcome = $3, answered_at = $4,
                     ended_at = $5, duration_secs = $6, talk_secs = $7, wait_secs = $8, talkers = $9,
                     recording = $10, voicemail = $11, queue = $12, reconstructed = $13, state = NULL
                 WHERE id = $14",
            )
            .bind(serde_json::to_string(&s.rang).unwrap_or_default())
            .bind(s.employee.clone())
            .bind(s.outcome.as_str())
            .bind(s.answered_at.map(|t| t.0))
            .bind(s.ended_at.0)
            .bind(to_i64(s.duration_secs))
            .bind(to_i64(s.talk_secs))
            .bind(to_i64(s.wait_secs))
            .bind(serde_json::to_string(&s.talkers).unwrap_or_default())
            .bind(s.recording.clone())
            .bind(s.voicemail.as_ref().and_then(|v| serde_json::to_string(v).ok()))
            .bind(s.queue.clone())
            .bind(i64::from(s.reconstructed))
            .bind(id.as_str())
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(true)
}
