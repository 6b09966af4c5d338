//! Which way a call goes and who it belongs to: the first channel's extension (its
//! device, or the caller id of a pipe an originate placed), the first dial that decides
//! inbound / outbound / internal, the number dialed, and the ringing of employees.

use super::*;

/// No CRM effect depends yet on who the call is from or which way it goes: nobody has
/// been rung (a pop-up) and nobody has answered.
pub(super) fn undecided(call: &LiveCall) -> bool {
    call.announced.is_empty() && call.answer.is_none() && call.segments.is_empty()
}

/// The employee extension the call's first channel stands for: its device's extension;
/// or, for a Local or loopback half (which no device is behind: an originate's first
/// channel, `Local/<number>@<context>`), the extension its caller id names. `None` for a
/// channel from outside.
pub(super) fn origin_extension<'c>(
    call: &'c LiveCall,
    internal: &InternalExtensions,
) -> Option<&'c Id> {
    if call.origin_from_trunk {
        return None;
    }
    if let Some(e) = call
        .origin_endpoint
        .as_ref()
        .filter(|e| internal.contains(e))
    {
        return Some(e);
    }
    call.caller_number
        .as_ref()
        .filter(|n| call.origin_virtual && internal.contains(n))
}

pub(super) fn origin_is_internal(call: &LiveCall, internal: &InternalExtensions) -> bool {
    origin_extension(call, internal).is_some()
}

/// A call that never dialed anyone is inbound when it came from outside.
pub(super) fn direction_of(call: &LiveCall, internal: &InternalExtensions) -> Direction {
    call.direction
        .unwrap_or(if !origin_is_internal(call, internal) {
            Direction::Inbound
        } else if reconstructed_outside_number(call, internal).is_some() {
            Direction::Outbound
        } else {
            Direction::Internal
        })
}

/// The outside number an extension dialed, for a call we know only in part (a gap hid
/// its dial and its far end hung up meanwhile): the number the extension's channel sits
/// on in the dialplan, when it is a phone number (7+ digits) and no extension of ours.
pub(super) fn reconstructed_outside_number<'c>(
    call: &'c LiveCall,
    internal: &InternalExtensions,
) -> Option<&'c str> {
    if call.direction.is_some() {
        return None;
    }
    let exten = call.origin_exten.as_deref()?;
    let digits = exten.strip_prefix('+').unwrap_or(exten);
    (digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()) && !internal.contains(exten))
        .then_some(exten)
}

/// The first dial decides: from outside → inbound; from an extension to an extension →
/// internal; from an extension to anything else → outbound.
pub(super) fn decide_direction(
    call: &mut LiveCall,
    internal: &InternalExtensions,
    dest_internal: bool,
    dialed: Option<&Id>,
) {
    if call.direction.is_some() {
        return;
    }
    let from_extension = origin_is_internal(call, internal);
    if from_extension && dest_internal && call.origin_originated {
        // An originate that rings the employee's own phone first (`Local/101@…`,
        // `loopback/101/…`): the call is theirs, and the next dial says where it goes.
        return;
    }
    call.direction = Some(match (from_extension, dest_internal) {
        // Not known where the call began, or the PBX placed its first channel (an
        // originate naming no extension of ours), and it went out through a trunk that is
        // not its first channel: the call goes out.
        (false, false) if call.origin_unseen || call.origin_originated => Direction::Outbound,
        (false, _) => Direction::Inbound,
        (true, true) => Direction::Internal,
        (true, false) => Direction::Outbound,
    });
    if call.direction == Some(Direction::Outbound) {
        // The number the extension dialed into the dialplan; not when the first channel
        // sits on an extension of ours (an originate ringing the employee first: the
        // dial then says whom it calls).
        call.dialed_number = call
            .origin_exten
            .clone()
            .filter(|e| e != "s" && !internal.contains(e))
            .or_else(|| dialed.cloned());
    }
}

/// Decides the direction again from the call's legs, after the origin became known.
pub(super) fn redecide_direction(call: &mut LiveCall, internal: &InternalExtensions) {
    if call.legs.is_empty() {
        return;
    }
    call.direction = None;
    call.dialed_number = None;
    for leg in call.legs.clone() {
        decide_direction(call, internal, leg.internal, leg.number.as_ref());
    }
}

/// A newly ringing employee extension of an inbound call.
pub(super) fn ringing(
    call: &mut LiveCall,
    endpoint: Option<&str>,
    internal: bool,
) -> Option<CallStage> {
    if call.direction != Some(Direction::Inbound) || !internal {
        return None;
    }
    let ext = endpoint?;
    if call.announced.iter().any(|a| a == ext) {
        return None;
    }
    call.announced.push(ext.to_string());
    Some(CallStage::Ringing {
        extensions: call.announced.clone(),
        new: vec![ext.to_string()],
    })
}

/// `trunk/89031112233` → `89031112233`; `PJSIP/89031112233@provider` → `89031112233`.
pub(super) fn number_of_dial_string(dial: &str) -> Option<Id> {
    let tail = dial.rsplit('/').next()?;
    let number = tail.split('@').next()?;
    (!number.is_empty()).then(|| number.into())
}
