//! Creatio's fixed lookup ids (shipped with every installation: case statuses, activity
//! types, categories, statuses and priorities, call directions, communication types,
//! queue item statuses; `../shared/reference/creatio.md` gives their sources), and the
//! values an installation names for itself (`[creatio] case_origin`, `case_category`,
//! `missed_calls_queue`), looked up by `Name` once.

use serde_json::Value;
use tracing::warn;

use super::odata::{guid, literal};
use super::CreatioCrm;
use crate::crm::CrmError;
use crate::ids::CrmId;

/// `CaseStatus` New.
pub(super) const CASE_STATUS_NEW: &str = "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38";
/// `ActivityType` Task.
pub(super) const ACTIVITY_TYPE_TASK: &str = "fbe0acdc-cfc0-df11-b00f-001d60e938c6";
/// `ActivityCategory` To do.
pub(super) const ACTIVITY_CATEGORY_TODO: &str = "f51c4643-58e6-df11-971b-001d60e938c6";
/// `ActivityStatus` Not started and Completed.
pub(super) const ACTIVITY_STATUS_NOT_STARTED: &str = "384d4b84-58e6-df11-971b-001d60e938c6";
pub(super) const ACTIVITY_STATUS_COMPLETED: &str = "4bdbb88f-58e6-df11-971b-001d60e938c6";
/// `ActivityPriority`, the default one.
pub(super) const ACTIVITY_PRIORITY_DEFAULT: &str = "ab96fa02-7fe6-df11-971b-001d60e938c6";
/// `CommunicationType` Mobile.
pub(super) const COMMUNICATION_MOBILE: &str = "d4a2dc80-30ca-df11-9b2a-001d60e938c6";
/// `CallDirection` Incoming and Outgoing.
pub(super) const CALL_INCOMING: &str = "1d96a65f-2131-4916-8825-2d142b1000b2";
pub(super) const CALL_OUTGOING: &str = "53f71b5f-7e17-4cf5-bf14-6a59212db422";
/// `QueueItemStatus` New.
pub(super) const QUEUE_ITEM_NEW: &str = "2b341a1d-6fa1-4960-9c85-fef60d1bbcc4";

impl CreatioCrm {
    /// The id of the `entity` record named `name`, read once; `None` (logged) when the
    /// installation has none: the column is left for Creatio's default.
    pub(super) async fn named(
        &self,
        entity: &'static str,
        name: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let key = (entity, name.to_string());
        if let Some(known) = self.cached(&key) {
            return Ok(known);
        }
        let found = self
            .list(
                entity,
                &[
                    ("$filter", format!("Name eq {}", literal(name))),
                    ("$select", "Id,Name".into()),
                    ("$top", "1".into()),
                ],
            )
            .await?;
        let id = found.first().and_then(|r: &Value| guid(r, "Id"));
        if id.is_none() {
            warn!(
                entity,
                name, "Creatio has no record of this name; the column is left to Creatio's default"
            );
        }
        self.remember(key, id);
        Ok(id)
    }

    /// A value looked up before (`Some(None)`: looked up, and not there).
    pub(super) fn cached(&self, key: &super::LookupKey) -> Option<Option<CrmId>> {
        self.looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    pub(super) fn remember(&self, key: super::LookupKey, id: Option<CrmId>) {
        self.looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, id);
    }
}
