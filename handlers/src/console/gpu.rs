//! The GPU page: clusters, jobs and their state, live training curves (loss and evaluation
//! loss per step, average precision per evaluation; the script redraws them every second from
//! `/console/api/gpu/jobs/{job}/metrics` while the job runs), and the registered models with
//! their `metadata.json` and AP before and after fine-tuning.

use super::{esc, json, layout, Console, Nav};
use crate::ports::StateStore as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;

/// Largest metadata.json shown.
const MAX_METADATA_BYTES: u64 = 64 * 1024;

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `GET /gpu`.
pub(super) async fn page(State(console): State<Arc<Console>>) -> Response {
    let status = match crate::ml::runner::status(&console.data_dir).await {
        Ok(s) => s,
        Err(e) => return super::failure(&e.to_string()),
    };
    let mut body = String::new();
    body.push_str(r#"<section aria-labelledby="clusters-h"><h2 id="clusters-h">Clusters</h2>"#);
    let clusters = status["clusters"].as_array().cloned().unwrap_or_default();
    if clusters.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(r#"<div class="scroll"><table id="clusters"><thead><tr><th scope="col">Name</th><th scope="col">VM size</th><th scope="col">State</th><th scope="col" class="n">Nodes</th><th scope="col">Error</th></tr></thead><tbody>"#);
        for c in &clusters {
            let _ = write!(
                body,
                r#"<tr><th scope="row">{}</th><td>{}</td><td><span class="badge">{}</span></td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&text(&c["name"])),
                esc(&text(&c["vmSize"])),
                esc(&text(&c["state"])),
                esc(&text(&c["nodes"])),
                esc(&text(&c["error"])),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    body.push_str(
        r#"<section aria-labelledby="jobs-h"><h2 id="jobs-h">Jobs and training curves</h2>"#,
    );
    let jobs = status["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        body.push_str("<p>None.</p>");
    }
    for j in &jobs {
        let id = text(&j["id"]);
        let m = &j["metrics"];
        let _ = write!(
            body,
            r#"<article class="job" aria-label="Job {id}"><h3><code>{id}</code> <span class="badge" data-job-status>{status}</span></h3><p>cluster {cluster} · command {command} · step <span data-job-step>{step}</span> · loss <span data-job-loss>{loss}</span> · eval loss <span data-job-eval>{eval}</span> · AP <span data-job-ap>{ap}</span>{error}</p><div class="curves" data-job="{id}" data-status="{status}"><svg class="curve" role="img" aria-label="Training curves of job {id}" viewBox="0 0 720 260" width="720" height="260"></svg><p class="legend"><span class="k-loss">— loss</span> <span class="k-eval">— eval loss</span> <span class="k-ap">● AP (right axis)</span></p></div></article>"#,
            id = esc(&id),
            status = esc(&text(&j["status"])),
            cluster = esc(&text(&j["cluster"])),
            command = esc(&text(&j["commandId"])),
            step = esc(&text(&m["step"])),
            loss = esc(&text(&m["loss"])),
            eval = esc(&text(&m["evalLoss"])),
            ap = esc(&text(&m["averagePrecision"])),
            error = j["error"]
                .as_str()
                .map(|e| format!(r#" · <span class="error">{}</span>"#, esc(e)))
                .unwrap_or_default(),
        );
    }
    body.push_str("</section>");

    body.push_str(r#"<section aria-labelledby="models-h"><h2 id="models-h">Models</h2>"#);
    let models = status["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(r#"<div class="scroll"><table id="models"><thead><tr><th scope="col">Model</th><th scope="col">Version</th><th scope="col">Job</th><th scope="col" class="n">AP before</th><th scope="col" class="n">AP after</th><th scope="col">metadata.json</th></tr></thead><tbody>"#);
        for m in &models {
            let folder = std::path::PathBuf::from(text(&m["folder"]));
            let file = folder.join("metadata.json");
            let meta: Option<Value> = std::fs::metadata(&file)
                .ok()
                .filter(|f| f.len() <= MAX_METADATA_BYTES)
                .and_then(|_| std::fs::read(&file).ok())
                .and_then(|b| serde_json::from_slice(&b).ok());
            let ap = |k: &str| {
                meta.as_ref()
                    .and_then(|v| v[k].as_f64())
                    .map(|f| format!("{f:.3}"))
                    .unwrap_or_default()
            };
            let shown = meta
                .as_ref()
                .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
                .unwrap_or_else(|| "(no metadata.json)".into());
            let _ = write!(
                body,
                r#"<tr><th scope="row">{name}</th><td>{version}</td><td><code>{job}</code></td><td class="n">{before}</td><td class="n">{after}</td><td><details><summary>metadata.json</summary><pre>{meta}</pre></details></td></tr>"#,
                name = esc(&text(&m["name"])),
                version = esc(&text(&m["version"])),
                job = esc(&text(&m["jobId"])),
                before = ap("averagePrecisionBefore"),
                after = ap("averagePrecisionAfter"),
                meta = esc(&shown),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    layout(&console, "GPU", Nav::Gpu, &body)
}

/// `GET /console/api/gpu/jobs/{job}/metrics`: the job's points and status.
pub(super) async fn metrics(
    State(console): State<Arc<Console>>,
    Path(job): Path<String>,
) -> Response {
    if job.len() > 128 {
        return (StatusCode::BAD_REQUEST, "job id too long").into_response();
    }
    let key = crate::ml::telemetry::metrics_key(&job);
    let metrics: crate::ml::telemetry::JobMetrics = match console.tables.load(&key).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Ok(None) => Default::default(),
        Err(e) => return super::failure(&e.to_string()),
    };
    let status = crate::ml::runner::status(&console.data_dir)
        .await
        .ok()
        .and_then(|s| {
            s["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["id"].as_str() == Some(job.as_str()))
                .map(|j| j["status"].clone())
        })
        .unwrap_or(Value::Null);
    json(json!({ "status": status, "points": metrics.points, "diverged": metrics.diverged }))
}
