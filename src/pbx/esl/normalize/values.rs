//! How FreeSWITCH's header values read in the common vocabulary: event times, caller
//! ids, queue names, channel names as endpoints, and hang-up causes as dial outcomes and
//! Q.850 codes.

use crate::pbx::event::{DialOutcome, Id};
use crate::time::Timestamp;

/// `Event-Date-Timestamp` is microseconds since the epoch.
pub(super) fn timestamp(value: Option<&str>, received_at: Timestamp) -> Timestamp {
    value
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|us| *us > 0)
        .map(Timestamp)
        .unwrap_or(received_at)
}

pub(super) fn known(value: Option<&str>) -> Option<Id> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "_undef_")
        .map(Id::from)
}

/// `sales@default` → `sales`: the queue's name without its domain, as Asterisk names it.
pub(super) fn queue_name(queue: &str) -> Id {
    Id::from(queue.split('@').next().unwrap_or(queue))
}

/// The extension or number a channel belongs to, from its name:
/// `sofia/internal/101@127.0.0.1:5090` → `101`, `sofia/external/+7916…@host` →
/// `+7916…`, `user/102@domain` → `102`, `loopback/103-a` → `103`.
pub fn endpoint_of_channel(name: &str) -> Option<Id> {
    let (tech, rest) = name.split_once('/')?;
    // The user is in the last part: `sofia/<profile>/<user>@…`,
    // `sofia/gateway/<gateway>/<number>`, `user/<user>@<domain>`.
    let last = rest.rsplit('/').next()?;
    let user = last.split('@').next()?;
    let user = if tech == "loopback" {
        user.rsplit_once('-').map_or(user, |(u, _)| u)
    } else {
        user
    };
    let user = user.strip_prefix("sip:").unwrap_or(user);
    (!user.is_empty()).then(|| Id::from(user))
}

/// How a dial attempt ended, from a leg's `Hangup-Cause` or a caller's
/// `originate_disposition`.
pub(super) fn dial_outcome(cause: &str) -> DialOutcome {
    match cause {
        "SUCCESS" | "ANSWER" => DialOutcome::Answered,
        "USER_BUSY" | "CALL_REJECTED" => DialOutcome::Busy,
        "NO_ANSWER"
        | "NO_USER_RESPONSE"
        | "ALLOTTED_TIMEOUT"
        | "RECOVERY_ON_TIMER_EXPIRE"
        | "PROGRESS_TIMEOUT"
        | "MEDIA_TIMEOUT" => DialOutcome::NoAnswer,
        "ORIGINATOR_CANCEL" | "LOSE_RACE" | "PICKED_OFF" | "NORMAL_CLEARING" => {
            DialOutcome::Cancelled
        }
        "" | "NONE" | "UNSPECIFIED" => DialOutcome::Other,
        _ => DialOutcome::Failed,
    }
}

/// Q.850 codes of FreeSWITCH's cause names, for the ones without
/// `variable_hangup_cause_q850`. FreeSWITCH's own causes (above 127) keep their numbers.
pub(super) fn q850_of(cause: &str) -> Option<u16> {
    Some(match cause {
        "UNSPECIFIED" => 0,
        "UNALLOCATED_NUMBER" => 1,
        "NO_ROUTE_DESTINATION" => 3,
        "NORMAL_CLEARING" => 16,
        "USER_BUSY" => 17,
        "NO_USER_RESPONSE" => 18,
        "NO_ANSWER" => 19,
        "SUBSCRIBER_ABSENT" => 20,
        "CALL_REJECTED" => 21,
        "DESTINATION_OUT_OF_ORDER" => 27,
        "INVALID_NUMBER_FORMAT" => 28,
        "NORMAL_UNSPECIFIED" => 31,
        "NORMAL_CIRCUIT_CONGESTION" => 34,
        "NETWORK_OUT_OF_ORDER" => 38,
        "NORMAL_TEMPORARY_FAILURE" => 41,
        "SWITCH_CONGESTION" => 42,
        "ORIGINATOR_CANCEL" => 487,
        "LOSE_RACE" => 502,
        "PICKED_OFF" => 601,
        "ALLOTTED_TIMEOUT" => 602,
        "USER_NOT_REGISTERED" => 606,
        "PROGRESS_TIMEOUT" => 607,
        _ => return None,
    })
}
