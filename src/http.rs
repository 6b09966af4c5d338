//! The small HTTP side: `GET /health` for monitoring (each PBX link; the outbox: pending,
//! in flight, failed, dead, done, delivery latency; the version). Recording links and
//! Prometheus metrics come here too.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pbx::status::PbxStatus;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub pbx: PbxStatus,
    pub store: Store,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
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
