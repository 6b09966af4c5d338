//! Logging in to Creatio, the two ways it offers:
//!
//! - forms login: `POST {app}/ServiceModel/AuthService.svc/Login` with the user name and
//!   password; Creatio answers HTTP 200 either way, with `Code` 0 and the session's
//!   cookies (`BPMLOADER`, `.ASPXAUTH`, `BPMCSRF`, `UserName`) on success, `Code` ≠ 0 and
//!   a message on a wrong password. Every later request carries the cookies and the
//!   header `BPMCSRF` = that cookie's value;
//! - OAuth 2.0 client credentials: `POST {identity_url}/connect/token` → a bearer token,
//!   renewed before it expires.
//!
//! A session that ended (401/403) is renewed once and the request repeated (`odata`).
//! The password, the client secret, the cookies and the token never reach a log or an
//! error message.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tracing::info;

use crate::config::Secret;
use crate::crm::CrmError;

/// How callbridge logs in.
#[derive(Debug, Clone)]
pub(super) enum Login {
    Forms {
        user: String,
        password: Secret,
    },
    OAuth {
        client_id: String,
        secret: Secret,
        token_url: String,
    },
}

/// What a request carries to be let in.
#[derive(Clone)]
pub(super) enum Credentials {
    Cookies { cookie: Secret, csrf: Secret },
    Bearer { token: Secret, renew_at: Instant },
}

impl Credentials {
    pub(super) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credentials::Cookies { cookie, csrf } if csrf.expose().is_empty() => {
                request.header("Cookie", cookie.expose())
            }
            Credentials::Cookies { cookie, csrf } => request
                .header("Cookie", cookie.expose())
                .header("BPMCSRF", csrf.expose()),
            Credentials::Bearer { token, .. } => {
                request.header("Authorization", format!("Bearer {}", token.expose()))
            }
        }
    }

    fn same(&self, other: &Credentials) -> bool {
        match (self, other) {
            (Credentials::Cookies { cookie: a, .. }, Credentials::Cookies { cookie: b, .. }) => {
                a.expose() == b.expose()
            }
            (Credentials::Bearer { token: a, .. }, Credentials::Bearer { token: b, .. }) => {
                a.expose() == b.expose()
            }
            _ => false,
        }
    }
}

/// A token is renewed this long before Creatio says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The current credentials, shared by every request of the adapter.
pub(super) struct Session {
    login: Login,
    /// The application root.
    base: String,
    current: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("base", &self.base).finish()
    }
}

impl Session {
    pub(super) fn new(login: Login, base: &str) -> Session {
        Session {
            login,
            base: base.to_string(),
            current: Mutex::new(None),
        }
    }

    /// The credentials to send now, logging in first when there are none (or a token is
    /// about to expire).
    pub(super) async fn credentials(
        &self,
        http: &reqwest::Client,
    ) -> Result<Credentials, CrmError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            let fresh = match c {
                Credentials::Bearer { renew_at, .. } => Instant::now() < *renew_at,
                Credentials::Cookies { .. } => true,
            };
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.log_in(http).await?;
        *current = Some(c.clone());
        Ok(c)
    }

    /// Creatio said `stale` is no longer good (401/403): logs in again, unless another
    /// request did already.
    pub(super) async fn renew(
        &self,
        http: &reqwest::Client,
        stale: &Credentials,
    ) -> Result<Credentials, CrmError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            if !c.same(stale) {
                return Ok(c.clone());
            }
        }
        info!("Creatio ended the session; logging in again");
        let c = self.log_in(http).await?;
        *current = Some(c.clone());
        Ok(c)
    }

    async fn log_in(&self, http: &reqwest::Client) -> Result<Credentials, CrmError> {
        match &self.login {
            Login::Forms { user, password } => self.forms(http, user, password).await,
            Login::OAuth {
                client_id,
                secret,
                token_url,
            } => token(http, client_id, secret, token_url).await,
        }
    }

    async fn forms(
        &self,
        http: &reqwest::Client,
        user: &str,
        password: &Secret,
    ) -> Result<Credentials, CrmError> {
        let url = format!("{}/ServiceModel/AuthService.svc/Login", self.base);
        let response = http
            .post(&url)
            .header("ForceUseSession", "true")
            .json(&json!({"UserName": user, "UserPassword": password.expose()}))
            .send()
            .await
            .map_err(|e| CrmError::Transport(transport_text(&e)))?;
        let status = response.status().as_u16();
        let mut cookies = Vec::new();
        collect_cookies(response.headers(), &mut cookies);
        let text = response
            .text()
            .await
            .map_err(|e| CrmError::Transport(transport_text(&e)))?;
        crate::ops::metrics::crm_request("/ServiceModel/AuthService.svc/Login", Some(status));
        if status >= 400 {
            return Err(CrmError::Rejected {
                status,
                message: format!("Creatio's login answered HTTP {status}"),
                retry_after: None,
            });
        }
        let body: Value = serde_json::from_str(&text).map_err(|_| CrmError::BadBody {
            status,
            snippet: text.chars().take(120).collect(),
        })?;
        let code = body.get("Code").and_then(Value::as_i64).unwrap_or(-1);
        if code != 0 {
            let said = body
                .get("Message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or("no message");
            // HTTP 200 with a non-zero code: the user name or password is wrong (or the
            // user may not log in); trying again will not help.
            return Err(CrmError::Rejected {
                status: 401,
                message: format!(
                    "Creatio refused the login of crm.login {user:?} (code {code}: {said}); check crm.login and crm.password"
                ),
                retry_after: None,
            });
        }
        if !cookies.iter().any(|(name, _)| name == "BPMCSRF") {
            // Some installs set BPMCSRF only on the first page load after the login.
            let response = http
                .get(&self.base)
                .header("Cookie", cookie_header(&cookies))
                .send()
                .await
                .map_err(|e| CrmError::Transport(transport_text(&e)))?;
            collect_cookies(response.headers(), &mut cookies);
        }
        let csrf = cookies
            .iter()
            .find(|(name, _)| name == "BPMCSRF")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        if csrf.is_empty() {
            // An installation with CSRF protection off sets none; one with it on will
            // refuse every request, and this says why.
            tracing::warn!(
                user,
                "Creatio set no BPMCSRF cookie at login; requests go without the BPMCSRF header (if they are refused with 401/403, check the CSRF settings)"
            );
        }
        info!(user, "logged in to Creatio");
        Ok(Credentials::Cookies {
            cookie: Secret::new(cookie_header(&cookies)),
            csrf: Secret::new(csrf),
        })
    }
}

/// The OAuth 2.0 client credentials grant.
async fn token(
    http: &reqwest::Client,
    client_id: &str,
    secret: &Secret,
    token_url: &str,
) -> Result<Credentials, CrmError> {
    let response = http
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret.expose()),
        ])
        .send()
        .await
        .map_err(|e| CrmError::Transport(transport_text(&e)))?;
    let status = response.status().as_u16();
    crate::ops::metrics::crm_request("/connect/token", Some(status));
    let text = response
        .text()
        .await
        .map_err(|e| CrmError::Transport(transport_text(&e)))?;
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        // An HTML page here is the wrong identity_url (the application, not its
        // Identity Service).
        return Err(CrmError::BadBody {
            status,
            snippet: format!(
                "the token URL {token_url} answered no OAuth JSON (is crm.identity_url the Identity Service?): {}",
                text.chars().take(80).collect::<String>()
            ),
        });
    };
    let Some(access) = body.get("access_token").and_then(Value::as_str) else {
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no access_token");
        return Err(CrmError::Rejected {
            status: if status < 400 { 401 } else { status },
            message: format!(
                "the Identity Service refused crm.client_id {client_id:?}: {error}; check crm.client_id and crm.client_secret"
            ),
            retry_after: None,
        });
    };
    let lifetime = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(3600));
    info!(client_id, expires_in = ?lifetime, "got a Creatio access token");
    Ok(Credentials::Bearer {
        token: Secret::new(access),
        renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
    })
}

/// `name=value` of every `Set-Cookie`, a later one replacing an earlier of its name.
fn collect_cookies(headers: &HeaderMap, into: &mut Vec<(String, String)>) {
    for value in headers.get_all(SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let pair = text.split(';').next().unwrap_or_default();
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        into.retain(|(n, _)| *n != name);
        into.push((name, value));
    }
}

fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A transport error without its URL (it may carry nothing secret, but stays short).
pub(super) fn transport_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}
