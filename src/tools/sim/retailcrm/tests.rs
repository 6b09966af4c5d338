//! The simulator over real HTTP: each resource, the transport (keys, faults, rate
//! limit, latency) and the parsing helpers.

use std::time::Instant;

use serde_json::{json, Value};

use super::fields::{looks_like_phone, phone_key, BLANK, CHOICE, NOT_ARRAY, NOT_DATETIME};
use super::routing::{normalize_key, percent_decode};
use super::*;

struct T {
    sim: RetailCrmSim,
    http: reqwest::Client,
}

impl T {
    /// A simulator without rate limiting, so tests do not trip over it.
    async fn new() -> T {
        T::with(SimOptions {
            rate_limit: None,
            ..SimOptions::default()
        })
        .await
    }

    async fn with(opts: SimOptions) -> T {
        let sim = RetailCrmSim::start(opts).await.expect("start");
        T {
            sim,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v5{path}", self.sim.base_url())
    }

    async fn answer(r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .header("X-API-KEY", DEFAULT_API_KEY);
        T::answer(r.send().await.expect("send")).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("X-API-KEY", DEFAULT_API_KEY)
            .form(form);
        T::answer(r.send().await.expect("send")).await
    }

    async fn post_json(&self, path: &str, field: &str, v: Value) -> (u16, Value) {
        self.post(path, &[(field, &v.to_string())]).await
    }
}

// -- transport --

#[tokio::test]
async fn missing_and_wrong_keys_are_refused_and_the_key_may_be_a_parameter() {
    let t = T::new().await;
    let r = t.http.get(t.url("/users")).send().await.expect("send");
    let (status, body) = T::answer(r).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"success": false, "errorMsg": "\"apiKey\" is missing."})
    );

    let r = t
        .http
        .get(t.url("/users"))
        .header("X-API-KEY", "nope")
        .send()
        .await
        .expect("send");
    let (status, body) = T::answer(r).await;
    assert_eq!(status, 403);
    assert_eq!(body["errorMsg"], "Wrong \"apiKey\" value.");

    let url = format!("{}?apiKey={DEFAULT_API_KEY}", t.url("/users"));
    let (status, _) = T::answer(t.http.get(url).send().await.expect("send")).await;
    assert_eq!(status, 200);

    let event = json!({"phone": "+79001234567", "type": "in", "codes": ["101"]}).to_string();
    let form = [("apiKey", DEFAULT_API_KEY), ("event", event.as_str())];
    let r = t
        .http
        .post(t.url("/telephony/call/event"))
        .form(&form)
        .send()
        .await
        .expect("send");
    assert_eq!(T::answer(r).await.0, 200);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_the_real_answers() {
    let t = T::new().await;
    let (status, body) = t.get("/telephony/call-event").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"success": false, "errorMsg": "API method not found"})
    );
    let r = t
        .http
        .get(format!("{}/api/v5/../x", t.sim.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(T::answer(r).await.0, 404);
    let (status, body) = t.get("/telephony/call/event").await;
    assert_eq!(status, 405);
    assert_eq!(body["success"], false);
    let (status, body) = t.post("/users", &[]).await;
    assert_eq!(
        (status, body["errorMsg"].clone()),
        (405, json!("Method Not Allowed"))
    );
}

#[tokio::test]
async fn credentials_and_versions_are_unversioned() {
    let t = T::new().await;
    let url = format!("{}/api/credentials", t.sim.base_url());
    let r = t
        .http
        .get(url)
        .header("X-API-KEY", DEFAULT_API_KEY)
        .send()
        .await
        .expect("send");
    let (status, body) = T::answer(r).await;
    assert_eq!(status, 200);
    assert_eq!(body["sitesAvailable"], json!([DEFAULT_SITE]));
    assert_eq!(t.get("/credentials").await.0, 404);
}

#[tokio::test]
async fn rate_limit_kicks_in_past_the_limit_and_recovers() {
    let opts = SimOptions {
        rate_limit: Some(RateLimit {
            per_sec: 5,
            telephony_per_sec: 8,
        }),
        ..SimOptions::default()
    };
    let t = T::with(opts).await;
    let mut statuses = Vec::new();
    // Twenty back-to-back requests cannot take four seconds, so the bucket must run dry.
    for _ in 0..20 {
        let (status, body) = t.get("/reference/statuses").await;
        if status == 503 {
            assert_eq!(
                body,
                json!({"success": false, "errorMsg": "Service temporary unavailable"})
            );
        }
        statuses.push(status);
    }
    assert!(statuses[..5].iter().all(|&s| s == 200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");

    // Telephony has its own budget.
    let (status, _) = t.get("/telephony/manager?phone=123456").await;
    assert_eq!(status, 200);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(t.get("/reference/statuses").await.0, 200);

    // Wrong keys are refused before they can spend the budget.
    let r = t
        .http
        .get(t.url("/users"))
        .header("X-API-KEY", "other")
        .send()
        .await
        .expect("send");
    assert_eq!(T::answer(r).await.0, 403);
}

#[tokio::test]
async fn faults_are_consumed_in_order_and_can_target_one_path() {
    let t = T::new().await;
    t.sim.inject(Fault::Status503 { times: 2 });
    let r = t.http.get(t.url("/users")).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 503);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("503 Service Temporarily Unavailable"));
    assert_eq!(t.get("/users").await.0, 503);
    assert_eq!(t.get("/users").await.0, 200);

    t.sim.inject(Fault::RateLimited {
        times: 1,
        retry_after_secs: Some(2),
    });
    let r = t
        .http
        .get(t.url("/users"))
        .header("X-API-KEY", DEFAULT_API_KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );

    t.sim.inject(Fault::ApiError {
        times: 1,
        status: 429,
        error_msg: "Too many requests".into(),
        errors: Value::Null,
    });
    assert_eq!(
        t.get("/users").await,
        (
            429,
            json!({"success": false, "errorMsg": "Too many requests"})
        )
    );

    t.sim
        .inject(Fault::Status503 { times: 1 }.on_path("/telephony/calls/upload"));
    assert_eq!(t.get("/users").await.0, 200);
    let calls = json!([{"date": "2024-05-01 10:00:00", "type": "in", "phone": "100200", "externalId": "f1"}]);
    assert_eq!(
        t.post_json("/telephony/calls/upload", "calls", calls.clone())
            .await
            .0,
        503
    );
    assert_eq!(
        t.post_json("/telephony/calls/upload", "calls", calls)
            .await
            .0,
        200
    );

    t.sim.inject(
        Fault::Delay {
            times: 1,
            delay: Duration::from_millis(300),
        }
        .on_path("/api/v5/users"),
    );
    let started = Instant::now();
    assert_eq!(t.get("/users").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    t.sim.inject(Fault::Status503 { times: 5 });
    t.sim.clear_faults();
    assert_eq!(t.get("/users").await.0, 200);
}

#[tokio::test]
async fn latency_delays_every_answer_and_requests_are_logged() {
    let opts = SimOptions {
        latency: Some(Duration::from_millis(150)),
        rate_limit: None,
        ..SimOptions::default()
    };
    let t = T::with(opts).await;
    let started = Instant::now();
    assert_eq!(t.get("/users/3").await.0, 200);
    assert_eq!(t.get("/users/99").await.0, 404);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let log = t.sim.state().requests;
    let seen: Vec<(&str, &str, u16)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/api/v5/users/3", 200),
            ("GET", "/api/v5/users/99", 404)
        ]
    );
    let text = serde_json::to_string(&log[0]).expect("serialize");
    let back: RequestLog = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, log[0]);
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let t = T::new().await;
    assert_eq!(t.get("/users").await.0, 200);
    t.sim.shutdown();
    let mut refused = false;
    for _ in 0..50 {
        if reqwest::Client::new()
            .get(t.url("/users"))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}

// -- telephony --

#[tokio::test]
async fn call_event_reports_unknown_codes_and_users_and_is_recorded() {
    let t = T::new().await;
    let event = json!({
        "phone": "+79001234567", "type": "in", "codes": ["101", "999"], "userIds": [3, 42],
        "callExternalId": "pbx-1", "externalPhone": "74950000000", "site": DEFAULT_SITE,
        "webAnalyticsData": {"campaign": {"name": "spring", "code": "s1"}},
    });
    let (status, body) = t.post_json("/telephony/call/event", "event", event).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "notExistCodes": ["999"], "notExistUsers": [42]})
    );
    let hangup = json!({"phone": "+79001234567", "type": "hangup", "codes": ["101"],
                        "hangupStatus": "no answered", "callExternalId": "pbx-1"});
    assert_eq!(
        t.post_json("/telephony/call/event", "event", hangup)
            .await
            .0,
        200
    );

    let events = t.sim.state().call_events;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].codes, ["101", "999"]);
    assert_eq!(events[0].user_ids, [3, 42]);
    assert_eq!(events[0].call_external_id.as_deref(), Some("pbx-1"));
    assert_eq!(events[1].r#type, "hangup");
    assert_eq!(events[1].hangup_status.as_deref(), Some("no answered"));
}

#[tokio::test]
async fn call_event_errors_have_the_real_shapes() {
    let t = T::new().await;
    let (status, body) = t.post("/telephony/call/event", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"success": false, "errorMsg": "Parameter 'event' is missing"})
    );

    let (status, body) = t
        .post("/telephony/call/event", &[("event", "{not json")])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorMsg"], "Errors in the entity format");
    assert!(body["errors"]["event"].is_string());

    let (status, body) = t
        .post_json("/telephony/call/event", "event", json!({"type": "ringing"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"]["phone"], BLANK);
    assert_eq!(body["errors"]["type"], CHOICE);

    let bad = json!({"phone": "1", "type": "hangup", "hangupStatus": "no answer"});
    let (status, body) = t.post_json("/telephony/call/event", "event", bad).await;
    assert_eq!(
        (status, body["errors"]["hangupStatus"].clone()),
        (400, json!(CHOICE))
    );
    assert!(t.sim.state().call_events.is_empty());
}

#[tokio::test]
async fn calls_upload_counts_new_calls_and_lists_duplicates() {
    let t = T::new().await;
    let call = |ext: &str, result: &str| {
        json!({"date": "2024-05-01 10:00:00", "type": "in", "phone": "+79001234567", "code": "101",
               "result": result, "duration": 42, "durationWaiting": 5, "externalId": ext,
               "recordUrl": "http://127.0.0.1/rec.mp3", "externalPhone": "74950000000"})
    };
    let (status, body) = t
        .post_json(
            "/telephony/calls/upload",
            "calls",
            json!([call("a", "answered"), call("b", "no answer")]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "processedCallsCount": 2, "duplicateCalls": []})
    );

    let (_, body) = t
        .post_json(
            "/telephony/calls/upload",
            "calls",
            json!([call("a", "answered"), call("c", "busy")]),
        )
        .await;
    assert_eq!(
        body,
        json!({"success": true, "processedCallsCount": 1, "duplicateCalls": ["a"]})
    );

    let calls = t.sim.state().calls;
    let ids: Vec<_> = calls
        .iter()
        .map(|c| c.external_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(calls[1].result.as_deref(), Some("no answer"));
    assert_eq!(calls[0].duration, Some(42));
}

#[tokio::test]
async fn calls_upload_rejects_invalid_results_types_and_dates() {
    let t = T::new().await;
    let calls = json!([
        {"date": "2024-05-01 10:00:00", "type": "in", "phone": "1", "result": "answered", "externalId": "ok"},
        {"date": "2024-05-01 10:00:00", "type": "in", "phone": "1", "result": "missed"},
        {"date": "2024-05-01T10:00:00", "type": "hangup", "phone": "1"},
    ]);
    let (status, body) = t.post_json("/telephony/calls/upload", "calls", calls).await;
    assert_eq!(status, 400);
    assert_eq!(body["errorMsg"], "Errors in the entity format");
    assert_eq!(body["errors"]["calls[1][result]"], CHOICE);
    assert_eq!(body["errors"]["calls[2][type]"], CHOICE);
    assert_eq!(body["errors"]["calls[2][date]"], NOT_DATETIME);
    assert!(
        t.sim.state().calls.is_empty(),
        "a rejected batch stores nothing"
    );

    let (status, body) = t.post("/telephony/calls/upload", &[("calls", "{}")]).await;
    assert_eq!(
        (status, body["errors"]["calls"].clone()),
        (400, json!(NOT_ARRAY))
    );
    let (status, body) = t.post("/telephony/calls/upload", &[]).await;
    assert_eq!(
        (status, body["errorMsg"].clone()),
        (400, json!("Parameter 'calls' is missing"))
    );
}

#[tokio::test]
async fn telephony_manager_finds_the_customer_and_responsible_manager_by_phone() {
    let t = T::new().await;
    let customer = json!({"firstName": "Ivan", "lastName": "Sidorov", "managerId": 4,
                          "phones": [{"number": "+7 (900) 123-45-67"}], "externalId": "c-1"});
    let (status, body) = t.post_json("/customers/create", "customer", customer).await;
    assert_eq!(status, 201);
    let cid = body["id"].as_u64().expect("id");
    let order = json!({"customer": {"id": cid}, "status": "new"});
    let (_, body) = t.post_json("/orders/create", "order", order).await;
    let oid = body["id"].as_u64().expect("id");

    let (status, body) = t
        .get("/telephony/manager?phone=89001234567&details=1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["manager"]["id"], 4);
    assert_eq!(body["manager"]["code"], "102");
    assert_eq!(body["customer"]["id"], cid);
    assert_eq!(
        body["customer"]["phones"][0]["number"],
        "+7 (900) 123-45-67"
    );
    let base = t.sim.base_url();
    assert_eq!(
        body["links"]["customerLink"],
        format!("{base}/customers/{cid}")
    );
    assert_eq!(
        body["links"]["lastOrderLink"],
        format!("{base}/orders/{oid}/edit")
    );
    assert_eq!(
        body["links"]["newOrderLink"],
        format!("{base}/orders/add?phone=89001234567")
    );

    let (status, body) = t.get("/telephony/manager?phone=5550000&details=1").await;
    assert_eq!(status, 200);
    assert!(body.get("manager").is_none() && body.get("customer").is_none());
    assert!(body["links"]["newCustomerLink"].is_string());
    let (status, body) = t.get("/telephony/manager").await;
    assert_eq!(
        (status, body["errorMsg"].clone()),
        (400, json!("Parameter 'phone' is missing"))
    );
}

// -- users and reference books --

#[tokio::test]
async fn users_filter_paginate_and_reject_bad_limits() {
    let mut users = SimOptions::default().users;
    users.push(SimUser {
        id: 9,
        first_name: "Old".into(),
        last_name: "Admin".into(),
        code: None,
        is_manager: false,
        active: false,
    });
    let t = T::with(SimOptions {
        users,
        rate_limit: None,
        ..SimOptions::default()
    })
    .await;
    let (status, body) = t
        .get("/users?filter[isManager]=1&filter[active]=1&limit=20&page=1")
        .await;
    assert_eq!(status, 200);
    let ids: Vec<_> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    assert_eq!(ids, [json!(3), json!(4), json!(7)]);
    assert_eq!(
        body["pagination"],
        json!({"limit": 20, "totalCount": 3, "currentPage": 1, "totalPageCount": 1})
    );
    let (_, body) = t.get("/users?filter%5Bactive%5D=0").await;
    assert_eq!(body["users"][0]["id"], 9);
    assert_eq!(body["users"][0]["isManager"], false);

    let (status, body) = t.get("/users?limit=25").await;
    assert_eq!(status, 400);
    assert_eq!(body["errorMsg"], "Errors in the input parameters");
    assert_eq!(t.get("/users?page=0").await.0, 400);

    let (status, body) = t.get("/users/7").await;
    assert_eq!(
        (status, body["user"]["firstName"].clone()),
        (200, json!("Svetlana"))
    );
    assert_eq!(
        t.get("/users/8").await,
        (404, json!({"success": false, "errorMsg": "Not found"}))
    );
    assert_eq!(
        t.post("/users/3/status", &[("status", "dinner")]).await.0,
        200
    );
    assert_eq!(t.get("/users/3").await.1["user"]["status"], "dinner");
}

#[tokio::test]
async fn reference_books_ship_the_default_groups() {
    let t = T::new().await;
    let (status, body) = t.get("/reference/status-groups").await;
    assert_eq!(status, 200);
    let groups = body["statusGroups"].as_object().expect("groups");
    for g in [
        "new",
        "approval",
        "assembling",
        "delivery",
        "complete",
        "cancel",
    ] {
        assert!(groups.contains_key(g), "{g}");
    }
    assert_eq!(groups["approval"]["process"], true);
    assert_eq!(groups["complete"]["process"], false);
    let (_, body) = t.get("/reference/statuses").await;
    assert_eq!(body["statuses"]["new"]["group"], "new");
    assert_eq!(body["statuses"]["cancel-other"]["group"], "cancel");
    let (_, body) = t.get("/reference/order-methods").await;
    assert_eq!(body["orderMethods"]["phone"]["code"], "phone");
}

// -- customers --

#[tokio::test]
async fn customers_create_get_edit_and_refuse_duplicate_external_ids() {
    let t = T::new().await;
    let customer = json!({"externalId": "ext-1", "firstName": "Olga", "lastName": "Kuznetsova",
                          "email": "olga@example.com", "phones": [{"number": "+79005551122"}],
                          "managerId": 3, "source": {"source": "phone"}});
    let r = t
        .post(
            "/customers/create",
            &[("customer", &customer.to_string()), ("site", DEFAULT_SITE)],
        )
        .await;
    assert_eq!(r, (201, json!({"success": true, "id": 1})));

    let (status, body) = t
        .post_json(
            "/customers/create",
            "customer",
            json!({"externalId": "ext-1"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorMsg"], "Errors in the entity format");
    assert_eq!(
        body["errors"]["externalId"],
        "Customer with externalId=ext-1 already exists."
    );

    let (status, body) = t.get("/customers/ext-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["customer"]["id"], 1);
    assert_eq!(body["customer"]["type"], "customer");
    assert_eq!(body["customer"]["source"]["source"], "phone");
    assert_eq!(
        t.get("/customers/1?by=id").await.1["customer"]["externalId"],
        "ext-1"
    );
    assert_eq!(
        t.get("/customers/1").await,
        (404, json!({"success": false, "errorMsg": "Not found"}))
    );
    assert_eq!(t.get("/customers/1?by=number").await.0, 400);

    let edit = json!({"managerId": 4, "phones": [{"number": "8 (900) 555-00-00"}]});
    let r = t
        .post(
            "/customers/1/edit",
            &[
                ("customer", &edit.to_string()),
                ("by", "id"),
                ("site", DEFAULT_SITE),
            ],
        )
        .await;
    assert_eq!(r, (200, json!({"success": true, "id": 1})));
    let c = &t.sim.state().customers[0];
    assert_eq!(
        (c.manager_id, c.first_name.as_deref()),
        (Some(4), Some("Olga"))
    );
    assert_eq!(
        t.get("/customers?filter[name]=79005550000").await.1["customers"][0]["id"],
        1
    );
    assert_eq!(
        t.get("/customers?filter[name]=79005551122").await.1["pagination"]["totalCount"],
        0
    );

    let bad = json!({"managerId": 99, "email": "nope"});
    let (status, body) = t.post_json("/customers/ext-1/edit", "customer", bad).await;
    assert_eq!(status, 400);
    assert!(body["errors"]["managerId"].is_string() && body["errors"]["email"].is_string());
    assert_eq!(
        t.post_json("/customers/ext-9/edit", "customer", json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        t.post("/customers/create", &[("site", DEFAULT_SITE)])
            .await
            .1["errorMsg"],
        "Parameter 'customer' is missing"
    );
}

#[tokio::test]
async fn customers_list_filters_by_ids_external_ids_and_name_or_phone() {
    let t = T::new().await;
    for (ext, first, phone) in [
        ("a", "Anton", "+7 900 111-22-33"),
        ("b", "Boris", "89002223344"),
        ("c", "Vera", "+79002223344"),
    ] {
        let c = json!({"externalId": ext, "firstName": first, "phones": [{"number": phone}]});
        assert_eq!(t.post_json("/customers/create", "customer", c).await.0, 201);
    }
    let ids = |body: &Value| -> Vec<u64> {
        body["customers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["id"].as_u64())
            .collect()
    };
    let (status, body) = t.get("/customers?filter[name]=%2B7(900)222-33-44").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&body),
        [3, 2],
        "newest first, both formats of one number"
    );
    assert_eq!(ids(&t.get("/customers?filter[name]=anton").await.1), [1]);
    assert_eq!(
        ids(&t.get("/customers?filter[ids][]=1&filter[ids][]=3").await.1),
        [3, 1]
    );
    assert_eq!(
        ids(&t.get("/customers?filter[externalIds][]=b").await.1),
        [2]
    );
    assert_eq!(ids(&t.get("/customers").await.1), [3, 2, 1]);
}

#[tokio::test]
async fn customers_paginate() {
    let t = T::new().await;
    for i in 0..25 {
        t.sim
            .seed_customer(json!({"firstName": format!("C{i}")}))
            .expect("seed");
    }
    let (status, body) = t.get("/customers?limit=20&page=2").await;
    assert_eq!(status, 200);
    assert_eq!(body["customers"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        body["pagination"],
        json!({"limit": 20, "totalCount": 25, "currentPage": 2, "totalPageCount": 2})
    );
    assert_eq!(
        t.get("/customers?limit=50").await.1["customers"]
            .as_array()
            .map(Vec::len),
        Some(25)
    );
    let (_, body) = t.get("/customers?filter[name]=nobody").await;
    assert_eq!(body["pagination"]["totalPageCount"], 0);
}

// -- orders --

#[tokio::test]
async fn orders_create_list_get_and_edit() {
    let t = T::new().await;
    let cid = t
        .sim
        .seed_customer(json!({"externalId": "cust-7", "firstName": "Ivan", "managerId": 3}))
        .expect("seed");
    let order = json!({"externalId": "call-1", "customer": {"externalId": "cust-7"}, "managerId": 3,
                       "orderMethod": "phone", "status": "new", "phone": "+79001112233",
                       "customFields": {"utm_source": "ya"}});
    let (status, body) = t
        .post(
            "/orders/create",
            &[("order", &order.to_string()), ("site", DEFAULT_SITE)],
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["id"], 1);
    assert_eq!(body["order"]["number"], "1A");
    assert_eq!(body["order"]["customer"]["id"], cid);
    assert_eq!(body["order"]["customer"]["type"], "customer");
    assert_eq!(body["order"]["customFields"]["utm_source"], "ya");

    let (_, body) = t
        .post_json("/orders/create", "order", json!({"externalId": "call-1"}))
        .await;
    assert_eq!(
        body["errors"]["externalId"],
        "Order with externalId=call-1 already exists."
    );
    let bad = json!({"status": "done", "orderMethod": "fax", "customer": {"id": 99}});
    let (status, body) = t.post_json("/orders/create", "order", bad).await;
    assert_eq!(status, 400);
    for field in ["status", "orderMethod", "customer"] {
        assert!(body["errors"][field].is_string(), "{field}: {body}");
    }

    let (_, body) = t.get(&format!("/orders?filter[customerId]={cid}")).await;
    assert_eq!(body["orders"][0]["externalId"], "call-1");
    let (_, body) = t
        .get("/orders?filter[customerExternalId]=cust-7&filter[extendedStatus][]=new")
        .await;
    assert_eq!(body["pagination"]["totalCount"], 1);
    let (_, body) = t
        .get("/orders?filter[customerExternalId]=cust-7&filter[extendedStatus][]=complete")
        .await;
    assert_eq!(body["pagination"]["totalCount"], 0);
    assert_eq!(t.get("/orders/call-1").await.1["order"]["id"], 1);
    assert_eq!(
        t.get("/orders/1?by=id").await.1["order"]["externalId"],
        "call-1"
    );
    assert_eq!(t.get("/orders/nope").await.0, 404);

    let edit = json!({"status": "complete", "managerId": 4});
    let (status, body) = t
        .post(
            "/orders/call-1/edit",
            &[("order", &edit.to_string()), ("by", "externalId")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["order"]["status"].clone(),
            body["order"]["managerId"].clone()
        ),
        (json!("complete"), json!(4))
    );
    assert_eq!(t.sim.state().orders[0].status, "complete");
    assert_eq!(
        t.post_json("/orders/call-1/edit", "order", json!({"status": "x"}))
            .await
            .0,
        400
    );
    assert_eq!(
        t.post_json("/orders/1/edit", "order", json!({})).await.0,
        404,
        "by defaults to externalId"
    );
}

#[tokio::test]
async fn an_order_without_customer_creates_one_from_its_contact_data() {
    let t = T::new().await;
    let order = json!({"firstName": "Nina", "phone": "+79007778899", "managerId": 7});
    let (status, body) = t.post_json("/orders/create", "order", order).await;
    assert_eq!(status, 201);
    let state = t.sim.state();
    assert_eq!(state.customers.len(), 1);
    assert_eq!(
        state.customers[0].phones,
        [Phone {
            number: "+79007778899".into()
        }]
    );
    assert_eq!(state.customers[0].manager_id, Some(7));
    assert_eq!(body["order"]["customer"]["id"], state.customers[0].id);
    let (_, body) = t.get("/orders?filter[customer]=89007778899").await;
    assert_eq!(body["pagination"]["totalCount"], 1);
}

// -- tasks --

#[tokio::test]
async fn tasks_create_filter_and_get() {
    let t = T::new().await;
    let cid = t
        .sim
        .seed_customer(json!({"firstName": "Petr", "phones": [{"number": "+79003334455"}]}))
        .expect("seed");
    let oid = t
        .sim
        .seed_order(json!({"customer": {"id": cid}}))
        .expect("seed");
    let task = json!({"text": "Listen to the call", "performerId": 4, "commentary": "http://rec/1.mp3",
                      "datetime": "2024-05-01 12:30", "complete": true, "customer": {"id": cid},
                      "order": {"number": format!("{oid}A")}, "phone": "+79003334455"});
    assert_eq!(
        t.post(
            "/tasks/create",
            &[("task", &task.to_string()), ("site", DEFAULT_SITE)]
        )
        .await,
        (201, json!({"success": true, "id": 1}))
    );
    let open = json!({"text": "Review the call", "performerId": 3, "customer": {"id": cid}});
    assert_eq!(t.post_json("/tasks/create", "task", open).await.0, 201);

    let (_, body) = t.get("/tasks?filter[performers][]=4").await;
    assert_eq!(body["tasks"][0]["performer"], 4);
    assert_eq!(body["tasks"][0]["complete"], true);
    assert_eq!(body["tasks"][0]["order"]["id"], oid);
    assert!(body["tasks"][0]["completedAt"].is_string());
    let (_, body) = t.get("/tasks?filter[status]=performing").await;
    assert_eq!(body["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["tasks"][0]["text"], "Review the call");
    let (_, body) = t
        .get("/tasks?filter[customer]=89003334455&filter[text]=listen")
        .await;
    assert_eq!(body["pagination"]["totalCount"], 1);
    assert_eq!(t.get("/tasks/2").await.1["task"]["performerType"], "user");
    assert_eq!(t.get("/tasks/3").await.0, 404);

    assert_eq!(
        t.post_json("/tasks/2/edit", "task", json!({"complete": true}))
            .await
            .0,
        200
    );
    assert!(t.sim.state().tasks[1].complete);
}

#[tokio::test]
async fn tasks_reject_missing_text_and_unknown_performers() {
    let t = T::new().await;
    let (status, body) = t
        .post_json("/tasks/create", "task", json!({"performerId": 42}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"]["text"], BLANK);
    assert_eq!(body["errors"]["performerId"], "User not found.");
    let (_, body) = t
        .post_json(
            "/tasks/create",
            "task",
            json!({"text": "x", "datetime": "tomorrow"}),
        )
        .await;
    assert_eq!(body["errors"]["performerId"], BLANK);
    assert_eq!(body["errors"]["datetime"], NOT_DATETIME);
    assert!(t.sim.state().tasks.is_empty());
    assert_eq!(t.get("/tasks?filter[status]=open").await.0, 400);
}

// -- integration modules --

#[tokio::test]
async fn integration_module_codes_replace_the_extension_map() {
    let t = T::new().await;
    assert_eq!(t.get("/integration-modules/callbridge").await.0, 404);
    let module = |codes: Value| {
        json!({"code": "callbridge", "integrationCode": "callbridge", "active": true, "name": "callbridge",
               "logo": "https://example.com/logo.svg", "baseUrl": "http://127.0.0.1:1",
               "clientId": "tenant-1", "integrations": {"telephony": {
                   "makeCallUrl": "http://127.0.0.1:1/call", "allowEdit": false,
                   "inputEventSupported": true, "outputEventSupported": true, "hangupEventSupported": true,
                   "additionalCodes": codes}}})
    };
    let event = json!({"phone": "1", "type": "in", "codes": ["555", "101"]});

    let r = t
        .post_json(
            "/integration-modules/callbridge/edit",
            "integrationModule",
            module(json!([{"userId": 4, "code": "555"}])),
        )
        .await;
    assert_eq!(r, (200, json!({"success": true, "info": {}})));
    let (_, body) = t
        .post_json("/telephony/call/event", "event", event.clone())
        .await;
    assert_eq!(body["notExistCodes"], json!([]));
    let (_, body) = t.get("/integration-modules/callbridge").await;
    assert_eq!(body["integrationModule"]["clientId"], "tenant-1");

    // Re-registering replaces the list: 555 is gone, profile codes stay.
    let r = t
        .post_json(
            "/integration-modules/callbridge/edit",
            "integrationModule",
            module(json!([{"userId": "3", "code": "556"}])),
        )
        .await;
    assert_eq!(r.0, 200);
    let (_, body) = t.post_json("/telephony/call/event", "event", event).await;
    assert_eq!(body["notExistCodes"], json!(["555"]));
    assert_eq!(t.sim.state().integration_modules.len(), 1);

    let mut bad = module(json!([{"userId": 99, "code": "1"}]));
    bad["baseUrl"] = json!("");
    bad["logo"] = json!("https://example.com/logo.png");
    let (status, body) = t
        .post_json(
            "/integration-modules/callbridge/edit",
            "integrationModule",
            bad,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"]["baseUrl"], BLANK);
    assert_eq!(body["errors"]["logo"], "Logo image must be svg");
    assert!(body["errors"]["integrations[telephony][additionalCodes][0][userId]"].is_string());
    let r = t
        .post(
            "/integration-modules/callbridge/edit",
            &[("integrationModule", "[1]")],
        )
        .await;
    assert_eq!(r.0, 400);
}

// -- helpers --

#[test]
fn bracket_keys_and_phones_normalize() {
    assert_eq!(normalize_key("filter[ids][]"), "filter.ids");
    assert_eq!(normalize_key("filter[ids][3]"), "filter.ids");
    assert_eq!(
        normalize_key("filter[customFields][nps][min]"),
        "filter.customFields.nps.min"
    );
    assert_eq!(normalize_key("limit"), "limit");
    assert_eq!(phone_key("+7 (900) 123-45-67"), phone_key("89001234567"));
    assert_eq!(phone_key("101").as_deref(), Some("101"));
    assert!(looks_like_phone("+7 (900) 123"));
    assert!(!looks_like_phone("Ivan 123456"));
    assert_eq!(percent_decode("a%20b%2Fc%"), "a b/c%");
}
