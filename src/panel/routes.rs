//! The panel's HTTP routes: `GET /panel/login?ext=…&exp=…&sig=…` (a signed link: sets the
//! session cookie, then to the panel), `GET /panel` (the page), `GET /panel/events` (its
//! live cards, server-sent events). Without a valid session each answers 401; a forged or
//! expired link 403. The event streams end when the daemon stops.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::access::{cookie_in, AccessError, PanelAccess, Session, COOKIE};
use super::hub::{Card, PanelHub};
use super::page;
use crate::time::Timestamp;

/// What the routes need.
#[derive(Clone, Debug)]
pub struct PanelState {
    pub hub: PanelHub,
    pub access: PanelAccess,
    /// The session cookie is `Secure` when the panel is reached over https.
    pub secure: bool,
    /// Ends the live streams on shutdown (they would hold the server open).
    pub stop: CancellationToken,
    /// What the CRM's open records are called: `orders` (retailCRM), `cases` (Creatio).
    pub records: &'static str,
    /// Where choices made on the panel are kept for the call's decisions.
    pub store: crate::store::Store,
}

pub fn router(state: PanelState) -> Router {
    Router::new()
        .route("/panel", get(panel))
        .route("/panel/login", get(login))
        .route("/panel/events", get(events))
        .route(
            "/panel/calls/{call_id}/client",
            axum::routing::post(choose_client),
        )
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct LinkQuery {
    #[serde(default)]
    ext: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    sig: String,
}

async fn login(State(state): State<PanelState>, Query(q): Query<LinkQuery>) -> Response {
    match state.access.open(&q.ext, &q.exp, &q.sig, Timestamp::now()) {
        Ok(session) => {
            info!(extension = %session.extension, "panel opened");
            let max_age = (session.expires - Timestamp::now().0.div_euclid(1_000_000)).max(0);
            let cookie = format!(
                "{COOKIE}={}; Path=/panel; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
                state.access.cookie_value(&session),
                if state.secure { "; Secure" } else { "" }
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/panel".to_string()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response()
        }
        Err(e) => {
            debug!(error = %e, "panel link refused");
            refusal(StatusCode::FORBIDDEN, &e)
        }
    }
}

async fn panel(State(state): State<PanelState>, headers: HeaderMap) -> Response {
    let session = match session(&state, &headers) {
        Ok(s) => s,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let (cards, _) = state.hub.subscribe(&session.extension);
    let csrf = state.access.csrf_token(&session);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page::render(&session, &cards, &csrf, state.records)),
    )
        .into_response()
}

async fn events(State(state): State<PanelState>, headers: HeaderMap) -> Response {
    let session = match session(&state, &headers) {
        Ok(s) => s,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let (now, rx) = state.hub.subscribe(&session.extension);
    let feed = Feed {
        first: now.into_iter(),
        rx,
        extension: session.extension,
        stop: state.stop.clone(),
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let card = feed.next().await?;
        Some((Ok::<_, Infallible>(event(&card)), feed))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct Choice {
    client: String,
}

/// `POST /panel/calls/{call_id}/client` `{"client": "<id>"}` with `X-CSRF-Token`: this
/// call is about that one of the clients sharing the number. Kept with the call; the
/// matrix's records made after it go to that client.
async fn choose_client(
    State(state): State<PanelState>,
    axum::extract::Path(call_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let session = match session(&state, &headers) {
        Ok(s) => s,
        Err(e) => return refusal(StatusCode::UNAUTHORIZED, &e),
    };
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !state.access.csrf_ok(&session, token) {
        return (StatusCode::FORBIDDEN, "the request has no valid CSRF token").into_response();
    }
    let Ok(choice) = serde_json::from_slice::<Choice>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {\"client\": \"<id>\"}").into_response();
    };
    let Some(card) = state.hub.card(&call_id, &session.extension) else {
        return (StatusCode::NOT_FOUND, "no such call on this panel").into_response();
    };
    let known = card
        .who
        .as_ref()
        .is_some_and(|w| w.clients.iter().any(|c| c.id == choice.client));
    if !known {
        return (
            StatusCode::BAD_REQUEST,
            "that client does not have the caller's number",
        )
            .into_response();
    }
    if let Err(e) = state
        .store
        .choose_client(
            &call_id,
            &choice.client,
            &session.extension,
            Timestamp::now(),
        )
        .await
    {
        tracing::warn!(error = %e, call_id, "the panel's choice could not be stored");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the choice could not be kept; try again",
        )
            .into_response();
    }
    info!(call_id, extension = %session.extension, client = %choice.client, "client chosen on the panel");
    state.hub.chosen(&call_id, &choice.client);
    StatusCode::NO_CONTENT.into_response()
}

/// One panel's cards: those it sees now, then each new one of its extension.
struct Feed {
    first: std::vec::IntoIter<Arc<Card>>,
    rx: tokio::sync::broadcast::Receiver<Arc<Card>>,
    extension: String,
    stop: CancellationToken,
}

impl Feed {
    async fn next(&mut self) -> Option<Arc<Card>> {
        if let Some(card) = self.first.next() {
            return Some(card);
        }
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                received = self.rx.recv() => match received {
                    Ok(card) if card.seen_by(&self.extension) => return Some(card),
                    Ok(_) => {}
                    // A panel too slow for the feed misses cards, not the next ones.
                    Err(RecvError::Lagged(n)) => debug!(missed = n, "a panel fell behind"),
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn event(card: &Card) -> Event {
    Event::default()
        .event("card")
        .data(serde_json::to_string(card).unwrap_or_default())
}

fn session(state: &PanelState, headers: &HeaderMap) -> Result<Session, AccessError> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookie_in)
        .ok_or(AccessError::NoSession)?;
    state.access.session(cookie, Timestamp::now())
}

fn refusal(status: StatusCode, why: &AccessError) -> Response {
    let body = page::refusal(&why.to_string());
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}
