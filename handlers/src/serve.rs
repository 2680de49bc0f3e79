//! `socwire serve`: the custom handler the Functions host starts. Listens on
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, routes `POST /{FunctionName}` to its function module and
//! answers `{Outputs, Logs, ReturnValue}`; every failure is a non-2xx answer with a clear
//! message, so the host retries, and a panic in one invocation never takes the server down.

use crate::context::Context;
use crate::functions::{self, FunctionError};
use crate::protocol::InvocationRequest;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::sync::Arc;

/// The whole service; tests drive it with `oneshot` without binding a port.
pub fn app(ctx: Arc<Context>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/{function}", post(invoke))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(ctx)
}

/// The host polls `GET /` until any answer comes: that is readiness. The answer names the
/// worker id the host gave this process, so a host never mistakes another handler that took
/// the same port for its own.
async fn ready() -> String {
    let id = std::env::var("FUNCTIONS_CUSTOMHANDLER_WORKER_ID").unwrap_or_default();
    format!(
        "socwire handler ready {}",
        socwire_common::text::for_log(&id, 64)
    )
}

async fn invoke(
    State(ctx): State<Arc<Context>>,
    Path(function): Path<String>,
    body: Bytes,
) -> Response {
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(reason) => return error_response(&function, &FunctionError::BadInput(reason)),
    };
    let name = function.clone();
    let deadline = ctx.settings.invocation_timeout;
    let context = ctx.clone();
    // A spawned task turns a panic into a JoinError instead of a dropped connection. The guard
    // aborts it when this request future is dropped (the host closed the connection after its
    // own timeout) or when the deadline passes, so no run outlives the host's view of it and
    // overlaps a redelivery of the same message.
    let task = AbortOnDrop(tokio::spawn(async move {
        functions::dispatch(&name, &context, request).await
    }));
    let outcome = match tokio::time::timeout(deadline, task).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let e = FunctionError::Retry(format!(
                "invocation cancelled after {} s (SOCWIRE_INVOCATION_TIMEOUT, below the host's functionTimeout)",
                deadline.as_secs()
            ));
            return error_response(&function, &e);
        }
    };
    match outcome {
        Ok(Ok(response)) => (StatusCode::OK, axum::Json(response)).into_response(),
        Ok(Err(e)) => error_response(&function, &e),
        Err(join) => {
            let e = FunctionError::Failed(format!("invocation panicked: {join}"));
            error_response(&function, &e)
        }
    }
}

/// A spawned invocation that is aborted when its owner goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn parse_request(body: &[u8]) -> Result<InvocationRequest, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("request body is not UTF-8: {e}"))?;
    serde_json::from_str(text)
        .map_err(|e| format!("request body is not an invocation envelope: {e}"))
}

fn error_response(function: &str, error: &FunctionError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    tracing::warn!(function = ?function, status = status.as_u16(), error = ?error.report(), "invocation failed");
    (
        status,
        axum::Json(json!({ "error": error.report(), "function": function.chars().take(64).collect::<String>() })),
    )
        .into_response()
}

/// Binds the port and serves until the process is stopped.
pub async fn run(ctx: Arc<Context>, port: u16, max_body_bytes: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    tracing::info!(port, functions = ?functions::FUNCTION_NAMES, "socwire handler listening");
    socwire_common::listener::serve(
        listener,
        app(ctx, max_body_bytes),
        socwire_common::listener::Limits::default(),
    )
    .await?;
    Ok(())
}

/// Builds the ports from `settings`, logs which adapters were chosen, and serves. When
/// `SOCWIRE_EXIT_ON_STDIN_EOF` is set (the local host sets it), the handler also exits when its
/// stdin closes, so a killed host leaves no orphaned handler behind.
pub async fn run_from_settings(mut settings: crate::settings::Settings) -> anyhow::Result<()> {
    // The host starts the handler in the app root, beside host.json.
    if let Ok(text) = std::fs::read_to_string("host.json") {
        let host_json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("host.json is not valid JSON: {e}"))?;
        settings
            .apply_host_json(&host_json)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let ctx = Arc::new(Context::from_settings(&settings)?);
    for (port, adapter) in &ctx.adapters {
        tracing::info!(port = %port, adapter = %adapter, "adapter");
    }
    if std::env::var_os("SOCWIRE_EXIT_ON_STDIN_EOF").is_some() {
        tokio::spawn(async {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            tracing::info!("stdin closed: the host is gone, exiting");
            std::process::exit(0);
        });
    }
    run(ctx, settings.port, settings.max_body_bytes).await
}
