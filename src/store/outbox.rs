//! The delivery side of the store: workers claim due actions under a lease, record how
//! each attempt ended, and operators list, retry or drop actions (`callbridge outbox`).
//!
//! Claims are what make delivery exactly-once between workers and between processes: a
//! claim is an `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` on PostgreSQL (a
//! serialized write on SQLite) that stamps the action with its worker and a lease; nobody
//! else takes it until the lease runs out. `started` counts attempts begun and `attempts`
//! attempts finished: when a claim finds more begun than finished, the previous attempt's
//! fate is unknown (a crash, a timeout) and the action is delivered "in doubt", which makes
//! the CRM adapter look before it creates.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{to_i64, Attempt, OutboxCounts, PendingAction, Store, StoreError};
use crate::actions::CrmAction;
use crate::time::Timestamp;

/// One row of the outbox, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub call_id: String,
    pub kind: String,
    /// `pending`, `failed` (pending, last attempt failed), `done`, `dead` or `dropped`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub result: Option<String>,
}

/// Which actions a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Pop-ups and ringing decisions only.
    Urgent,
    /// Everything, oldest first.
    Any,
}

/// Which actions `outbox list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionFilter {
    All,
    Pending,
    Failed,
    Dead,
    Done,
}

/// The outbox's health: what `/health` and the periodic log line show.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct OutboxMetrics {
    /// Waiting for delivery, never tried or between tries (includes `failed`).
    pub pending: i64,
    /// Claimed by a worker right now.
    pub in_flight: i64,
    /// Pending whose last attempt failed (retrying).
    pub failed: i64,
    pub dead: i64,
    pub done: i64,
    /// From enqueue to the CRM's confirmation, over the last 1,000 delivered actions.
    pub latency_ms_median: Option<i64>,
    pub latency_ms_p95: Option<i64>,
}

const ACTION_COLUMNS: &str = "id, call_id, kind, state, attempts, last_status, last_error, note, \
                              created_at, next_attempt_at, result";

impl Store {
    /// Claims up to `limit` due actions for `worker` until `lease_until`: each the oldest
    /// undelivered action of its call (one call's actions go out in order), none claimed
    /// by anyone else, oldest first. Marks an attempt begun on each. (Pop-ups have their
    /// own lane, [`Lane::Urgent`]; ordering this one by urgency too would make the store
    /// sort every due action at each claim, which grows with the backlog it should shrink.)
    pub async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingAction>, StoreError> {
        self.claim_lane(worker, now, lease_until, limit, Lane::Any)
            .await
    }

    /// [`Store::claim`], of one lane only.
    pub async fn claim_lane(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        lane: Lane,
    ) -> Result<Vec<PendingAction>, StoreError> {
        let only_urgent = match lane {
            Lane::Urgent => " AND a.urgent = 1",
            Lane::Any => "",
        };
        let sql = format!(
            "UPDATE actions SET claimed_by = $1, claimed_until = $2, started = started + 1
             WHERE id IN (
                 SELECT a.id FROM actions a
                 WHERE a.state = 'pending' AND a.next_attempt_at <= $3{only_urgent}
                   AND (a.claimed_until IS NULL OR a.claimed_until < $3)
                   AND NOT EXISTS (SELECT 1 FROM actions b
                                   WHERE b.call_id = a.call_id AND b.state = 'pending' AND b.id < a.id)
                 ORDER BY a.id LIMIT $4{})
             RETURNING id, call_id, attempts, started, created_at, round_started_at, payload",
            self.backend.skip_locked()
        );
        let _turn = self.write_turn().await;
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(lease_until.0)
            .bind(now.0)
            .bind(to_i64(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(pending_action(&row)?);
        }
        out.sort_by_key(|a| a.id);
        Ok(out)
    }

    /// Workers holding unexpired claims.
    pub async fn claimers(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT claimed_by FROM actions
             WHERE state = 'pending' AND claimed_by IS NOT NULL AND claimed_until > $1",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Ends the leases of a worker known to be gone; its actions become claimable at once
    /// (in doubt). Returns how many.
    pub async fn expire_claims(&self, worker: &str, now: Timestamp) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE actions SET claimed_until = $1
             WHERE claimed_by = $2 AND state = 'pending' AND claimed_until > $1",
        )
        .bind(now.0)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Results of the named steps of a call that were delivered (`step` → `result`).
    pub async fn step_results(
        &self,
        call_id: &str,
    ) -> Result<HashMap<String, StepState>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, step, state, result FROM actions WHERE call_id = $1 AND step IS NOT NULL",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let step: String = r.try_get("step")?;
            let state: String = r.try_get("state")?;
            let result: Option<String> = r.try_get("result")?;
            out.insert(
                step,
                StepState {
                    action_id: r.try_get("id")?,
                    state,
                    result: result.and_then(|s| serde_json::from_str(&s).ok()),
                },
            );
        }
        Ok(out)
    }

    /// Another call whose action creating `step` is still pending, if any.
    pub async fn pending_step_elsewhere(
        &self,
        step: &str,
        call_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id FROM actions WHERE step = $1 AND state = 'pending' AND call_id <> $2 LIMIT 1",
        )
        .bind(step)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Every action stored for a call, oldest first (what earlier moments decided).
    pub async fn call_actions(&self, call_id: &str) -> Result<Vec<CrmAction>, StoreError> {
        let rows = sqlx::query("SELECT id, payload FROM actions WHERE call_id = $1 ORDER BY id")
            .bind(call_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                let payload: String = r.try_get("payload")?;
                serde_json::from_str(&payload).map_err(|e| StoreError::BadPayload {
                    id,
                    error: e.to_string(),
                })
            })
            .collect()
    }

    /// The earliest moment a pending action becomes due (or its lease runs out).
    pub async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at
                             THEN claimed_until ELSE next_attempt_at END)
             FROM actions WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(Timestamp))
    }

    /// Records how attempts ended, several in one transaction (group commit: the
    /// delivery workers' results are written together, not one commit per request).
    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        let mut tx = self.result_tx().await?;
        let now = Timestamp::now().0;
        for r in results {
            let (action, attempt) = (&r.action, &r.attempt);
            match &r.settled {
                Settled::Done {
                    note,
                    result,
                    spawn,
                    sent_along,
                } => {
                    sqlx::query(
                        "UPDATE actions SET state = 'done', attempts = started, last_status = $1, last_error = NULL,
                             note = $2, result = $3, done_at = $4, claimed_by = NULL, claimed_until = NULL
                         WHERE id = $5",
                    )
                    .bind(attempt.http_status.map(i64::from))
                    .bind(note.clone())
                    .bind(result.as_ref().map(|v| v.to_string()))
                    .bind(now)
                    .bind(action.id)
                    .execute(&mut *tx)
                    .await?;
                    let sent = sent_along.len().min(spawn.len());
                    for (attempt, spawned) in sent_along.iter().zip(&spawn[..sent]) {
                        let id = super::calls::insert_sent_action(
                            &mut tx,
                            &action.call_id,
                            spawned,
                            attempt.http_status,
                            now,
                        )
                        .await?;
                        let delivered = PendingAction {
                            id,
                            call_id: action.call_id.clone(),
                            attempts: 0,
                            in_doubt: false,
                            created_at: Timestamp(now),
                            round_started_at: Timestamp(now),
                            action: spawned.clone(),
                        };
                        log_request(&mut tx, &delivered, attempt, true).await?;
                    }
                    let mut ids = Vec::new();
                    super::calls::insert_actions(
                        &mut tx,
                        &action.call_id,
                        &spawn[sent..],
                        now,
                        None,
                        &mut ids,
                    )
                    .await?;
                }
                Settled::Retry { next_attempt_at } => {
                    sqlx::query(
                        "UPDATE actions SET attempts = started, last_status = $1, last_error = $2, next_attempt_at = $3,
                             claimed_by = NULL, claimed_until = NULL
                         WHERE id = $4",
                    )
                    .bind(attempt.http_status.map(i64::from))
                    .bind(attempt.error.clone())
                    .bind(next_attempt_at.0)
                    .bind(action.id)
                    .execute(&mut *tx)
                    .await?;
                }
                Settled::Dead => {
                    sqlx::query(
                        "UPDATE actions SET state = 'dead', attempts = started, last_status = $1, last_error = $2,
                             claimed_by = NULL, claimed_until = NULL
                         WHERE id = $3",
                    )
                    .bind(attempt.http_status.map(i64::from))
                    .bind(attempt.error.clone())
                    .bind(action.id)
                    .execute(&mut *tx)
                    .await?;
                }
                Settled::Unclaimed => {
                    sqlx::query(
                        "UPDATE actions SET started = attempts, claimed_by = NULL, claimed_until = NULL
                         WHERE id = $1",
                    )
                    .bind(action.id)
                    .execute(&mut *tx)
                    .await?;
                    // No request was made.
                    continue;
                }
            }
            let ok = matches!(r.settled, Settled::Done { .. });
            log_request(&mut tx, action, attempt, ok).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The CRM confirmed the action; `result` is what later steps may need from it.
    pub async fn mark_done(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
        note: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.record_attempts(&[AttemptResult {
            action: action.clone(),
            attempt: attempt.clone(),
            settled: Settled::Done {
                note: note.map(str::to_string),
                result: result.cloned(),
                spawn: Vec::new(),
                sent_along: Vec::new(),
            },
        }])
        .await
    }

    /// Records a failed attempt; the action stays pending until `next_attempt_at`.
    pub async fn mark_retry(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.record_attempts(&[AttemptResult {
            action: action.clone(),
            attempt: attempt.clone(),
            settled: Settled::Retry { next_attempt_at },
        }])
        .await
    }

    /// Parks an action the CRM refused for good (or that ran out of time), with the
    /// reason: kept, listed, retryable by hand, never silently dropped.
    pub async fn mark_dead(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        self.record_attempts(&[AttemptResult {
            action: action.clone(),
            attempt: attempt.clone(),
            settled: Settled::Dead,
        }])
        .await
    }

    /// A transaction for recording how an attempt ended (see `Backend::relaxed_commit`).
    async fn result_tx(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(sql) = self.backend.relaxed_commit() {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Actions not yet delivered (cheap: the pending index), for load runs and waits.
    pub async fn pending_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM actions WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let m = self.outbox_metrics(Timestamp::now()).await?;
        Ok(OutboxCounts {
            pending: m.pending,
            done: m.done,
            dead: m.dead,
        })
    }

    pub async fn outbox_metrics(&self, now: Timestamp) -> Result<OutboxMetrics, StoreError> {
        let row = sqlx::query(
            "SELECT
                COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
                COALESCE(SUM(CASE WHEN state = 'pending' AND claimed_until > $1 THEN 1 ELSE 0 END), 0) AS in_flight,
                COALESCE(SUM(CASE WHEN state = 'pending' AND last_error IS NOT NULL THEN 1 ELSE 0 END), 0) AS failed,
                COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dead,
                COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS done
             FROM actions",
        )
        .bind(now.0)
        .fetch_one(&self.pool)
        .await?;
        // Sums of 0/1 are INTEGER on SQLite and BIGINT on PostgreSQL: i64 on both.
        let count = |name: &str| -> Result<i64, StoreError> { Ok(row.try_get::<i64, _>(name)?) };
        let latencies = sqlx::query(
            "SELECT done_at - created_at FROM actions WHERE state = 'done' AND done_at IS NOT NULL
             ORDER BY done_at DESC LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut ms: Vec<i64> = latencies
            .iter()
            .filter_map(|r| r.try_get::<i64, _>(0).ok())
            .map(|us| us / 1000)
            .collect();
        ms.sort_unstable();
        let at = |q: f64| -> Option<i64> {
            (!ms.is_empty()).then(|| ms[((ms.len() - 1) as f64 * q).round() as usize])
        };
        Ok(OutboxMetrics {
            pending: count("pending")?,
            in_flight: count("in_flight")?,
            failed: count("failed")?,
            dead: count("dead")?,
            done: count("done")?,
            latency_ms_median: at(0.5),
            latency_ms_p95: at(0.95),
        })
    }

    /// Every action, oldest first.
    pub async fn actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        self.list_actions(ActionFilter::All, i64::MAX).await
    }

    /// Actions in one state, oldest first, at most `limit`.
    pub async fn list_actions(
        &self,
        filter: ActionFilter,
        limit: i64,
    ) -> Result<Vec<ActionRow>, StoreError> {
        let condition = match filter {
            ActionFilter::All => "1 = 1",
            ActionFilter::Pending => "state = 'pending'",
            ActionFilter::Failed => "state = 'pending' AND last_error IS NOT NULL",
            ActionFilter::Dead => "state = 'dead'",
            ActionFilter::Done => "state = 'done'",
        };
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE {condition} ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_row).collect()
    }

    pub async fn action(&self, id: i64) -> Result<ActionRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NoSuchAction(id))?;
        action_row(&row)
    }

    /// Puts a dead (or dropped) action back in the queue now, with a fresh
    /// `give_up_after` period.
    pub async fn retry_action(&self, id: i64) -> Result<(), StoreError> {
        let row = self.action(id).await?;
        if row.state != "dead" && row.state != "dropped" {
            return Err(StoreError::WrongState {
                id,
                state: row.state,
                expected: "dead or dropped",
                verb: "retried",
            });
        }
        let now = Timestamp::now().0;
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE actions SET state = 'pending', next_attempt_at = $1, round_started_at = $1
             WHERE id = $2 AND state IN ('dead', 'dropped')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts every dead action back in the queue; returns how many.
    pub async fn retry_all_dead(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now().0;
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE actions SET state = 'pending', next_attempt_at = $1, round_started_at = $1
             WHERE state = 'dead'",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Takes an undelivered action out of the queue for good (kept as `dropped`, so the
    /// record of it and of its attempts stays).
    pub async fn drop_action(&self, id: i64) -> Result<(), StoreError> {
        let row = self.action(id).await?;
        if row.state == "done" || row.state == "dropped" {
            return Err(StoreError::WrongState {
                id,
                state: row.state,
                expected: "pending, failed or dead",
                verb: "dropped",
            });
        }
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE actions SET state = 'dropped', note = 'dropped by hand' WHERE id = $1 AND state IN ('pending', 'dead')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Requests made to the CRM, oldest first: (action id, kind, HTTP status, ok, error).
    pub async fn crm_requests(
        &self,
    ) -> Result<Vec<(i64, String, Option<i64>, bool, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT action_id, kind, http_status, ok, error FROM crm_requests ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("action_id")?,
                    r.try_get("kind")?,
                    r.try_get("http_status")?,
                    r.try_get::<i64, _>("ok")? == 1,
                    r.try_get("error")?,
                ))
            })
            .collect()
    }
}

/// How one attempt ended, to record.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub action: PendingAction,
    pub attempt: Attempt,
    pub settled: Settled,
}

#[derive(Debug, Clone)]
pub enum Settled {
    /// The CRM confirmed it; `result` is what later steps of the call may need.
    Done {
        note: Option<String>,
        result: Option<serde_json::Value>,
        /// Actions this one decided (a matrix decision): stored for the same call in
        /// the transaction that marks this one done, so a decision is never half made.
        spawn: Vec<CrmAction>,
        /// The attempts that delivered the first of `spawn` already (pop-ups sent with
        /// their decision): those are stored as done, with their requests.
        sent_along: Vec<Attempt>,
    },
    /// Failed for now; due again at `next_attempt_at`.
    Retry { next_attempt_at: Timestamp },
    /// Refused for good, or out of time: the reason is the attempt's error.
    Dead,
    /// Not attempted after all (sent after another that failed): claimable again at once.
    Unclaimed,
}

/// What a later step of a call needs to know of an earlier one.
#[derive(Debug, Clone)]
pub struct StepState {
    pub action_id: i64,
    pub state: String,
    pub result: Option<serde_json::Value>,
}

fn pending_action(row: &AnyRow) -> Result<PendingAction, StoreError> {
    let id: i64 = row.try_get("id")?;
    let payload: String = row.try_get("payload")?;
    let action = serde_json::from_str(&payload).map_err(|e| StoreError::BadPayload {
        id,
        error: e.to_string(),
    })?;
    let attempts: i64 = row.try_get("attempts")?;
    let started: i64 = row.try_get("started")?;
    let created_at: i64 = row.try_get("created_at")?;
    let round: Option<i64> = row.try_get("round_started_at")?;
    Ok(PendingAction {
        id,
        call_id: row.try_get("call_id")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        // `started` already counts the attempt this claim begins.
        in_doubt: started - 1 > attempts,
        created_at: Timestamp(created_at),
        round_started_at: Timestamp(round.unwrap_or(created_at)),
        action,
    })
}

fn action_row(r: &AnyRow) -> Result<ActionRow, StoreError> {
    let state: String = r.try_get("state")?;
    let last_error: Option<String> = r.try_get("last_error")?;
    let shown = if state == "pending" && last_error.is_some() {
        "failed".to_string()
    } else {
        state
    };
    Ok(ActionRow {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        kind: r.try_get("kind")?,
        state: shown,
        attempts: r.try_get("attempts")?,
        last_status: r.try_get("last_status")?,
        last_error,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        result: r.try_get("result")?,
    })
}

async fn log_request(
    tx: &mut Transaction<'_, Any>,
    action: &PendingAction,
    attempt: &Attempt,
    ok: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO crm_requests (action_id, call_id, kind, started_at, elapsed_ms, http_status, ok, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(action.id)
    .bind(action.call_id.as_str())
    .bind(action.action.kind())
    .bind(attempt.started_at.0)
    .bind(to_i64(attempt.elapsed.as_millis()))
    .bind(attempt.http_status.map(i64::from))
    .bind(i64::from(ok))
    .bind(attempt.error.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
