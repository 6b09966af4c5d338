//! The simulator over real HTTP, as a client of Creatio sees it.

use serde_json::{json, Value};

use super::*;

async fn sim() -> CreatioSim {
    CreatioSim::start(CreatioSimOptions::default())
        .await
        .unwrap()
}

/// Logs in with the forms login; the cookie header and the CSRF value.
async fn login(
    http: &reqwest::Client,
    sim: &CreatioSim,
    password: &str,
) -> (Value, String, String) {
    let r = http
        .post(format!(
            "{}/ServiceModel/AuthService.svc/Login",
            sim.base_url()
        ))
        .json(&json!({"UserName": "callbridge", "UserPassword": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a login is answered 200 either way");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect();
    let csrf = cookies
        .iter()
        .find_map(|c| c.strip_prefix("BPMCSRF=").map(str::to_string))
        .unwrap_or_default();
    (r.json().await.unwrap(), cookies.join("; "), csrf)
}

#[tokio::test]
async fn forms_login_cookies_and_the_csrf_header() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let (body, _, _) = login(&http, &sim, "wrong").await;
    assert_eq!(body["Code"], 1);
    let (body, cookie, csrf) = login(&http, &sim, "sim-password").await;
    assert_eq!(body["Code"], 0);
    assert!(cookie.contains(".ASPXAUTH=") && !csrf.is_empty());
    let url = format!(
        "{}/0/odata/CaseStatus?$select=Name,IsFinal&$filter=IsFinal%20eq%20true",
        sim.base_url()
    );
    let without = http
        .get(&url)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401, "no BPMCSRF header");
    let with: Value = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("BPMCSRF", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(with["value"].as_array().map(Vec::len), Some(3), "{with}");
    sim.end_sessions();
    let ended = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("BPMCSRF", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 401);
}

#[tokio::test]
async fn oauth_token_then_writes_reads_errors_and_a_batch() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/connect/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "callbridge-client"),
            ("client_secret", "no"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let token: Value = http
        .post(format!("{}/connect/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "callbridge-client"),
            ("client_secret", "sim-client-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let odata = format!("{}/0/odata", sim.base_url());
    let made: Value = http
        .post(format!("{odata}/Contact"))
        .header("Authorization", &bearer)
        .json(&json!({"Name": "+79161234567"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["Id"].as_str().unwrap().to_string();
    assert_eq!(made["OwnerId"], EMPTY_GUID);
    let bad = http
        .post(format!("{odata}/Contact"))
        .header("Authorization", &bearer)
        .json(&json!({"Name": "x", "Surname": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Surname"),
        "{bad}"
    );
    let answer: Value = http
        .post(format!("{odata}/$batch"))
        .header("Authorization", &bearer)
        .json(&json!({"requests": [
            {"id": "1", "method": "POST", "url": "ContactCommunication",
             "body": {"ContactId": id, "Number": "8 (916) 123-45-67"}},
            {"id": "2", "method": "POST", "url": "Case", "body": {"Subject": "x", "StatusId": "bad"}},
            {"id": "3", "method": "POST", "url": "Case", "body": {"Subject": "never"}},
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = answer["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![201, 400],
        "the batch stops at its first failure: {answer}"
    );
    assert_eq!(
        sim.records("ContactCommunication")[0]["SearchNumber"],
        "76543216198"
    );
    assert!(sim.made("Case").is_empty());
    let patched = http
        .patch(format!("{odata}/Contact({id})"))
        .header("Authorization", &bearer)
        .json(&json!({"OwnerId": default_employees()[0].contact}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    assert_eq!(
        sim.made("Contact")[0]["OwnerId"],
        default_employees()[0].contact.as_str()
    );
}

#[tokio::test]
async fn a_lost_answer_leaves_the_record_made() {
    let sim = sim().await;
    sim.inject(Fault::LoseAnswer { times: 1 }.on_path("/0/odata/Contact"));
    let http = reqwest::Client::new();
    let (_, cookie, csrf) = login(&http, &sim, "sim-password").await;
    let r = http
        .post(format!("{}/0/odata/Contact", sim.base_url()))
        .header("Cookie", &cookie)
        .header("BPMCSRF", &csrf)
        .json(&json!({"Name": "lost"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(sim.made("Contact").len(), 1);
}
