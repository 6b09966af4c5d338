//! `GET /metrics` (Prometheus text) and `GET /health` over HTTP while a scripted PBX
//! connects, carries a call, and drops. In a test binary of its own: the metrics
//! recorder is one per process.

mod common;

use std::time::Duration;

use common::Harness;

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, r.text().await.unwrap_or_default())
}

/// The value of the series whose name and labels include all of `parts`.
fn value(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_calls_the_crm_and_the_pbx_link() {
    let h = Harness::start_with(common::crm_options(), "reconnect_max_delay = \"1s\"").await;
    let base = format!("http://{}", h.running.http_addr);
    h.play("iax2/inbound_answered").await;
    h.wait_crm("the call in the history", |s| !s.calls.is_empty())
        .await;
    h.wait_outbox_settled().await;

    let (status, content_type, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let office = "pbx=\"office\"";
    assert!(
        value(
            &text,
            "callbridge_pbx_events_total",
            &[office, "event=\"dial_begin\""]
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "callbridge_calls_total",
            &[office, "direction=\"inbound\"", "outcome=\"answered\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "callbridge_live_calls", &[office]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "callbridge_crm_requests_total",
            &[
                "endpoint=\"/api/v5/telephony/calls/upload\"",
                "status=\"200\""
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, "callbridge_outbox_actions", &["state=\"done\""]) >= Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "callbridge_outbox_actions", &["state=\"pending\""]),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "callbridge_pbx_connected", &[office]),
        Some(1.0),
        "{text}"
    );
    let (status, _, body) = get(&format!("{base}/health")).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["crm"]["reachable"], true, "{body}");
    assert!(health["crm"]["last_answer_at"].is_string(), "{body}");
    assert_eq!(health["pbx"]["office"]["state"], "connected", "{body}");
    assert!(health["version"].is_string(), "{body}");

    // The PBX goes away: /health says 503, /metrics says disconnected.
    h.pbx.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(&format!("{base}/health")).await;
        let (_, _, text) = get(&format!("{base}/metrics")).await;
        if status == 503 && value(&text, "callbridge_pbx_connected", &[office]) == Some(0.0) {
            assert!(body.contains("\"office\""), "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{status} {body}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No call id, phone number or other high-cardinality value in any label.
    for line in text_lines(&get(&format!("{base}/metrics")).await.2) {
        assert!(
            !line.contains("cb-office-") && !line.contains("+7916"),
            "{line}"
        );
    }
    h.stop().await;
}

fn text_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}
