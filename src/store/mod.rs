//! The durable store (sqlx, SQLite by default): calls, the outbox of CRM actions, and the
//! log of every CRM request. A call's state change and the actions it causes are written
//! in one transaction, before any request is made, so a crash can delay an effect but
//! never lose it.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::actions::CrmAction;
use crate::call::{CallHeader, CallStage, CallUpdate};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not supported (expected sqlite://…)")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored action {id} is unreadable: {error}")]
    BadPayload { id: i64, error: String },
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An action waiting for delivery.
#[derive(Debug, Clone)]
pub struct PendingAction {
    pub id: i64,
    pub call_id: String,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub action: CrmAction,
}

/// One row of the outbox, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub call_id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub note: Option<String>,
}

/// One row of the calls table.
#[derive(Debug, Clone, Serialize)]
pub struct CallRow {
    pub id: String,
    pub direction: String,
    pub customer_number: Option<String>,
    pub did: Option<String>,
    pub stage: String,
    pub employee: Option<String>,
    pub outcome: Option<String>,
    pub talk_secs: Option<i64>,
    pub started_at: i64,
    pub rang: String,
    pub talkers: Option<String>,
    pub recording: Option<String>,
    pub voicemail: Option<String>,
    pub reconstructed: bool,
}

/// One thing to write in a `Store::commit` batch.
#[derive(Debug, Clone)]
pub enum Commit {
    /// A call's new stage and the CRM actions it causes.
    Update {
        update: CallUpdate,
        actions: Vec<CrmAction>,
    },
    /// The tracker's state of a live call (JSON), to resume it after a restart.
    Snapshot { header: CallHeader, state: String },
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: i64,
    pub done: i64,
    pub dead: i64,
}

/// How a delivery attempt ended, as the store records it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: Timestamp,
    pub elapsed: Duration,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the database and applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets the CLI read while the daemon writes; NORMAL sync in WAL mode
            // survives a process crash (SIGKILL), which is what we guard against here.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

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
    /// again after a restart) adds no second action: the store is what remembers what
    /// was sent. Returns the new action ids.
    pub async fn commit(&self, items: &[Commit]) -> Result<Vec<i64>, StoreError> {
        let now = Timestamp::now().0;
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::new();
        for item in items {
            match item {
                Commit::Update { update, actions } => {
                    let fresh = record_update(&mut tx, update, now).await?;
                    if !fresh {
                        continue;
                    }
                    let id = update.header.external_id();
                    for action in actions {
                        let payload =
                            serde_json::to_string(action).map_err(|e| StoreError::BadPayload {
                                id: 0,
                                error: e.to_string(),
                            })?;
                        let row = sqlx::query(
                            "INSERT INTO actions (call_id, kind, payload, next_attempt_at, created_at)
                             VALUES (?, ?, ?, ?, ?) RETURNING id",
                        )
                        .bind(&id)
                        .bind(action.kind())
                        .bind(payload)
                        .bind(now)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        ids.push(row.try_get::<i64, _>(0)?);
                    }
                }
                Commit::Snapshot { header, state } => {
                    sqlx::query(
                        "INSERT INTO calls (id, pbx, pbx_call_id, direction, customer_number, did, stage, started_at, updated_at, state)
                         VALUES (?, ?, ?, ?, ?, ?, 'live', ?, ?, ?)
                         ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
                         WHERE calls.stage <> 'ended'",
                    )
                    .bind(header.external_id())
                    .bind(&header.pbx)
                    .bind(&header.call_id)
                    .bind(header.direction.as_str())
                    .bind(&header.customer_number)
                    .bind(&header.did)
                    .bind(header.started_at.0)
                    .bind(now)
                    .bind(state)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Tracker snapshots of the calls of `pbx` that were live when the daemon stopped.
    pub async fn live_snapshots(&self, pbx: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT state FROM calls WHERE pbx = ? AND stage <> 'ended' AND state IS NOT NULL",
        )
        .bind(pbx)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Pending actions that are due and are the oldest undelivered action of their call
    /// (actions of one call go out in order), skipping those already being delivered.
    pub async fn ready_actions(
        &self,
        now: Timestamp,
        limit: i64,
        in_flight: &[i64],
    ) -> Result<Vec<PendingAction>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.call_id, a.attempts, a.created_at, a.payload FROM actions a
             WHERE a.state = 'pending' AND a.next_attempt_at <= ?
               AND NOT EXISTS (SELECT 1 FROM actions b
                               WHERE b.call_id = a.call_id AND b.state = 'pending' AND b.id < a.id)
               AND a.id NOT IN (SELECT value FROM json_each(?))
             ORDER BY a.id LIMIT ?",
        )
        .bind(now.0)
        .bind(serde_json::to_string(in_flight).unwrap_or_else(|_| "[]".into()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let payload: String = row.try_get("payload")?;
            let action = serde_json::from_str(&payload).map_err(|e| StoreError::BadPayload {
                id,
                error: e.to_string(),
            })?;
            out.push(PendingAction {
                id,
                call_id: row.try_get("call_id")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                created_at: Timestamp(row.try_get("created_at")?),
                action,
            });
        }
        Ok(out)
    }

    /// The earliest moment a pending action becomes due, if any is waiting.
    pub async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query("SELECT MIN(next_attempt_at) FROM actions WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(Timestamp))
    }

    pub async fn mark_done(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE actions SET state = 'done', attempts = attempts + 1, last_status = ?, last_error = NULL,
                 note = ?, done_at = ? WHERE id = ?",
        )
        .bind(attempt.http_status.map(i64::from))
        .bind(note)
        .bind(Timestamp::now().0)
        .bind(action.id)
        .execute(&mut *tx)
        .await?;
        log_request(&mut tx, action, attempt, true).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt; the action stays pending until `next_attempt_at`.
    pub async fn mark_retry(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE actions SET attempts = attempts + 1, last_status = ?, last_error = ?, next_attempt_at = ?
             WHERE id = ?",
        )
        .bind(attempt.http_status.map(i64::from))
        .bind(&attempt.error)
        .bind(next_attempt_at.0)
        .bind(action.id)
        .execute(&mut *tx)
        .await?;
        log_request(&mut tx, action, attempt, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Parks an action the CRM refused for good, with the CRM's message: kept, listed,
    /// retryable by hand, never silently dropped.
    pub async fn mark_dead(
        &self,
        action: &PendingAction,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE actions SET state = 'dead', attempts = attempts + 1, last_status = ?, last_error = ? WHERE id = ?",
        )
        .bind(attempt.http_status.map(i64::from))
        .bind(&attempt.error)
        .bind(action.id)
        .execute(&mut *tx)
        .await?;
        log_request(&mut tx, action, attempt, false).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM actions GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut c = OutboxCounts::default();
        for row in rows {
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("state")?.as_str() {
                "pending" => c.pending = n,
                "done" => c.done = n,
                "dead" => c.dead = n,
                _ => {}
            }
        }
        Ok(c)
    }

    pub async fn actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, call_id, kind, state, attempts, last_status, last_error, note FROM actions ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActionRow {
                    id: r.try_get("id")?,
                    call_id: r.try_get("call_id")?,
                    kind: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    pub async fn calls(&self) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, direction, customer_number, did, stage, employee, outcome, talk_secs, started_at,
                    rang, talkers, recording, voicemail, reconstructed
             FROM calls ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
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
                })
            })
            .collect()
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

/// Upserts the call row for one update. Returns false when the update repeats a step
/// the store already has (its actions must not be sent again).
async fn record_update(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    update: &CallUpdate,
    now: i64,
) -> Result<bool, StoreError> {
    let h = &update.header;
    let id = h.external_id();
    let before = sqlx::query("SELECT stage, rang FROM calls WHERE id = ?")
        .bind(&id)
        .fetch_optional(&mut **tx)
        .await?;
    let (stage_before, rang_before): (Option<String>, Vec<String>) = match &before {
        Some(row) => (
            Some(row.try_get("stage")?),
            serde_json::from_str(&row.try_get::<String, _>("rang")?).unwrap_or_default(),
        ),
        None => (None, Vec::new()),
    };
    let fresh = match (&update.stage, stage_before.as_deref()) {
        (_, Some("ended")) => false,
        (CallStage::Answered { .. }, Some("answered")) => false,
        (CallStage::Ringing { new, .. }, _) => !new.iter().all(|e| rang_before.contains(e)),
        _ => true,
    };
    if !fresh {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO calls (id, pbx, pbx_call_id, direction, customer_number, did, stage, started_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'ringing', ?, ?)
         ON CONFLICT(id) DO UPDATE SET direction = excluded.direction,
             customer_number = COALESCE(excluded.customer_number, calls.customer_number),
             did = COALESCE(excluded.did, calls.did), updated_at = excluded.updated_at",
    )
    .bind(&id)
    .bind(&h.pbx)
    .bind(&h.call_id)
    .bind(h.direction.as_str())
    .bind(&h.customer_number)
    .bind(&h.did)
    .bind(h.started_at.0)
    .bind(now)
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
            sqlx::query("UPDATE calls SET rang = ?, stage = CASE WHEN stage = 'live' THEN 'ringing' ELSE stage END WHERE id = ?")
                .bind(serde_json::to_string(&rang).unwrap_or_default())
                .bind(&id)
                .execute(&mut **tx)
                .await?;
        }
        CallStage::Answered { extension } => {
            sqlx::query(
                "UPDATE calls SET stage = 'answered', employee = ?, answered_at = ? WHERE id = ?",
            )
            .bind(extension)
            .bind(update.at.0)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        }
        CallStage::Ended(s) => {
            sqlx::query(
                "UPDATE calls SET stage = 'ended', rang = ?, employee = ?, outcome = ?, answered_at = ?,
                     ended_at = ?, duration_secs = ?, talk_secs = ?, wait_secs = ?, talkers = ?,
                     recording = ?, voicemail = ?, queue = ?, reconstructed = ?, state = NULL
                 WHERE id = ?",
            )
            .bind(serde_json::to_string(&s.rang).unwrap_or_default())
            .bind(&s.employee)
            .bind(s.outcome.as_str())
            .bind(s.answered_at.map(|t| t.0))
            .bind(s.ended_at.0)
            .bind(i64::from(s.duration_secs))
            .bind(i64::from(s.talk_secs))
            .bind(i64::from(s.wait_secs))
            .bind(serde_json::to_string(&s.talkers).unwrap_or_default())
            .bind(&s.recording)
            .bind(s.voicemail.as_ref().and_then(|v| serde_json::to_string(v).ok()))
            .bind(&s.queue)
            .bind(i64::from(s.reconstructed))
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(true)
}

async fn log_request(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    action: &PendingAction,
    attempt: &Attempt,
    ok: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO crm_requests (action_id, call_id, kind, started_at, elapsed_ms, http_status, ok, error)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(action.id)
    .bind(&action.call_id)
    .bind(action.action.kind())
    .bind(attempt.started_at.0)
    .bind(i64::try_from(attempt.elapsed.as_millis()).unwrap_or(i64::MAX))
    .bind(attempt.http_status.map(i64::from))
    .bind(i64::from(ok))
    .bind(&attempt.error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
