//! Which processes follow which PBX. Each process says it follows a PBX every few
//! seconds; one that stops saying so (stopped, crashed) is forgotten after a while. A
//! process alone on its PBX may send a ringing call's pop-up before the call is stored
//! (see `express`); with company, the store must first say which of them records a step.

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::Timestamp;

impl Store {
    /// Records that `worker` follows `pbx` now, forgets followers not heard of since
    /// `alive_since`, and returns the others that follow it.
    pub async fn follow(
        &self,
        pbx: &str,
        worker: &str,
        now: Timestamp,
        alive_since: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pbx_followers (pbx, worker, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (pbx, worker) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(pbx)
        .bind(worker)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pbx_followers WHERE pbx = $1 AND seen_at < $2")
            .bind(pbx)
            .bind(alive_since.0)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT worker FROM pbx_followers WHERE pbx = $1 AND worker <> $2")
            .bind(pbx)
            .bind(worker)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// `worker` no longer follows `pbx` (a clean stop, or a process found gone).
    pub async fn unfollow(&self, pbx: &str, worker: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM pbx_followers WHERE pbx = $1 AND worker = $2")
            .bind(pbx)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
