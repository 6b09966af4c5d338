//! The answer to `api show channels as json`, read into the tracker's channel list: each
//! leg under its call, and which leg dialed which. Pure: the client sends the command
//! and hands the answer's body here.

use crate::pbx::esl::normalize::endpoint_of_channel;
use crate::pbx::event::{ChannelId, Id, LiveChannel};
use crate::time::Timestamp;

/// One row of `show channels as json` (FreeSWITCH 1.10: every value is a string).
#[derive(Debug, serde::Deserialize)]
struct ChannelRow {
    uuid: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    created_epoch: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    cid_num: String,
    #[serde(default)]
    dest: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    application: String,
    #[serde(default)]
    application_data: String,
    #[serde(default)]
    callstate: String,
    #[serde(default)]
    call_uuid: String,
}

#[derive(Debug, serde::Deserialize)]
struct ChannelList {
    #[serde(default)]
    rows: Vec<ChannelRow>,
}

/// A leg and the leg it was dialed for.
pub type Dialed = (ChannelId, ChannelId);

/// Reads `show channels as json` into the tracker's channel list, each leg under its
/// call: an inbound leg is its own call; an outbound leg (one FreeSWITCH dialed)
/// belongs to the call of the leg it is bridged or ringing for (`call_uuid`, which
/// names the A-leg while the legs are joined). Also returns (leg, dialer) pairs. `None`
/// when the answer is no channel list (FreeSWITCH says `+OK` with no JSON when there are
/// no channels: an empty list).
pub fn live_channels(body: &[u8], now: Timestamp) -> Option<(Vec<LiveChannel>, Vec<Dialed>)> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.starts_with("-ERR") {
        return None;
    }
    let list: ChannelList = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).ok()?
    } else {
        // `{"row_count":0}` on some versions, nothing at all on others.
        ChannelList { rows: Vec::new() }
    };
    let mut channels = Vec::with_capacity(list.rows.len());
    let mut dialers = Vec::new();
    for row in &list.rows {
        let outbound = row.direction == "outbound";
        let dialed_by = (outbound && !row.call_uuid.is_empty() && row.call_uuid != row.uuid)
            .then(|| ChannelId(Id::from(row.call_uuid.as_str())));
        if let Some(dialer) = &dialed_by {
            dialers.push((ChannelId(Id::from(row.uuid.as_str())), dialer.clone()));
        }
        let call = match &dialed_by {
            Some(dialer) => dialer.0.as_str(),
            None => row.uuid.as_str(),
        };
        let created = row
            .created_epoch
            .trim()
            .parse::<i64>()
            .map(Timestamp::from_secs)
            .unwrap_or(now);
        let opt = |s: &str| (!s.is_empty()).then(|| Id::from(s));
        channels.push(LiveChannel {
            channel: ChannelId(Id::from(row.uuid.as_str())),
            call: Id::from(call),
            name: Id::from(row.name.as_str()),
            endpoint: endpoint_of_channel(&row.name),
            up: matches!(row.callstate.as_str(), "ACTIVE" | "HELD"),
            ringing: matches!(row.callstate.as_str(), "RINGING" | "EARLY"),
            caller_number: opt(&row.cid_num),
            exten: opt(&row.dest),
            context: opt(&row.context),
            // `show channels` has no bridge column: its silence says nothing.
            bridge: None,
            shows_bridge: false,
            dialed_by,
            hanging_up: row.callstate == "HANGUP",
            duration_secs: now.secs_since(created),
            application: opt(&row.application).map(|a| a.to_string()),
            application_data: opt(&row.application_data).map(|a| a.to_string()),
        });
    }
    Some((channels, dialers))
}
