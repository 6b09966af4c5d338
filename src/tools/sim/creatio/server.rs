//! The Creatio simulator's HTTP side: the forms login (`/ServiceModel/AuthService.svc/Login`,
//! HTTP 200 either way, `Code` 0 with the session cookies or `Code` 1), the Identity
//! Service's `/connect/token`, the session or token checked on every OData request (the
//! `BPMCSRF` header must equal its cookie), injected faults, and OData 4 itself:
//! `GET/POST {odata}/{Entity}`, `GET/PATCH/DELETE {odata}/{Entity}({id})` and
//! `POST {odata}/$batch` (JSON), answering records, `{"value": [...]}` and
//! `{"error":{"code","message"}}` as Creatio does.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::store::{new_guid, Db, OdataError, Query};
use super::{Fault, SimRequest};
use crate::tools::sim::lock;

pub(super) struct Inner {
    pub(super) login: String,
    pub(super) password: String,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) token_lifetime: Duration,
    pub(super) odata_path: String,
    pub(super) csrf_after_root_get: bool,
    pub(super) base_url: String,
    pub(super) db: Mutex<Db>,
    /// Ids of the records not made through the API (the seed, `CreatioSim::insert`).
    pub(super) seeded: Mutex<std::collections::HashSet<String>>,
    /// Live forms sessions: `.ASPXAUTH` → the `BPMCSRF` value it must come with.
    pub(super) sessions: Mutex<HashMap<String, String>>,
    /// Live bearer tokens and when each expires.
    pub(super) tokens: Mutex<HashMap<String, Instant>>,
    pub(super) faults: Mutex<VecDeque<(Option<String>, Fault, u32)>>,
    pub(super) log: Mutex<Vec<SimRequest>>,
    /// Every session cookie, CSRF value and token handed out (tests look for them in logs).
    pub(super) issued: Mutex<Vec<String>>,
    pub(super) logins: AtomicUsize,
    pub(super) grants: AtomicUsize,
    pub(super) in_flight: AtomicUsize,
    /// `METHOD /path` of each request being answered.
    pub(super) in_flight_paths: Mutex<Vec<String>>,
}

pub(super) async fn handle(
    State(sim): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    struct Counted(Arc<Inner>, String);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut paths = lock(&self.0.in_flight_paths);
            if let Some(at) = paths.iter().position(|p| *p == self.1) {
                paths.swap_remove(at);
            }
        }
    }
    sim.in_flight.fetch_add(1, Ordering::SeqCst);
    let described = format!("{method} {}", uri.path());
    lock(&sim.in_flight_paths).push(described.clone());
    let counted = Counted(sim.clone(), described);
    // Creatio finishes a request it has received even when the client is gone (killed,
    // timed out): the work runs apart from the connection, whose end would cancel it.
    let work = tokio::spawn(async move {
        let sim = counted.0.clone();
        let response = sim.process(&method, &uri, &headers, &body).await;
        lock(&sim.log).push(SimRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            status: response.status().as_u16(),
        });
        drop(counted);
        response
    });
    work.await.unwrap_or_else(|_| {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        )
    })
}

impl Inner {
    async fn process(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let path = uri.path();
        let mut lose_answer = false;
        match self.take_fault(path) {
            Some(Fault::Delay { delay, .. }) => tokio::time::sleep(delay).await,
            Some(Fault::LoseAnswer { .. }) => lose_answer = true,
            Some(Fault::Status503 { .. }) => {
                return html(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable")
            }
            Some(Fault::Error {
                status, message, ..
            }) => return odata_error(&OdataError { status, message }),
            _ => {}
        }
        let response = self.route(method, uri, headers, body);
        if lose_answer {
            // The work is done; the answer never arrives (a proxy timed out).
            return html(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out");
        }
        response
    }

    fn route(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        let path = uri.path();
        if path.eq_ignore_ascii_case("/ServiceModel/AuthService.svc/Login")
            && method == Method::POST
        {
            return self.forms_login(body);
        }
        if path == "/connect/token" && method == Method::POST {
            return self.token(body);
        }
        if (path == "/" || path.is_empty()) && method == Method::GET {
            return self.root(headers);
        }
        let Some(rest) = path.strip_prefix(&format!("{}/", self.odata_path)) else {
            return html(StatusCode::NOT_FOUND, "404 Not Found");
        };
        if !self.authorized(headers) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/html")],
                "",
            )
                .into_response();
        }
        let now = now();
        if rest == "$batch" && method == Method::POST {
            let continue_on_error = headers
                .get("Prefer")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("continue-on-error"));
            return self.batch(body, continue_on_error, &now);
        }
        let body = match parse_body(body) {
            Ok(b) => b,
            Err(e) => return odata_error(&e),
        };
        let (status, answer) = self.odata(method, rest, uri.query(), body.as_ref(), &now);
        match answer {
            Err(e) => odata_error(&e),
            Ok(None) => StatusCode::from_u16(status)
                .unwrap_or(StatusCode::NO_CONTENT)
                .into_response(),
            Ok(Some(v)) => json_response(status, &v),
        }
    }

    /// One OData request (also one request of a batch): its status and answer.
    fn odata(
        &self,
        method: &Method,
        rest: &str,
        query: Option<&str>,
        body: Option<&Map<String, Value>>,
        now: &str,
    ) -> (u16, Result<Option<Value>, OdataError>) {
        let (entity, id) = match rest.split_once('(') {
            Some((entity, tail)) => (
                entity,
                tail.strip_suffix(')').map(|id| id.trim_matches('\'')),
            ),
            None => (rest, None),
        };
        let context = format!("{}{}/$metadata#{entity}", self.base_url, self.odata_path);
        let empty = Map::new();
        let mut db = lock(&self.db);
        match (method.as_str(), id) {
            ("GET", None) => (
                200,
                Query::parse(query)
                    .and_then(|q| db.query(entity, &q))
                    .map(|rows| Some(json!({"@odata.context": context, "value": rows}))),
            ),
            ("GET", Some(id)) => {
                let select = Query::parse(query).map(|q| q.select);
                (
                    200,
                    select
                        .and_then(|s| db.get(entity, id, s.as_deref()))
                        .map(Some),
                )
            }
            ("POST", None) => (
                201,
                db.insert(entity, body.unwrap_or(&empty), now).map(|mut r| {
                    r.insert(
                        "@odata.context".into(),
                        Value::String(format!("{context}/$entity")),
                    );
                    Some(Value::Object(r))
                }),
            ),
            ("PATCH", Some(id)) => (
                204,
                db.update(entity, id, body.unwrap_or(&empty), now)
                    .map(|_| None),
            ),
            ("DELETE", Some(id)) => (204, db.delete(entity, id).map(|_| None)),
            _ => (
                405,
                Err(OdataError {
                    status: 405,
                    message: format!("The HTTP method {method} is not allowed on {rest}."),
                }),
            ),
        }
    }

    /// `POST $batch` with a JSON body: each request in turn; the first failure ends it
    /// unless `Prefer: continue-on-error`.
    fn batch(&self, body: &[u8], continue_on_error: bool, now: &str) -> Response {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return odata_error(&OdataError::bad("The batch request body is not JSON."));
        };
        let Some(requests) = body.get("requests").and_then(Value::as_array) else {
            return odata_error(&OdataError::bad("The batch request has no 'requests'."));
        };
        if requests.len() > 100 {
            return odata_error(&OdataError::bad("A batch may hold at most 100 requests."));
        }
        let mut responses = Vec::new();
        for r in requests {
            let id = r.get("id").cloned().unwrap_or(Value::Null);
            let method = r
                .get("method")
                .and_then(Value::as_str)
                .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .unwrap_or(Method::GET);
            let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
            let url = url.strip_prefix(&self.base_url).unwrap_or(url);
            let url = url
                .strip_prefix(&format!("{}/", self.odata_path))
                .unwrap_or(url);
            let url = url.trim_start_matches('/');
            let (rest, query) = match url.split_once('?') {
                Some((r, q)) => (r, Some(q)),
                None => (url, None),
            };
            let body = r.get("body").and_then(Value::as_object);
            let (status, answer) = self.odata(&method, rest, query, body, now);
            let (status, answer) = match answer {
                Ok(a) => (status, a),
                Err(e) => (e.status, Some(error_json(&e))),
            };
            responses.push(json!({
                "id": id,
                "status": status,
                "headers": {"content-type": "application/json; odata.metadata=minimal"},
                "body": answer,
            }));
            if status >= 400 && !continue_on_error {
                break;
            }
        }
        json_response(200, &json!({"responses": responses}))
    }

    fn forms_login(&self, body: &[u8]) -> Response {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let user = body
            .get("UserName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let password = body
            .get("UserPassword")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if user != self.login || password != self.password {
            return json_response(
                200,
                &json!({"Code": 1, "Message": "Invalid username or password specified.",
                        "Exception": null, "PasswordChangeUrl": null, "RedirectUrl": null}),
            );
        }
        self.logins.fetch_add(1, Ordering::SeqCst);
        let (auth, csrf) = (new_guid().replace('-', ""), new_guid().replace('-', ""));
        lock(&self.sessions).insert(auth.clone(), csrf.clone());
        lock(&self.issued).extend([auth.clone(), csrf.clone()]);
        let mut response = json_response(
            200,
            &json!({"Code": 0, "Message": "", "Exception": null, "PasswordChangeUrl": null, "RedirectUrl": null}),
        );
        let mut cookies = vec![
            format!("BPMLOADER={}; path=/; HttpOnly", new_guid()),
            format!(".ASPXAUTH={auth}; path=/; HttpOnly"),
            format!("UserName={user}; path=/"),
        ];
        if !self.csrf_after_root_get {
            cookies.push(format!("BPMCSRF={csrf}; path=/"));
        }
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }

    /// `GET /`: some installations set `BPMCSRF` only here, after the login.
    fn root(&self, headers: &HeaderMap) -> Response {
        let mut response = html(StatusCode::OK, "Creatio");
        let cookies = cookies(headers);
        if let Some(csrf) = cookies
            .get(".ASPXAUTH")
            .and_then(|auth| lock(&self.sessions).get(auth).cloned())
        {
            if let Ok(v) = HeaderValue::from_str(&format!("BPMCSRF={csrf}; path=/")) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }

    fn token(&self, body: &[u8]) -> Response {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if field("grant_type") != "client_credentials" {
            return json_response(400, &json!({"error": "unsupported_grant_type"}));
        }
        if field("client_id") != self.client_id || field("client_secret") != self.client_secret {
            return json_response(400, &json!({"error": "invalid_client"}));
        }
        self.grants.fetch_add(1, Ordering::SeqCst);
        let token = format!(
            "{}{}",
            new_guid().replace('-', ""),
            new_guid().replace('-', "")
        );
        lock(&self.tokens).insert(token.clone(), Instant::now() + self.token_lifetime);
        lock(&self.issued).push(token.clone());
        json_response(
            200,
            &json!({"access_token": token, "expires_in": self.token_lifetime.as_secs(),
                    "token_type": "Bearer", "scope": "ApplicationAccess"}),
        )
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return lock(&self.tokens)
                .get(token)
                .is_some_and(|until| Instant::now() < *until);
        }
        let cookies = cookies(headers);
        let Some(csrf) = cookies
            .get(".ASPXAUTH")
            .and_then(|auth| lock(&self.sessions).get(auth).cloned())
        else {
            return false;
        };
        headers.get("BPMCSRF").and_then(|v| v.to_str().ok()) == Some(csrf.as_str())
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let at = faults
            .iter()
            .position(|(prefix, _, _)| prefix.as_deref().is_none_or(|p| on_path(path, p)))?;
        let entry = faults.get_mut(at)?;
        let fault = entry.1.clone();
        entry.2 = entry.2.saturating_sub(1);
        if entry.2 == 0 {
            faults.remove(at);
        }
        Some(fault)
    }
}

/// Whether `path` is `prefix` or below it: `/0/odata/Case` covers `/0/odata/Case(…)`,
/// not `/0/odata/CaseStatus`.
fn on_path(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with(['/', '(', '?']) || prefix.ends_with('/')
    })
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn parse_body(body: &[u8]) -> Result<Option<Map<String, Value>>, OdataError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(OdataError::bad("The request body is not a JSON object.")),
    }
}

/// The time as Creatio writes it.
pub(super) fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn error_json(e: &OdataError) -> Value {
    json!({"error": {"code": "", "message": e.message}})
}

fn odata_error(e: &OdataError) -> Response {
    json_response(e.status, &error_json(e))
}

fn json_response(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(
            header::CONTENT_TYPE,
            "application/json; odata.metadata=minimal; charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

fn html(status: StatusCode, title: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"),
    )
        .into_response()
}
