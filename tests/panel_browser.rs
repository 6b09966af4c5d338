//! The operator panel in a real browser (Debian's headless chromium through
//! chromedriver), against the real daemon fed by the PBX simulators: the employee opens
//! their link, the call's card appears without a reload as the ringing bytes arrive, turns
//! answered, then ended with its outcome and talk time; another employee's panel stays
//! empty; a forged link is refused. Screenshots of each state go to
//! `target/panel-screenshots/`.

mod common;

use std::time::{Duration, Instant};

use callbridge::links::LinkKey;
use callbridge::panel::PanelAccess;
use callbridge::time::Timestamp;
use common::browser::Browser;
use common::creatio::{CreatioHarness, Side};
use common::Harness;

fn link(base: &str, extension: &str, secret: &str) -> String {
    PanelAccess::new(LinkKey::new(secret)).link(
        base,
        extension,
        Timestamp(Timestamp::now().0 + 3_600_000_000),
    )
}

/// Opens 101's panel, plays the call with `play`, and follows its card to the end.
async fn follow_a_call(
    base: &str,
    shots: &str,
    who: &str,
    play: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let browser = Browser::start().await;
    browser.goto(&link(base, "101", "test-link-secret")).await;
    browser.wait_for("#link.live", Duration::from_secs(5)).await;
    browser
        .eval("window.__sameDocument = true; return true")
        .await;
    browser.screenshot(&format!("{shots}-0-waiting")).await;
    let started = Instant::now();
    let player = tokio::spawn(play);
    let ringing = browser
        .wait_for(".card.ringing", Duration::from_secs(3))
        .await;
    let seen_after = started.elapsed();
    let client = browser
        .wait_for(".card .client:not(.looking)", Duration::from_secs(3))
        .await;
    assert!(client.contains(who), "who is calling: {client}");
    browser.screenshot(&format!("{shots}-1-ringing")).await;
    if who == "Several clients" {
        // The employee says which one is calling: the second, the older contact.
        // The card is redrawn as the call moves on: a click may meet the old one.
        let mut chosen = None;
        for _ in 0..10 {
            browser
                .click(".card .client li:nth-child(2) button.choose")
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            chosen = browser.text(".card .client li:nth-child(2) .chosen").await;
            if chosen.is_some() {
                break;
            }
        }
        assert_eq!(chosen.as_deref(), Some("the caller"));
        browser.screenshot(&format!("{shots}-1b-chosen")).await;
    }
    assert!(ringing.contains("+79161234567"), "{ringing}");
    // The recordings' first ringing comes a few hundred ms in (at 5x); the card follows.
    assert!(
        seen_after < Duration::from_secs(2),
        "card after {seen_after:?}"
    );
    // Answered (or, on a slow machine, already ended: the card says who answered either way).
    let answered = browser
        .wait_for(".card.answered, .card.ended", Duration::from_secs(10))
        .await;
    assert!(answered.contains("answered on 101"), "{answered}");
    browser.screenshot(&format!("{shots}-2-answered")).await;
    let ended = browser
        .wait_for(".card.ended", Duration::from_secs(10))
        .await;
    assert!(ended.contains("answered, talked"), "{ended}");
    browser.screenshot(&format!("{shots}-3-ended")).await;
    assert_eq!(
        browser.eval("return window.__sameDocument === true").await,
        serde_json::Value::Bool(true),
        "the page was never reloaded"
    );
    player.await.expect("played");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromedriver (.ci/run installs them)"]
async fn asterisk_retailcrm_the_card_follows_the_call_without_a_reload() {
    let h = Harness::start_custom(common::crm_options(), |t| {
        format!("{t}\n[panel]\nenabled = true\n")
    })
    .await;
    let base = format!("http://{}", h.running.http_addr);
    let pbx = h.pbx.clone();
    follow_a_call(&base, "asterisk-retailcrm", "New caller", async move {
        pbx.play(&common::fixture("iax2/inbound_answered"), 5.0)
            .await;
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromedriver (.ci/run installs them)"]
async fn freeswitch_creatio_the_card_follows_the_call_without_a_reload() {
    let h = CreatioHarness::start_custom(Side::FreeSwitch, Default::default(), |t| {
        format!("{t}\n[panel]\nenabled = true\n")
    })
    .await;
    let older = h.seed_contact("Olga Older", "+7 916 123-45-67", &common::creatio::boris());
    h.crm
        .update(
            "Contact",
            &older,
            serde_json::json!({"ModifiedOn": "2026-01-05T10:00:00Z"}),
        )
        .expect("older");
    let newer = h.seed_contact("Nina Newer", "89161234567", &common::creatio::anna());
    h.seed_case(&newer, &common::creatio::anna(), true);
    let base = format!("http://{}", h.running.http_addr);
    let esl = h.esl.clone();
    follow_a_call(&base, "freeswitch-creatio", "Several clients", async move {
        esl.play(&common::esl_fixture("inbound_answered"), 5.0)
            .await;
    })
    .await;
    h.settle().await;
    // The employee chose Olga, who has no open case: the call registered one for her
    // (Nina, the most recently active, would have been consulted on her open case).
    let cases = h.made("Case");
    assert_eq!(cases.len(), 1, "{cases:#?}");
    assert_eq!(cases[0]["ContactId"].as_str(), Some(older.as_str()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromedriver (.ci/run installs them)"]
async fn another_employees_panel_stays_empty_and_a_forged_link_is_refused() {
    let h = Harness::start_custom(common::crm_options(), |t| {
        format!("{t}\n[panel]\nenabled = true\n")
    })
    .await;
    let base = format!("http://{}", h.running.http_addr);
    let browser = Browser::start().await;
    browser
        .goto(&link(&base, "101", "not-the-daemons-secret"))
        .await;
    let refused = browser.wait_for("body", Duration::from_secs(5)).await;
    assert!(refused.contains("not valid"), "{refused}");
    browser.screenshot("refused-forged-link").await;
    browser.goto(&link(&base, "105", "test-link-secret")).await;
    browser.wait_for("#link.live", Duration::from_secs(5)).await;
    h.play("iax2/inbound_answered").await;
    h.wait_outbox_settled().await;
    assert!(
        browser.text(".card").await.is_none(),
        "105 sees no card of 101's call"
    );
    let page = browser.wait_for("#empty", Duration::from_secs(1)).await;
    assert!(page.contains("No calls yet"), "{page}");
    browser.screenshot("other-extension-empty").await;
    browser.quit().await;
    h.stop().await;
}
