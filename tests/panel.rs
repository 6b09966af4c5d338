//! The operator panel over real sockets (HTTP; the browser tests drive the same routes):
//! `callbridge panel-link` prints a signed link; opening it sets an HttpOnly, SameSite
//! session cookie; `/panel` renders the employee's page; `/panel/events` streams the cards
//! of the calls on their extension as the PBX's bytes arrive, and nobody else's; forged,
//! expired and missing credentials are refused.

mod common;

use std::time::{Duration, Instant};

use callbridge::links::LinkKey;
use callbridge::panel::PanelAccess;
use callbridge::time::Timestamp;
use common::Harness;
use serde_json::Value;

const LINK_SECRET: &str = "test-link-secret";

async fn panel_harness() -> Harness {
    Harness::start_custom(common::crm_options(), |t| {
        format!("{t}\n[panel]\nenabled = true\n")
    })
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Opens `extension`'s link against the harness; the session cookie (`name=value`).
async fn open_panel(h: &Harness, extension: &str) -> String {
    open_panel_at(&format!("http://{}", h.running.http_addr), extension).await
}

/// Opens `extension`'s link against the daemon at `base`; the session cookie.
async fn open_panel_at(base: &str, extension: &str) -> String {
    let access = PanelAccess::new(LinkKey::new(LINK_SECRET));
    let link = access.link(
        base,
        extension,
        Timestamp(Timestamp::now().0 + 3_600_000_000),
    );
    let r = http().get(&link).send().await.expect("login");
    assert_eq!(r.status(), 303, "a good link leads to the panel");
    assert_eq!(r.headers()["location"], "/panel");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/panel"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    cookie.split(';').next().unwrap_or_default().to_string()
}

/// Reads server-sent `card` events until `until` holds for one, or `within` passes.
async fn cards_until(
    response: &mut reqwest::Response,
    within: Duration,
    until: impl Fn(&Value) -> bool,
) -> (Vec<Value>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut buffer, mut cards) = (String::new(), Vec::new());
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => return (cards, false),
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if !frame.lines().any(|l| l == "event: card") {
                continue;
            }
            let data: String = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let card: Value = serde_json::from_str(&data).expect("card JSON");
            let done = until(&card);
            cards.push(card);
            if done {
                return (cards, true);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_is_on_its_extensions_panel_at_once_and_on_no_other() {
    let h = panel_harness().await;
    let base = format!("http://{}", h.running.http_addr);
    let anna = open_panel(&h, "101").await;
    let response = http()
        .get(format!("{base}/panel"))
        .header("Cookie", &anna)
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("html");
    assert!(
        html.contains("Calls of extension <span id=\"ext\">101</span>"),
        "{html}"
    );
    assert!(html.contains("name=\"csrf-token\""));
    let mut events = http()
        .get(format!("{base}/panel/events"))
        .header("Cookie", &anna)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    let other = open_panel(&h, "105").await;
    let mut others = http()
        .get(format!("{base}/panel/events"))
        .header("Cookie", &other)
        .send()
        .await
        .expect("events");

    let started = Instant::now();
    let player = {
        let pbx = h.pbx.clone();
        tokio::spawn(async move {
            pbx.play(&common::fixture("iax2/inbound_answered"), 20.0)
                .await
        })
    };
    let (cards, rang) = cards_until(&mut events, Duration::from_secs(5), |c| {
        c["state"] == "ringing"
    })
    .await;
    let ringing_after = started.elapsed();
    assert!(rang, "a ringing card: {cards:?}");
    let card = cards.last().expect("card");
    assert_eq!(card["number"], "+79161234567");
    assert!(card["extensions"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "101")));
    // The recording's first ringing comes a few hundred ms into it (at 20x); the card
    // follows within a second of those bytes.
    assert!(ringing_after < Duration::from_secs(2), "{ringing_after:?}");
    let (cards, ended) = cards_until(&mut events, Duration::from_secs(10), |c| {
        c["state"] == "ended"
    })
    .await;
    assert!(ended, "answered then ended: {cards:?}");
    let last = cards.last().expect("end");
    assert_eq!(last["outcome"], "answered");
    assert_eq!(last["answered_by"], "101");
    assert!(last["talk_secs"].as_u64().unwrap_or(0) > 0);
    player.await.expect("played");
    let (seen, _) = cards_until(&mut others, Duration::from_millis(300), |_| true).await;
    assert!(seen.is_empty(), "105 sees nothing of 101's call: {seen:?}");
    // A panel opened after the call still shows it, in the HTML itself.
    let html = page(&base, &anna).await;
    assert!(
        html.contains("+79161234567") && html.contains("card ended"),
        "{html}"
    );
    drop(events);
    drop(others);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_missing_credentials_are_refused() {
    let h = panel_harness().await;
    let base = format!("http://{}", h.running.http_addr);
    let good = PanelAccess::new(LinkKey::new(LINK_SECRET));
    let forged = PanelAccess::new(LinkKey::new("someone-elses-secret"));
    let later = Timestamp(Timestamp::now().0 + 3_600_000_000);
    let past = Timestamp(Timestamp::now().0 - 1_000_000);
    for (what, link, status) in [
        ("forged", forged.link(&base, "101", later), 403),
        ("expired", good.link(&base, "101", past), 403),
        (
            "another extension's signature",
            good.link(&base, "101", later).replace("ext=101", "ext=102"),
            403,
        ),
    ] {
        let r = http().get(&link).send().await.expect("login");
        assert_eq!(r.status(), status, "{what}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{what}: no session"
        );
    }
    for path in ["/panel", "/panel/events"] {
        let r = http()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{path} without a session");
        let r = http()
            .get(format!("{base}{path}"))
            .header("Cookie", "cb_panel=3130.99999999999.00")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{path} with a made-up session");
    }
    h.stop().await;
}

#[test]
fn panel_link_prints_a_signed_link_and_names_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |extra: &str| {
        let path = dir.path().join("callbridge.toml");
        let toml = common::config_toml(
            5038,
            "https://example.retailcrm.ru",
            &dir.path().join("cb.db"),
            "",
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:8099\"\npublic_url = \"https://cb.example.com\"",
        );
        std::fs::write(&path, format!("{toml}\n{extra}")).expect("config");
        path
    };
    let run = |path: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .arg("panel-link")
            .arg("--config")
            .arg(path)
            .args(args)
            .output()
            .expect("panel-link");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let off = write("");
    let (ok, _, err) = run(&off, &["--extension", "101"]);
    assert!(!ok && err.contains("panel.enabled"), "{err}");
    let on = write("[panel]\nenabled = true\n");
    let (ok, out, err) = run(&on, &["--extension", "101", "--ttl", "2h"]);
    assert!(ok, "{err}");
    let link = out.trim();
    assert!(
        link.starts_with("https://cb.example.com/panel/login?ext=101&exp="),
        "{link}"
    );
    let exp: i64 = link
        .split("exp=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .and_then(|e| e.parse().ok())
        .expect("exp");
    let in_two_hours = Timestamp::now().0 / 1_000_000 + 7200;
    assert!((exp - in_two_hours).abs() < 60, "{exp} vs {in_two_hours}");
    assert!(!out.contains(LINK_SECRET) && !err.contains(LINK_SECRET));
    let (ok, _, err) = run(&on, &["--extension", "101", "--ttl", "soon"]);
    assert!(!ok && err.contains("--ttl"), "{err}");
}

/// The panel page as `cookie`'s employee gets it.
async fn page(base: &str, cookie: &str) -> String {
    http()
        .get(format!("{base}/panel"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html")
}

/// Opens 101's event stream on `base`.
async fn stream(base: &str, cookie: &str) -> reqwest::Response {
    let r = http()
        .get(format!("{base}/panel/events"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(r.status(), 200);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_says_who_is_calling_one_client_or_a_new_caller() {
    let h = panel_harness().await;
    let base = format!("http://{}", h.running.http_addr);
    let customer = h
        .crm
        .seed_customer(
            serde_json::json!({"firstName": "Ivan", "lastName": "Petrov", "managerId": 3,
                                          "phones": [{"number": "8 (916) 123-45-67"}]}),
        )
        .expect("customer");
    h.crm
        .seed_order(
            serde_json::json!({"customer": {"id": customer}, "status": "new", "managerId": 3}),
        )
        .expect("order");
    let anna = open_panel(&h, "101").await;
    let mut events = stream(&base, &anna).await;
    h.pbx
        .play(&common::fixture("iax2/inbound_answered"), 20.0)
        .await;
    let (cards, found) =
        cards_until(&mut events, Duration::from_secs(5), |c| !c["who"].is_null()).await;
    assert!(found, "the caller was looked up: {cards:?}");
    let who = &cards.last().expect("card")["who"];
    assert_eq!(who["found"], "one", "{who}");
    assert_eq!(who["clients"][0]["name"], "Ivan Petrov");
    assert_eq!(
        who["clients"][0]["open"].as_array().map(Vec::len),
        Some(1),
        "{who}"
    );
    h.wait_outbox_settled().await;
    // A caller nobody has: a new caller (the missed call rings 101 too).
    let mut events = stream(&base, &anna).await;
    h.pbx
        .play(&common::fixture("iax2/inbound_missed"), 20.0)
        .await;
    let (cards, found) = cards_until(&mut events, Duration::from_secs(5), |c| {
        c["number"] == "+79035556677" && !c["who"].is_null()
    })
    .await;
    assert!(found, "{cards:?}");
    assert_eq!(cards.last().expect("card")["who"]["found"], "none");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_creatio_several_contacts_with_the_number_are_all_listed() {
    use common::creatio::{anna, boris, CreatioHarness, Side};
    let h = CreatioHarness::start_custom(Side::FreeSwitch, Default::default(), |t| {
        format!("{t}\n[panel]\nenabled = true\n")
    })
    .await;
    let older = h.seed_contact("Olga Older", "+7 916 123-45-67", &boris());
    h.crm
        .update(
            "Contact",
            &older,
            serde_json::json!({"ModifiedOn": "2026-01-05T10:00:00Z"}),
        )
        .expect("older");
    let newer = h.seed_contact("Nina Newer", "89161234567", &anna());
    h.seed_case(&newer, &anna(), true);
    let base = format!("http://{}", h.running.http_addr);
    let cookie = open_panel_at(&base, "101").await;
    let mut events = stream(&base, &cookie).await;
    h.esl
        .play(&common::esl_fixture("inbound_answered"), 20.0)
        .await;
    let (cards, found) =
        cards_until(&mut events, Duration::from_secs(5), |c| !c["who"].is_null()).await;
    assert!(found, "{cards:?}");
    let who = &cards.last().expect("card")["who"];
    assert_eq!(who["found"], "several", "{who}");
    let names: Vec<&str> = who["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Nina Newer", "Olga Older"],
        "the most recently active first"
    );
    assert_eq!(
        who["clients"][0]["open"].as_array().map(Vec::len),
        Some(1),
        "Nina's open case"
    );
    let html = page(&base, &cookie).await;
    assert!(
        html.contains("data-records=\"cases\""),
        "Creatio's records are cases"
    );
    h.settle().await;
    h.stop().await;
}

/// The CSRF token of `cookie`'s page.
async fn csrf_of(base: &str, cookie: &str) -> String {
    let html = page(base, cookie).await;
    html.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf meta")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choosing_one_of_several_clients_sends_the_calls_records_to_it() {
    let h = panel_harness().await;
    let base = format!("http://{}", h.running.http_addr);
    let mut ids = Vec::new();
    for name in ["Older", "Newer"] {
        let customer = h
            .crm
            .seed_customer(
                serde_json::json!({"firstName": "Client", "lastName": name, "managerId": 3,
                                              "phones": [{"number": "+7 916 123 45 67"}]}),
            )
            .expect("customer");
        h.crm
            .seed_order(
                serde_json::json!({"customer": {"id": customer}, "status": "new", "managerId": 3}),
            )
            .expect("order");
        ids.push(customer);
    }
    let older = ids[0].to_string();
    let anna = open_panel(&h, "101").await;
    let csrf = csrf_of(&base, &anna).await;
    let mut events = stream(&base, &anna).await;
    // Slowly enough to choose while the call goes on.
    let pbx = h.pbx.clone();
    let player = tokio::spawn(async move {
        pbx.play(&common::fixture("iax2/inbound_answered"), 2.0)
            .await;
    });
    let (cards, found) = cards_until(&mut events, Duration::from_secs(5), |c| {
        c["who"]["found"] == "several"
    })
    .await;
    assert!(found, "{cards:?}");
    let call_id = cards.last().expect("card")["call_id"]
        .as_str()
        .expect("id")
        .to_string();
    let url = format!("{base}/panel/calls/{call_id}/client");
    let choice = serde_json::json!({"client": older});
    let without = http()
        .post(&url)
        .header("Cookie", &anna)
        .json(&choice)
        .send()
        .await
        .expect("post");
    assert_eq!(
        without.status(),
        403,
        "a POST without the CSRF token is refused"
    );
    let forged = http()
        .post(&url)
        .header("Cookie", &anna)
        .header("X-CSRF-Token", "00ff")
        .json(&choice)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    let stranger = http()
        .post(&url)
        .header("Cookie", &anna)
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({"client": "999"}))
        .send()
        .await
        .expect("post");
    assert_eq!(stranger.status(), 400, "only a client with the number");
    let other = open_panel(&h, "105").await;
    let other_csrf = csrf_of(&base, &other).await;
    let elsewhere = http()
        .post(&url)
        .header("Cookie", &other)
        .header("X-CSRF-Token", &other_csrf)
        .json(&choice)
        .send()
        .await
        .expect("post");
    assert_eq!(
        elsewhere.status(),
        404,
        "another extension cannot choose for this call"
    );
    let chosen = http()
        .post(&url)
        .header("Cookie", &anna)
        .header("X-CSRF-Token", &csrf)
        .json(&choice)
        .send()
        .await
        .expect("post");
    assert_eq!(chosen.status(), 204);
    let (cards, marked) = cards_until(&mut events, Duration::from_secs(5), |c| {
        c["who"]["chosen"] == older.as_str()
    })
    .await;
    assert!(marked, "the card says who was chosen: {cards:?}");
    player.await.expect("played");
    h.wait_outbox_settled().await;
    let tasks = h.crm.state().tasks;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(
        tasks[0].customer.as_ref().map(|c| c.id),
        Some(ids[0]),
        "the chosen client's task: {:#?}",
        tasks[0]
    );
    assert!(
        tasks[0]
            .text
            .contains("chosen by the employee on the panel"),
        "{}",
        tasks[0].text
    );
    h.stop().await;
}
