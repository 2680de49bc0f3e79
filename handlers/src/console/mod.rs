//! The local console `socwire up` serves beside the HTTP triggers: four read-only pages over
//! what the local host stores — brokers (live counters, dead letters and rejects with a
//! Replay button), triaged incidents, ranked alert stories drawn as lanes, and the GPU
//! lifecycle (clusters, jobs, live training curves, models).
//!
//! Everything it sends is built here: the style sheet and the script live in `assets/` and are
//! compiled into the binary, so the console works offline and loads nothing from elsewhere
//! (the Content-Security-Policy says so too). Every stored text it shows is escaped
//! ([`esc`]): incident titles, entity values, alert names and message bodies are
//! attacker-controlled. Lists are paged; the one action, Replay, is a POST that must carry the
//! console's CSRF token. Who may reach the console at all is the host's business
//! (`socwire_host::Host::mount_console`).

mod brokers;
mod gpu;
mod incidents;
mod stories;

use alertgraph::svg::Zones;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use socwire_host::brokers::Brokers;
use socwire_host::stats::Stats;
use std::path::PathBuf;
use std::sync::Arc;

/// Rows per page on every list.
pub const PAGE_ROWS: usize = 50;

/// The file of the asset map that places hosts in zones and Purdue levels (a JSON list of
/// `alertgraph::svg::Zone`); optional.
pub const ZONES_FILE: &str = "asset-zones.json";

/// What the console reads.
pub struct Console {
    data_dir: PathBuf,
    brokers: Arc<Brokers>,
    stats: Arc<Stats>,
    csrf: String,
    zones: Zones,
    tables: crate::local::SqliteTables,
}

impl Console {
    /// A console over the state in `data_dir`, the running host's brokers and counters.
    pub fn open(
        data_dir: PathBuf,
        brokers: Arc<Brokers>,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Arc<Self>> {
        let zones = match std::fs::read(data_dir.join(ZONES_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", data_dir.join(ZONES_FILE).display()))?,
            Err(_) => Zones::default(),
        };
        // Opening the stores creates the indexes the pages read through.
        let tables = crate::local::SqliteTables::open(&data_dir.join("tables.sqlite3"))?;
        crate::local::SqliteIncidentStore::open(&data_dir.join("sentinel.sqlite3"))?;
        Ok(Arc::new(Self {
            csrf: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            data_dir,
            brokers,
            stats,
            zones,
            tables,
        }))
    }

    /// The token every POST must carry (new for every run of `socwire up`).
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Opens one of the handler's SQLite files read-only (None when it does not exist yet).
    fn read_only(&self, file: &str) -> anyhow::Result<Option<rusqlite::Connection>> {
        let path = self.data_dir.join(file);
        if !path.is_file() {
            return Ok(None);
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Some(conn))
    }
}

/// The console's routes: `/`, `/incidents`, `/stories`, `/stories/{row}`, `/gpu`, and
/// `/console/…` for assets, JSON and the Replay action.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(brokers::page))
        .route("/incidents", get(incidents::page))
        .route("/stories", get(stories::list))
        .route("/stories/{row}", get(stories::story))
        .route("/console/stories/{row}/svg", get(stories::svg))
        .route("/console/api/stories/{row}/edge", get(stories::edge_alerts))
        .route("/gpu", get(gpu::page))
        .route("/console/api/gpu/jobs/{job}/metrics", get(gpu::metrics))
        .route("/console/api/counters", get(brokers::counters))
        .route("/console/replay", post(brokers::replay))
        .route("/console/assets/{name}", get(asset))
        .with_state(console)
}

/// Escapes text for HTML (element content and quoted attributes alike).
pub fn esc(text: &str) -> String {
    socwire_common::text::escape_html(text)
}

/// Runs blocking store reads off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(&e.to_string())),
        Err(e) => Err(failure(&e.to_string())),
    }
}

fn failure(reason: &str) -> Response {
    tracing::error!(error = %socwire_common::text::for_log(reason, 300), "console");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        secure_headers("text/plain; charset=utf-8"),
        format!("console: {reason}"),
    )
        .into_response()
}

/// Headers every console response carries: nothing but this origin's own files may load or
/// be contacted, no framing, no sniffing, no caching of store contents.
fn secure_headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // Not `no-referrer`: with it Chromium sends `Origin: null` on the Replay form.
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// A JSON answer with the console's headers.
fn json(value: serde_json::Value) -> Response {
    (
        secure_headers("application/json"),
        serde_json::to_string(&value).unwrap_or_default(),
    )
        .into_response()
}

/// The four pages, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Brokers,
    Incidents,
    Stories,
    Gpu,
}

/// A whole page: navigation, the CSRF token in a meta tag, `body` in `<main>`.
fn layout(console: &Console, title: &str, nav: Nav, body: &str) -> Response {
    let link = |href: &str, label: &str, this: Nav| {
        format!(
            r#"<a href="{href}"{}>{label}</a>"#,
            if nav == this {
                r#" aria-current="page""#
            } else {
                ""
            }
        )
    };
    let html = format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title} · socwire console</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">socwire console</span>
<nav aria-label="Console pages">{b}{i}{s}{g}</nav></header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        csrf = esc(&console.csrf),
        title = esc(title),
        b = link("/", "Brokers", Nav::Brokers),
        i = link("/incidents", "Incidents", Nav::Incidents),
        s = link("/stories", "Alert stories", Nav::Stories),
        g = link("/gpu", "GPU", Nav::Gpu),
    );
    (secure_headers("text/html; charset=utf-8"), html).into_response()
}

/// "Previous / next" links for a list paged by the query parameter `param` (an offset), keeping
/// the other `query` pairs; `shown` rows are on this page and `more` says whether a next page
/// exists.
fn pager(
    base: &str,
    query: &[(&str, String)],
    param: &str,
    offset: usize,
    shown: usize,
    more: bool,
) -> String {
    let href = |at: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(k, v);
        }
        q.append_pair(param, &at.to_string());
        esc(&format!("{base}?{}", q.finish()))
    };
    let mut out = String::from(r#"<nav class="pager" aria-label="Pages">"#);
    if offset > 0 {
        out.push_str(&format!(
            r#"<a href="{}" rel="prev">← Previous {PAGE_ROWS}</a>"#,
            href(offset.saturating_sub(PAGE_ROWS))
        ));
    }
    out.push_str(&format!(
        "<span>rows {}–{}</span>",
        (offset + 1).min(offset + shown),
        offset + shown
    ));
    if more {
        out.push_str(&format!(
            r#"<a href="{}" rel="next">Next {PAGE_ROWS} →</a>"#,
            href(offset + PAGE_ROWS)
        ));
    }
    out.push_str("</nav>");
    out
}

/// A query parameter as a number (0 when absent or not a number).
fn offset_of(query: &std::collections::HashMap<String, String>, name: &str) -> usize {
    query
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(10_000_000)
}

/// Unix milliseconds as UTC text.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match name.as_str() {
        "console.css" => (secure_headers("text/css; charset=utf-8"), CSS).into_response(),
        "console.js" => (secure_headers("text/javascript; charset=utf-8"), JS).into_response(),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// True when a POST may act: it carries the console's CSRF token and, where the browser says
/// where it comes from, it comes from this origin.
fn same_origin_post(console: &Console, headers: &HeaderMap, token: Option<&str>) -> bool {
    let token_ok = token.is_some_and(|t| {
        t.len() == console.csrf.len()
            && t.bytes()
                .zip(console.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|s| s == "same-origin");
    let origin_ok = match (
        headers.get("origin").and_then(|v| v.to_str().ok()),
        headers.get("host").and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
        (None, _) => true,
    };
    if !(token_ok && site_ok && origin_ok) {
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| socwire_common::text::for_log(v, 100))
        };
        tracing::warn!(
            token_ok,
            sec_fetch_site = ?h("sec-fetch-site"),
            origin = ?h("origin"),
            host = ?h("host"),
            "console: refused a POST"
        );
    }
    token_ok && site_ok && origin_ok
}

#[cfg(test)]
mod tests;
