//! The Creatio adapter against the Creatio simulator over real sockets, beyond the matrix
//! rows: who the caller is (one contact, several, none; a number typed another way; a
//! number that shares only its last digits), both logins (a wrong password, a session
//! Creatio ended, an OAuth token renewed before it expires), and answers lost after
//! Creatio saved the record (each record still made once).

mod common;

use std::time::Duration;

use callbridge::store::ActionFilter;
use callbridge::tools::sim::creatio::{CreatioSimOptions, Fault};
use common::creatio::{anna, CreatioHarness, Side};
use serde_json::{json, Value};

fn s(v: &Value, column: &str) -> String {
    v[column].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_contacts_and_an_account_share_the_number() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    let older = h.seed_contact("Ivan Older", "+7 916 123-45-67", &anna());
    let newer = h.seed_contact("Maria Newer", "89161234567", &anna());
    h.crm
        .update(
            "Contact",
            &older,
            json!({"ModifiedOn": "2026-02-01T10:00:00Z"}),
        )
        .expect("older");
    h.crm
        .update(
            "Contact",
            &newer,
            json!({"ModifiedOn": "2026-11-01T10:00:00Z"}),
        )
        .expect("newer");
    let account = h
        .crm
        .insert("Account", json!({"Name": "Acme"}))
        .expect("account");
    h.crm
        .insert(
            "AccountCommunication",
            json!({"AccountId": account, "Number": "+7 (916) 1234567"}),
        )
        .expect("account number");
    h.play("iax2/inbound_answered").await;
    assert!(
        h.made("Contact").is_empty(),
        "no new contact for a known number"
    );
    let calls = h.made("Call");
    assert_eq!(calls.len(), 1, "the call is recorded once: {calls:#?}");
    assert_eq!(
        s(&calls[0], "ContactId"),
        newer,
        "the contact with the latest activity"
    );
    assert_eq!(
        s(&calls[0], "AccountId"),
        account,
        "the account with the number"
    );
    let tasks = h.made("Activity");
    assert!(!tasks.is_empty());
    for t in &tasks {
        assert_eq!(s(t, "ContactId"), newer);
        let notes = format!("{} {}", s(t, "Title"), s(t, "Notes"));
        assert!(
            notes.contains("Ivan Older")
                && notes.contains("Maria Newer")
                && notes.contains("several"),
            "every task says the number matches several contacts and names them: {notes}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_has_the_number_a_contact_is_made_with_a_mobile_communication() {
    let h = CreatioHarness::start(Side::FreeSwitch).await;
    h.play("inbound_answered").await;
    let contacts = h.made("Contact");
    assert_eq!(contacts.len(), 1);
    assert!(
        s(&contacts[0], "Name").ends_with("9161234567"),
        "{:#}",
        contacts[0]
    );
    let comms = h.made("ContactCommunication");
    assert_eq!(comms.len(), 1);
    assert_eq!(s(&comms[0], "ContactId"), s(&contacts[0], "Id"));
    assert_eq!(
        s(&comms[0], "CommunicationTypeId"),
        "d4a2dc80-30ca-df11-9b2a-001d60e938c6",
        "Mobile"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_stored_as_8_916_matches_the_caller_plus_7() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    let contact = h.seed_contact("Ivan", "8 (916) 123-45-67", &anna());
    h.play("iax2/inbound_answered").await;
    assert!(h.made("Contact").is_empty());
    assert_eq!(s(&h.made("Call")[0], "ContactId"), contact);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_sharing_only_its_last_7_digits_is_not_a_match() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    // Moscow's 495 with the caller's last seven digits: Creatio's SearchNumber finds it.
    let other = h.seed_contact("Someone Else", "+7 (495) 123-45-67", &anna());
    h.play("iax2/inbound_answered").await;
    let contacts = h.made("Contact");
    assert_eq!(contacts.len(), 1, "the caller is new: {contacts:#?}");
    assert_ne!(s(&contacts[0], "Id"), other);
    assert_eq!(s(&h.made("Call")[0], "ContactId"), s(&contacts[0], "Id"));
    assert!(
        h.made("Activity").is_empty(),
        "no task on someone else's contact"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let h = CreatioHarness::start_custom(Side::Asterisk, CreatioSimOptions::default(), |t| {
        t.replace(
            "password = \"sim-password\"",
            "password = \"Wrong-Pa55word\"",
        )
    })
    .await;
    h.ami
        .play(&common::fixture("iax2/inbound_answered"), 20.0)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let dead = loop {
        let dead = h
            .running
            .store
            .list_actions(ActionFilter::Dead, 10)
            .await
            .expect("dead");
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a refused login parks the action"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("refused the login") && error.contains("crm.password"),
        "{error}"
    );
    assert!(!error.contains("Wrong-Pa55word"));
    assert_eq!(h.crm.logins(), 0);
    assert!(h.made("Call").is_empty() && h.made("Contact").is_empty());
    // Nothing is lost: once the password is right, `outbox retry` sends it (not here).
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_renewed_once_and_the_request_repeated() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    h.play("iax2/inbound_answered").await;
    let logins = h.crm.logins();
    assert!(logins >= 1);
    h.crm.end_sessions();
    h.play("iax2/outbound_answered").await;
    assert_eq!(h.crm.logins(), logins + 1, "one new login");
    assert_eq!(h.made("Call").len(), 2, "both calls recorded");
    let refused = h.crm.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(
        refused, 1,
        "one request met the ended session and was repeated"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_is_renewed_before_it_expires() {
    let options = CreatioSimOptions {
        // Renewed 60 s early: this token is renewed after one second.
        token_lifetime: Duration::from_secs(61),
        ..CreatioSimOptions::default()
    };
    let h = CreatioHarness::start_custom(Side::Asterisk, options, |t| {
        let url = t
            .lines()
            .find_map(|l| l.strip_prefix("url = \"http"))
            .map(|u| format!("http{}", u.trim_end_matches('"')))
            .unwrap_or_default();
        t.replace(
            "login = \"callbridge\"\npassword = \"sim-password\"\n",
            &format!(
                "client_id = \"callbridge-client\"\nclient_secret = \"sim-client-secret\"\nidentity_url = \"{url}\"\n"
            ),
        )
    })
    .await;
    h.play("iax2/inbound_answered").await;
    let grants = h.crm.token_grants();
    assert!(grants >= 1);
    assert_eq!(h.crm.logins(), 0, "no forms login with OAuth");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.play("iax2/outbound_answered").await;
    assert!(h.crm.token_grants() > grants, "a new token");
    let refused = h.crm.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 0, "renewed before Creatio refused it");
    assert_eq!(h.made("Call").len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_the_save_make_no_duplicates() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    for path in [
        "/0/odata/Contact",
        "/0/odata/Case",
        "/0/odata/$batch",
        "/0/odata/Activity",
        "/0/odata/Call",
    ] {
        h.crm.inject(Fault::LoseAnswer { times: 1 }.on_path(path));
    }
    // Row 4b: a contact, a case, an activity with its queue item, a call.
    h.play("iax2/inbound_missed").await;
    for entity in [
        "Contact",
        "ContactCommunication",
        "Case",
        "Activity",
        "QueueItem",
        "Call",
    ] {
        assert_eq!(
            h.made(entity).len(),
            1,
            "one {entity}: {:#?}",
            h.made(entity)
        );
    }
    let lost = h.crm.requests().iter().filter(|r| r.status == 504).count();
    assert!(lost >= 4, "the answers were lost: {lost}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_carries_its_signed_recording_link_in_the_comment() {
    for side in [Side::Asterisk, Side::FreeSwitch] {
        let h = CreatioHarness::start(side).await;
        h.play(match side {
            Side::Asterisk => "iax2/recording",
            Side::FreeSwitch => "recording",
        })
        .await;
        let calls = h.made("Call");
        assert_eq!(calls.len(), 1, "{side:?}");
        let comment = s(&calls[0], "Comment");
        assert!(
            comment.contains("/recordings/") && comment.contains("sig="),
            "{side:?}: {comment}"
        );
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_refusing_batch_gets_its_requests_one_by_one() {
    let h = CreatioHarness::start(Side::Asterisk).await;
    h.crm.inject(
        Fault::Error {
            times: 5,
            status: 404,
            message: "No HTTP resource was found that matches the request URI '$batch'.".into(),
        }
        .on_path("/0/odata/$batch"),
    );
    h.play("iax2/inbound_missed").await;
    assert_eq!(h.made("Activity").len(), 1);
    let queued = h.made("QueueItem");
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(s(&queued[0], "EntityRecordId"), s(&h.made("Case")[0], "Id"));
    let batches = h
        .crm
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("$batch"))
        .count();
    assert_eq!(batches, 1, "tried once, then not again");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_come_from_the_users_telephony_settings_when_config_has_none() {
    // Only 102 is in the configuration; Anna's 101 is in her Creatio telephony settings.
    let h = CreatioHarness::start_custom(Side::Asterisk, CreatioSimOptions::default(), |t| {
        t.replace(&format!("\"101\" = \"{}\"\n", anna()), "")
    })
    .await;
    let contact = h.seed_contact("Ivan", "89161234567", &anna());
    h.play("iax2/inbound_answered").await;
    let tasks = h.made("Activity");
    assert_eq!(tasks.len(), 1, "Anna answered her own client: {tasks:#?}");
    assert_eq!(s(&tasks[0], "OwnerId"), anna());
    assert_eq!(s(&tasks[0], "ContactId"), contact);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bpmcsrf_set_only_on_the_first_page_is_fetched_after_the_login() {
    let options = CreatioSimOptions {
        csrf_after_root_get: true,
        ..CreatioSimOptions::default()
    };
    let h = CreatioHarness::start_custom(Side::FreeSwitch, options, |t| t).await;
    h.play("inbound_answered").await;
    assert_eq!(h.made("Call").len(), 1);
    let refused = h.crm.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 0, "every request carried the CSRF header");
    assert!(h
        .crm
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/"));
    h.stop().await;
}
