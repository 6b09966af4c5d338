//! What callbridge counts, for `GET /metrics` (Prometheus text format). Every series has
//! few labels with few values (a PBX name, an event kind, an outcome, a CRM endpoint
//! with ids replaced by `{id}`, an HTTP status), so the number of series stays small
//! however many calls pass:
//!
//! | series | labels |
//! |---|---|
//! | `callbridge_pbx_events_total` | `pbx`, `event` (the `PbxEvent` kind) |
//! | `callbridge_pbx_connected` | `pbx` (1 or 0, at scrape time) |
//! | `callbridge_pbx_reconnects_total` | `pbx` |
//! | `callbridge_live_calls` | `pbx` |
//! | `callbridge_calls_total` | `pbx`, `direction`, `outcome` |
//! | `callbridge_crm_requests_total` | `endpoint`, `status` (HTTP status, or `error`) |
//! | `callbridge_outbox_actions` | `state` (pending, in_flight, failed, dead, done; at scrape time) |
//!
//! The recorder is process-wide (the `metrics` crate's global), installed once.

use std::sync::OnceLock;

use metrics::{counter, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::call::CallSummary;
use crate::pbx::event::{PbxEvent, PbxEventKind};
use crate::pbx::status::{LinkState, PbxStatus};
use crate::store::OutboxMetrics;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process); `None` when another recorder
/// was installed first (then `/metrics` says so).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// The text `/metrics` answers: the counters as they are, the gauges read now.
pub fn render(status: &PbxStatus, outbox: Option<&OutboxMetrics>) -> Option<String> {
    let handle = install()?;
    for (name, link) in status.snapshot() {
        let connected = matches!(link.state, LinkState::Connected);
        gauge!("callbridge_pbx_connected", "pbx" => name.clone())
            .set(f64::from(u8::from(connected)));
        counter!("callbridge_pbx_reconnects_total", "pbx" => name).absolute(link.reconnects);
    }
    if let Some(o) = outbox {
        for (state, n) in [
            ("pending", o.pending),
            ("in_flight", o.in_flight),
            ("failed", o.failed),
            ("dead", o.dead),
            ("done", o.done),
        ] {
            gauge!("callbridge_outbox_actions", "state" => state).set(n as f64);
        }
    }
    Some(handle.render())
}

/// The name of an event's kind, as the `event` label.
pub fn kind_name(kind: &PbxEventKind) -> &'static str {
    match kind {
        PbxEventKind::ChannelCreated { .. } => "channel_created",
        PbxEventKind::CallerKnown { .. } => "caller_known",
        PbxEventKind::DialBegin { .. } => "dial_begin",
        PbxEventKind::DialEnd { .. } => "dial_end",
        PbxEventKind::HungUp { .. } => "hung_up",
        PbxEventKind::Bridged { .. } => "bridged",
        PbxEventKind::Unbridged { .. } => "unbridged",
        PbxEventKind::QueueAgentRinging { .. } => "queue_agent_ringing",
        PbxEventKind::QueueAgentConnected { .. } => "queue_agent_connected",
        PbxEventKind::QueueAbandoned { .. } => "queue_abandoned",
        PbxEventKind::VoicemailStarted { .. } => "voicemail_started",
        PbxEventKind::DialResult { .. } => "dial_result",
        PbxEventKind::Recording { .. } => "recording",
        PbxEventKind::VoicemailLeft { .. } => "voicemail_left",
        PbxEventKind::Variable { .. } => "variable",
        PbxEventKind::PairedWith { .. } => "paired_with",
        PbxEventKind::Originated => "originated",
    }
}

/// One PBX's event counters and live-call gauge, their handles kept so that counting an
/// event is one atomic add (no label lookup on the hot path).
pub struct PbxMeters {
    pbx: String,
    events: Vec<(&'static str, Counter)>,
    live_calls: Gauge,
}

impl PbxMeters {
    pub fn new(pbx: &str) -> Self {
        install();
        PbxMeters {
            pbx: pbx.to_string(),
            events: Vec::new(),
            live_calls: gauge!("callbridge_live_calls", "pbx" => pbx.to_string()),
        }
    }

    pub fn event(&mut self, event: &PbxEvent) {
        let kind = kind_name(&event.kind);
        match self.events.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => c.increment(1),
            None => {
                let c = counter!("callbridge_pbx_events_total", "pbx" => self.pbx.clone(), "event" => kind);
                c.increment(1);
                self.events.push((kind, c));
            }
        }
    }

    pub fn live_calls(&self, n: usize) {
        self.live_calls.set(n as f64);
    }

    pub fn call_ended(&self, summary: &CallSummary) {
        counter!(
            "callbridge_calls_total",
            "pbx" => self.pbx.clone(),
            "direction" => summary.header.direction.as_str(),
            "outcome" => summary.outcome.as_str()
        )
        .increment(1);
    }
}

/// A CRM request and how it ended (`status` an HTTP status, or `error` when no answer
/// came).
pub fn crm_request(path: &str, status: Option<u16>) {
    let status = match status {
        Some(code) => code.to_string(),
        None => "error".to_string(),
    };
    counter!("callbridge_crm_requests_total", "endpoint" => endpoint(path), "status" => status)
        .increment(1);
}

/// A request path with its ids replaced (`/api/v5/orders/cb-7/edit` →
/// `/api/v5/orders/{id}/edit`, Creatio's `/0/odata/Contact(<guid>)` →
/// `/0/odata/Contact({id})`): a segment with a digit in it, or that is not a plain
/// word, is an id (`v5`, `0` and `$batch` excepted).
pub fn endpoint(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    // OData names its entity sets in PascalCase (`Contact`, `CaseStatus`).
    let odata = path.contains("/odata");
    path.split('/')
        .map(|segment| {
            let word = segment.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b == b'-'
                    || b == b'_'
                    || (odata && b.is_ascii_uppercase())
            });
            // OData's `Entity(<key>)`.
            if let Some((entity, _)) = segment.split_once('(') {
                if !entity.is_empty() && entity.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return format!("{entity}({{id}})");
                }
            }
            if segment.is_empty() || word || matches!(segment, "v5" | "0" | "$batch") {
                segment.to_string()
            } else {
                "{id}".to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_their_words_and_lose_their_ids() {
        assert_eq!(
            endpoint("/api/v5/customers/create"),
            "/api/v5/customers/create"
        );
        assert_eq!(
            endpoint("/api/v5/orders/cb-ord-17/edit"),
            "/api/v5/orders/{id}/edit"
        );
        assert_eq!(endpoint("/api/v5/customers/1234"), "/api/v5/customers/{id}");
        assert_eq!(
            endpoint("/api/v5/telephony/call/event?x=1"),
            "/api/v5/telephony/call/event"
        );
        assert_eq!(
            endpoint("/api/v5/integration-modules/Callbridge/edit"),
            "/api/v5/integration-modules/{id}/edit"
        );
        assert_eq!(
            endpoint("/0/odata/ContactCommunication"),
            "/0/odata/ContactCommunication"
        );
        assert_eq!(
            endpoint("/0/odata/Case(ae5f2f10-f46b-1410-fd9a-0050ba5d6c38)"),
            "/0/odata/Case({id})"
        );
        assert_eq!(endpoint("/odata/$batch"), "/odata/$batch");
    }
}
