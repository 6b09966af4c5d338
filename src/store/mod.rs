//! The durable store (sqlx): calls, the outbox of CRM actions, and the log of every CRM
//! request. SQLite (embedded, the default) or PostgreSQL, chosen by `[store] url`; one set
//! of queries runs on both through sqlx's `Any` driver (`$N` placeholders, BIGINT
//! integers), with the few differences (row locks) asked of [`Backend`].
//!
//! A call's state change and the actions it causes are written in one transaction, before
//! any request is made, so a crash can delay an effect but never lose it. The call side
//! lives in `calls.rs`, the delivery side (claims, results, the CLI's operations, metrics)
//! in `outbox.rs`.

mod calls;
mod choices;
mod followers;
mod outbox;

use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::actions::CrmAction;
use crate::call::{CallHeader, CallUpdate};
use crate::time::Timestamp;

pub use outbox::{ActionFilter, ActionRow, AttemptResult, Lane, OutboxMetrics, Settled, StepState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not supported (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored action {id} is unreadable: {error}")]
    BadPayload { id: i64, error: String },
    #[error("no action with id {0}")]
    NoSuchAction(i64),
    #[error("action {id} is {state}; only {expected} actions can be {verb}")]
    WrongState {
        id: i64,
        state: String,
        expected: &'static str,
        verb: &'static str,
    },
}

/// Which database is behind the pool: the SQL differs only in row locking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// Locks the rows a transaction reads before it changes them. SQLite needs none: its
    /// writers are serialized, and our transactions write before they read.
    fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            // NO KEY UPDATE: the row's key stays as it is, so actions being inserted for
            // the call (their foreign key takes KEY SHARE on it) do not wait for this
            // lock, nor this for them; a plain FOR UPDATE deadlocked the call processor
            // against the delivery results' writer.
            Backend::Postgres => " FOR NO KEY UPDATE",
        }
    }

    /// Lets concurrent claimers pass over rows another process is claiming.
    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF a SKIP LOCKED",
        }
    }

    /// Makes the current transaction's commit not wait for the disk (PostgreSQL
    /// `synchronous_commit = off`). Only for writes whose loss in a database crash is
    /// covered elsewhere: a delivery result lost that way leaves the attempt "in doubt",
    /// and the next attempt looks before it creates (docs/delivery.md).
    fn relaxed_commit(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SET LOCAL synchronous_commit = off"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite takes one writer at a time and makes the others sleep and retry (its busy
    /// handler naps whole milliseconds); queueing this process's writers here instead
    /// keeps them off that path. Readers are not queued (WAL lets them read meanwhile).
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// An action a worker claimed for delivery.
#[derive(Debug, Clone)]
pub struct PendingAction {
    pub id: i64,
    pub call_id: String,
    /// Attempts that finished (answered or failed) before this one.
    pub attempts: u32,
    /// An earlier attempt began and its end was never recorded (the process died, or the
    /// request timed out): the CRM may or may not have done it.
    pub in_doubt: bool,
    pub created_at: Timestamp,
    /// When the current round of attempts began (creation, or a retry by hand).
    pub round_started_at: Timestamp,
    pub action: CrmAction,
}

/// Which worker holds an action, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub worker: String,
    pub until: Timestamp,
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
    /// When this process last wrote the row, by its own clock (for an ended call: about
    /// when it learned of the end).
    pub updated_at: i64,
}

/// One thing to write in a `Store::commit` batch.
#[derive(Debug, Clone)]
pub enum Commit {
    /// A call's new stage and the CRM actions it causes.
    Update {
        update: CallUpdate,
        actions: Vec<CrmAction>,
    },
    /// A call's new stage and the actions this process is sending already (pop-ups sent
    /// as the ringing was read): stored claimed by `claim`, so nobody else sends them
    /// while their answers are on the way; the sender records how they went.
    Sending {
        update: CallUpdate,
        actions: Vec<CrmAction>,
        claim: Claim,
    },
    /// The tracker's state of a live call (JSON), to resume it after a restart.
    Snapshot { header: CallHeader, state: String },
    /// Actions for a call without a new stage (tools, tests, later follow-ups).
    Actions {
        header: CallHeader,
        actions: Vec<CrmAction>,
    },
}

/// Outbox totals by state, as `/health` shows them.
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
    /// Opens (creating a SQLite file if needed) the database and applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?;
        let (url, max_connections) = match backend {
            // Readers work side by side in WAL mode: the deliveries' reads must not queue
            // behind each other (pop-ups wait in that queue too). Writers take turns.
            Backend::Sqlite => (sqlite_url_creating(url), 8),
            // Every delivery in flight writes its result: room for them all.
            Backend::Postgres => (url.to_string(), 24),
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the CLI and a second reader work while the daemon
                        // writes; NORMAL sync in WAL mode survives a process crash
                        // (SIGKILL), which is what the outbox guards against. A page
                        // cache of 1 MiB per connection (the default is 2): the hot pages
                        // are few (the pending actions, live calls), the kernel caches
                        // the file, and eight connections' caches were a quarter of the
                        // daemon's memory.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;
                             PRAGMA cache_size = -1024;",
                        )
                        .await?;
                    } else {
                        // The outbox table grows from empty and its rows change state all
                        // the time: a plan cached for the first, tiny table (a generic plan)
                        // turns the claim query into a scan of everything. Plan each time.
                        conn.execute("SET plan_cache_mode = force_custom_plan")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            writes: Default::default(),
        })
    }

    /// Held around a write on SQLite (see `Store::writes`); nothing on PostgreSQL, whose
    /// row locks let writers work side by side.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writes.lock().await),
            Backend::Postgres => None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A SQLite URL that creates the file when it is missing (`mode=rwc`), unless the URL
/// says otherwise.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            sqlite_url_creating("sqlite://cb.db"),
            "sqlite://cb.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite:///var/lib/cb.db?cache=shared"),
            "sqlite:///var/lib/cb.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating("sqlite://cb.db?mode=ro"),
            "sqlite://cb.db?mode=ro"
        );
        assert_eq!(sqlite_url_creating("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn backends_are_told_by_their_scheme() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://postgres@127.0.0.1/test"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://h/db"), None);
    }
}
