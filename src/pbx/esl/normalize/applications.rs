//! What the applications running on a leg report, as `PbxEvent`s: voicemail
//! (`CHANNEL_EXECUTE voicemail`, `vm::maintenance leave-message`), recordings
//! (`RECORD_START`/`RECORD_STOP`), mod_callcenter queues (`callcenter::info`), and the
//! caller's campaign variables (`variable_<name>` headers).

use crate::pbx::esl::normalize::values::{endpoint_of_channel, queue_name, timestamp};
use crate::pbx::esl::normalize::{EslNormalizer, Skip, COMMON};
use crate::pbx::esl::plain::PlainEvent;
use crate::pbx::event::{ChannelId, Id, PbxEvent, PbxEventKind};
use crate::time::Timestamp;

impl EslNormalizer {
    pub(super) fn executed(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        // `Application` is among the last headers: read from the end, most executes
        // (`set`, `answer` …) are dropped without reading the rest.
        let [app, data] = event.get_many_from_end(["Application", "Application-Data"]);
        let app = app.as_deref().unwrap_or_default();
        if !matches!(app, "voicemail" | "bridge" | "callcenter") {
            return Err(Skip::Ignored);
        }
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let at = timestamp(date.as_deref(), received_at);
        // The caller's campaign (UTM) variables, set by the dialplan before it rings
        // anyone: known before the call rings, as on Asterisk.
        let caller = self
            .legs
            .get(uuid.as_ref())
            .is_some_and(|l| l.dialer.is_none());
        let before = out.len();
        if caller && !self.variables.is_empty() {
            let call = self.call_of(&uuid);
            self.variables_of(event, at, &call, &ChannelId(uuid.as_ref().into()), out);
        }
        if app != "voicemail" {
            return if out.len() > before {
                Ok(())
            } else {
                Err(Skip::Ignored)
            };
        }
        // `voicemail [check] [auth] <profile> <domain> [<id>]`: `check` is a caller
        // listening to their own mailbox, not a message being left.
        let words: Vec<&str> = data
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if words.first().is_some_and(|w| *w == "check") || words.len() < 3 {
            return if out.len() > before {
                Ok(())
            } else {
                Err(Skip::Ignored)
            };
        }
        let mailbox = Id::from(format!("{}@{}", words[2], words[1]));
        if let Some(leg) = self.legs.get_mut(uuid.as_ref()) {
            leg.in_voicemail = true;
        }
        out.push(PbxEvent {
            at,
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::VoicemailStarted { mailbox },
        });
        Ok(())
    }

    fn variables_of(
        &self,
        event: &PlainEvent<'_>,
        at: Timestamp,
        call: &Id,
        channel: &ChannelId,
        out: &mut Vec<PbxEvent>,
    ) {
        let headers: Vec<&str> = self.variables.iter().map(|(h, _)| h.as_str()).collect();
        self.push_variables(event.get_each(&headers), at, call, channel, out);
    }

    /// `Variable`s of the configured campaign variables, from their values in order.
    pub(super) fn push_variables(
        &self,
        values: Vec<Option<std::borrow::Cow<'_, str>>>,
        at: Timestamp,
        call: &Id,
        channel: &ChannelId,
        out: &mut Vec<PbxEvent>,
    ) {
        for ((_, name), value) in self.variables.iter().zip(values) {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out.push(PbxEvent {
                    at,
                    call: call.clone(),
                    channel: channel.clone(),
                    kind: PbxEventKind::Variable {
                        name: name.clone(),
                        value: value.as_ref().into(),
                    },
                });
            }
        }
    }

    pub(super) fn recording(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [path] = event.get_many_from_end(["Record-File-Path"]);
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = uuid.ok_or(Skip::Malformed("Unique-ID"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or(Skip::Malformed("Record-File-Path"))?;
        if self.legs.get(uuid.as_ref()).is_some_and(|l| l.in_voicemail) {
            // The voicemail application recording the message: `vm::maintenance` names it.
            return Err(Skip::Ignored);
        }
        out.push(PbxEvent {
            at: timestamp(date.as_deref(), received_at),
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::Recording {
                path: path.into_owned(),
            },
        });
        Ok(())
    }

    pub(super) fn voicemail_left(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [action, user, domain, path, vm_uuid] = event.get_many_from_end([
            "VM-Action",
            "VM-User",
            "VM-Domain",
            "VM-File-Path",
            "VM-UUID",
        ]);
        if action.as_deref() != Some("leave-message") {
            return Err(Skip::Ignored);
        }
        let [uuid, date] = event.get_many([COMMON[0], COMMON[1]]);
        let uuid = vm_uuid.or(uuid).ok_or(Skip::Malformed("VM-UUID"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or(Skip::Malformed("VM-File-Path"))?;
        let mailbox = format!(
            "{}@{}",
            user.as_deref().unwrap_or_default(),
            domain.as_deref().unwrap_or_default()
        );
        out.push(PbxEvent {
            at: timestamp(date.as_deref(), received_at),
            call: self.call_of(&uuid),
            channel: ChannelId(uuid.as_ref().into()),
            kind: PbxEventKind::VoicemailLeft {
                mailbox: mailbox.into(),
                message: path.into_owned(),
            },
        });
        Ok(())
    }

    pub(super) fn callcenter(
        &mut self,
        event: &PlainEvent<'_>,
        received_at: Timestamp,
        out: &mut Vec<PbxEvent>,
    ) -> Result<(), Skip> {
        let [action, member, agent, queue, cause] = event.get_many_from_end([
            "CC-Action",
            "CC-Member-Session-UUID",
            "CC-Agent-UUID",
            "CC-Queue",
            "CC-Cause",
        ]);
        if !matches!(
            action.as_deref(),
            Some("bridge-agent-start" | "member-queue-end")
        ) {
            return Err(Skip::Ignored);
        }
        let [date, channel] = event.get_many([COMMON[1], COMMON[2]]);
        let at = timestamp(date.as_deref(), received_at);
        let kind = match action.as_deref() {
            Some("bridge-agent-start") => {
                let agent = agent.ok_or(Skip::Malformed("CC-Agent-UUID"))?;
                let endpoint = self
                    .legs
                    .get(agent.as_ref())
                    .and(channel.as_deref())
                    .and_then(endpoint_of_channel);
                PbxEventKind::QueueAgentConnected {
                    queue: queue_name(queue.as_deref().unwrap_or_default()),
                    dest: Some(ChannelId(agent.as_ref().into())),
                    endpoint,
                }
            }
            // The caller left the queue without an agent: hung up, or broke out to the
            // rest of the dialplan (`CC-Cancel-Reason`).
            Some("member-queue-end") if cause.as_deref() == Some("Cancel") => {
                PbxEventKind::QueueAbandoned {
                    queue: queue_name(queue.as_deref().unwrap_or_default()),
                }
            }
            _ => return Err(Skip::Ignored),
        };
        let member = member.ok_or(Skip::Malformed("CC-Member-Session-UUID"))?;
        out.push(PbxEvent {
            at,
            call: self.call_of(&member),
            channel: ChannelId(member.as_ref().into()),
            kind,
        });
        Ok(())
    }
}
