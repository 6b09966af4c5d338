//! The call model: what the tracker knows about one call while it lives (`CallStage`)
//! and once it ended (`CallSummary`). These values are the input of the CRM side.

pub mod campaign;
pub mod extensions;
pub mod tracker;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

pub use campaign::{Campaign, CampaignVariables};
pub use extensions::{ExtensionRange, InternalExtensions};
pub use tracker::{CallTracker, TrackerConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From outside to an employee.
    Inbound,
    /// An employee dials an outside number.
    Outbound,
    /// Between two extensions: tracked, but no CRM effects.
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Nobody answered (for outbound calls: the far end did not answer).
    Missed,
    Busy,
    /// Congestion, unavailable, invalid number.
    Failed,
    /// Nobody answered and the caller reached voicemail.
    Voicemail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
            Outcome::Voicemail => "voicemail",
        }
    }
}

/// What identifies a call for the CRM, known from its first events on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHeader {
    pub pbx: String,
    /// The PBX's id of the call (Asterisk `Linkedid`).
    pub call_id: String,
    pub direction: Direction,
    /// The outside party: the caller of an inbound call, the dialed number of an
    /// outbound one.
    pub customer_number: Option<String>,
    /// The number the customer called (inbound) — our DID.
    pub did: Option<String>,
    pub started_at: Timestamp,
    /// Web-analytics data the dialplan set on the call (`UTM_*` channel variables).
    #[serde(default, skip_serializing_if = "Campaign::is_empty")]
    pub campaign: Campaign,
}

impl CallHeader {
    /// A stable id of this call across restarts of either side, for the CRM's
    /// `externalId` / `callExternalId`.
    pub fn external_id(&self) -> String {
        format!("cb-{}-{}", self.pbx, self.call_id)
    }
}

/// A call that ended, as the CRM side needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSummary {
    pub header: CallHeader,
    pub outcome: Outcome,
    /// Every employee extension that rang, in the order they started ringing.
    pub rang: Vec<String>,
    /// The extension that talked to the customer (inbound), or the one that dialed
    /// (outbound).
    pub employee: Option<String>,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Timestamp,
    /// Start to end, seconds.
    pub duration_secs: u32,
    /// Time the customer talked with employees, seconds (the sum over everyone who
    /// talked; hold during a transfer does not count).
    pub talk_secs: u32,
    /// Start to answer (or to the end, when nobody answered), seconds.
    pub wait_secs: u32,
    /// Every employee who talked with the customer, in the order they started.
    #[serde(default)]
    pub talkers: Vec<Talker>,
    /// The recording's path on the PBX, when the call was recorded.
    #[serde(default)]
    pub recording: Option<String>,
    #[serde(default)]
    pub voicemail: Option<Voicemail>,
    /// The queue the caller waited in, if any.
    #[serde(default)]
    pub queue: Option<String>,
    /// Every channel id (Asterisk `Uniqueid`) the call had: recordings are often named
    /// after one of them.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The end was not seen: the call vanished while we were disconnected, or went
    /// stale. Its outcome is what its last known state implies.
    #[serde(default)]
    pub reconstructed: bool,
}

/// One employee's part of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Talker {
    pub extension: String,
    pub talk_secs: u32,
}

/// A voicemail the caller reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voicemail {
    /// `102@default`.
    pub mailbox: String,
    /// The saved message as the PBX names it: a path stem without the format suffix
    /// (`/var/spool/asterisk/voicemail/default/102/INBOX/msg0000`); `None` until found.
    pub message: Option<String>,
}

/// Where a live call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStage {
    /// Employee extensions are ringing; `new` are those that started with this event.
    Ringing {
        extensions: Vec<String>,
        new: Vec<String>,
    },
    /// `extension` picked up.
    Answered {
        extension: String,
    },
    Ended(Box<CallSummary>),
}

/// One step of one call, as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUpdate {
    pub header: CallHeader,
    pub at: Timestamp,
    pub stage: CallStage,
}
