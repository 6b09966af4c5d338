//! What employees chose on the operator panel for a call: which of the clients sharing
//! the caller's number the call is about. Kept with the call, read by the decisions made
//! after it.

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::Timestamp;

impl Store {
    /// `extension`'s employee says `call_id` is about `client_id` (a later choice wins).
    pub async fn choose_client(
        &self,
        call_id: &str,
        client_id: &str,
        extension: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO panel_choices (call_id, client_id, extension, chosen_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (call_id) DO UPDATE SET client_id = excluded.client_id,
                 extension = excluded.extension, chosen_at = excluded.chosen_at",
        )
        .bind(call_id)
        .bind(client_id)
        .bind(extension)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The client chosen for `call_id`, if anyone chose.
    pub async fn chosen_client(&self, call_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT client_id FROM panel_choices WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }
}
