//! The small HTTP side: `GET /health` for monitoring (each PBX link; the outbox: pending,
//! in flight, failed, dead, done, delivery latency; the version), and
//! `GET /recordings/{call_id}?exp=…&sig=…`, the signed links the CRM gets to listen to a
//! call (403 for a bad or expired signature, 404 for an unknown call or a missing file;
//! `Range` requests answered, so a browser can seek; a recording still being written
//! right after the call is waited for, then 503 with `Retry-After`). Prometheus metrics come here too.

use std::net::SocketAddr;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::call::Voicemail;
use crate::config::PbxConfig;
use crate::links::{LinkError, LinkKey};
use crate::pbx::status::PbxStatus;
use crate::store::Store;
use crate::time::Timestamp;

/// How long an opened link is held while its recording is being written before the
/// answer is 503 with `Retry-After`: players give up on requests that hang much longer.
const HOLD_OPEN_LINK: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a held link looks for its file.
const POLL_FOR_FILE: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone)]
pub struct HttpState {
    pub pbx: PbxStatus,
    pub store: Store,
    /// The PBXs, for the directories their recordings may be served from.
    pub pbxs: Arc<Vec<PbxConfig>>,
    pub link_key: LinkKey,
    /// How long after a call's end its recording is waited for (`[http] recording_wait`).
    pub recording_wait: std::time::Duration,
    /// For whether the CRM answers.
    pub crm: crate::crm::CrmClient,
    /// The operators' panel, when `[panel] enabled`.
    pub panel: Option<crate::panel::PanelState>,
}

pub fn router(state: HttpState) -> Router {
    let panel = state.panel.clone();
    let app = Router::new()
        .route("/health", get(health))
        .route("/recordings/{call_id}", get(recording))
        .route("/metrics", get(metrics))
        .with_state(state);
    match panel {
        Some(panel) => app.merge(crate::panel::router(panel)),
        None => app,
    }
}

#[derive(Debug, serde::Deserialize)]
struct LinkQuery {
    #[serde(default)]
    exp: String,
    #[serde(default)]
    sig: String,
}

/// Prometheus text format (see `metrics.rs` for the series).
async fn metrics(State(state): State<HttpState>) -> Response {
    let outbox = state.store.outbox_metrics(Timestamp::now()).await.ok();
    match crate::ops::metrics::render(&state.pbx, outbox.as_ref()) {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process",
        )
            .into_response(),
    }
}

/// Streams a call's recording (or the voicemail its caller left) to whoever holds a
/// valid link.
async fn recording(
    State(state): State<HttpState>,
    Path(call_id): Path<String>,
    Query(link): Query<LinkQuery>,
    request: Request,
) -> Response {
    if let Err(e) = state
        .link_key
        .verify(&call_id, &link.exp, &link.sig, Timestamp::now())
    {
        debug!(%call_id, error = %e, "recording link refused");
        let text = match e {
            LinkError::Expired => "this link has expired",
            LinkError::BadSignature => "this link is not valid",
        };
        return (StatusCode::FORBIDDEN, text).into_response();
    }
    let not_found = || (StatusCode::NOT_FOUND, "no recording for this call").into_response();
    let row = match state.store.call(&call_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => {
            warn!(%call_id, error = %e, "could not read the call for its recording");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    // Call ids are `cb-<pbx>-<id>`; of names that are prefixes of one another
    // ("office", "office-2") the longest that fits is the call's PBX.
    let Some(pbx) = state
        .pbxs
        .iter()
        .filter(|p| call_id.starts_with(&format!("cb-{}-", p.name)))
        .max_by_key(|p| p.name.len())
    else {
        return not_found();
    };
    let named = row.recording.clone().or_else(|| {
        row.voicemail
            .as_deref()
            .and_then(|v| serde_json::from_str::<Voicemail>(v).ok())
            .and_then(|v| v.message)
    });
    let Some(named) = named else {
        return not_found();
    };
    let allowed = vec![pbx.recordings_dir.clone(), pbx.voicemail_dir.clone()];
    // Until `recording_wait` after the call's end, a file not written yet (or still
    // growing) is waited for: MixMonitor closes its file after the hang-up, a
    // post-processing step may convert it later.
    let window_ends = row
        .updated_at
        .saturating_add(i64::try_from(state.recording_wait.as_micros()).unwrap_or(i64::MAX));
    let held = std::time::Instant::now();
    let file = loop {
        let (named, allowed) = (named.clone(), allowed.clone());
        let found = tokio::task::spawn_blocking(move || {
            crate::ops::recordings::audio_file(&named, &allowed).map(|f| {
                let growing =
                    crate::ops::recordings::still_written(&f, std::time::SystemTime::now());
                (f, growing)
            })
        })
        .await
        .ok()
        .flatten();
        let waiting = Timestamp::now().0 < window_ends;
        match found {
            Some((file, growing)) if !(growing && waiting) => break file,
            None if !waiting => {
                debug!(%call_id, "recording named but not on disk here");
                return not_found();
            }
            _ => {}
        }
        if held.elapsed() >= HOLD_OPEN_LINK {
            debug!(%call_id, "recording not written yet; the client is asked to come back");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                "the recording is still being written; try again in a few seconds",
            )
                .into_response();
        }
        tokio::time::sleep(POLL_FOR_FILE).await;
    };
    // tower-http serves the file: Content-Type from its extension, Content-Length,
    // `Range` (206, 416), `If-Modified-Since`; it streams, never holding the file.
    match tower_http::services::ServeFile::new(file)
        .oneshot(request)
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            warn!(%call_id, error = %e, "could not read the recording");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not read the recording",
            )
                .into_response()
        }
    }
}

/// 200 when every PBX is connected, 503 otherwise; the body says which is not.
async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let links = state.pbx.snapshot();
    let all_connected = state.pbx.all_connected();
    let outbox = match state
        .store
        .outbox_metrics(crate::time::Timestamp::now())
        .await
    {
        Ok(c) => json!(c),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let body = json!({
        "status": if all_connected { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "pbx": links,
        "crm": state.crm.reach(),
        "outbox": outbox,
    });
    let code = if all_connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Binds `listen` and serves until `shutdown`; returns the bound address at once.
pub async fn serve(
    listen: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok((addr, handle))
}
