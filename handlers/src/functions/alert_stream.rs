//! `alert-stream` (Event Hubs trigger, cardinality many): folds IT/OT alerts into the alert
//! graph engine's window, writes changed top subgraphs to `AlertSubgraphs_CL` through the Logs
//! Ingestion port, and publishes `socwire.AlertSubgraphPrioritized` for high scores.
//!
//! Bad alerts are set aside one by one (rows in `AlertRejects_CL` with the reason); the rest of
//! the batch goes on. Redelivered alerts are dropped by AlertId. The window is saved through the
//! state port after every batch, before the batch is acknowledged, so a restart keeps it. One
//! engine serves every partition of a process; run the function app at one instance (or one
//! hub per site) so two instances never hold competing windows.

use super::FunctionError;
use crate::context::Context;
use crate::protocol::{EventHubBatchTrigger, InvocationRequest, InvocationResponse};
use alertgraph::{Alert, Config, Engine, Subgraph};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::BTreeSet;

/// Function name.
pub const NAME: &str = "alert-stream";
/// Trigger binding.
const EVENTS_IN: &str = "events";
/// Event Grid output binding.
const EVENTS_OUT: &str = "prioritized";
/// DCR stream of subgraph rows.
pub const SUBGRAPH_STREAM: &str = "Custom-AlertSubgraphs";
/// DCR stream of rejected alerts.
pub const REJECT_STREAM: &str = "Custom-AlertRejects";
/// State keys.
const WINDOW_KEY: &str = "alertgraph/window";
const EMITTED_KEY: &str = "alertgraph/emitted";
/// Largest event body read (bigger ones are rejected whole).
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The engine and the subgraph ids already written, held between batches.
pub struct EngineState {
    engine: Engine,
    emitted: BTreeSet<String>,
}

fn reject_row(now: &str, alert_id: Option<&str>, reason: &str, body: &str) -> Value {
    let sample: String = body.chars().take(2048).collect();
    let key: String = sha2::Sha256::digest(format!("{reason}\u{0}{body}").as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({ "TimeGenerated": now, "RowKey": key, "AlertId": alert_id, "Reason": reason, "Body": sample })
}

async fn load(ctx: &Context) -> Result<EngineState, FunctionError> {
    let cfg = Config {
        window_ms: ctx.settings.alert_window_ms,
        ..Config::default()
    };
    let engine = match ctx.state.load(WINDOW_KEY).await? {
        Some(bytes) => Engine::restore(&bytes).map_err(FunctionError::Failed)?,
        None => Engine::new(cfg),
    };
    let emitted = match ctx.state.load(EMITTED_KEY).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| FunctionError::Failed(format!("emitted-subgraph state: {e}")))?,
        None => BTreeSet::new(),
    };
    Ok(EngineState { engine, emitted })
}

#[derive(Serialize, Deserialize)]
struct Counts {
    alerts: usize,
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    rows: usize,
    events: usize,
}

/// Handles one batch.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = EventHubBatchTrigger::from_request(&req, EVENTS_IN)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = alertgraph::alert::format_time(now_ms);
    let mut guard = ctx.alert_engine.lock().await;
    if guard.is_none() {
        *guard = Some(load(ctx).await?);
    }
    let state = guard.as_mut().expect("loaded above");
    let mut counts = Counts {
        alerts: 0,
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        rows: 0,
        events: 0,
    };
    let mut rejects = Vec::new();
    let mut first_duplicate = None;
    for body in &trigger.events {
        if body.len() > MAX_EVENT_BYTES {
            counts.rejected += 1;
            rejects.push(reject_row(
                &now,
                None,
                &format!("event body is {} bytes; the limit is 1 MiB", body.len()),
                body,
            ));
            continue;
        }
        let value: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                counts.rejected += 1;
                rejects.push(reject_row(
                    &now,
                    None,
                    &format!("event body is not JSON: {e}"),
                    body,
                ));
                continue;
            }
        };
        for (i, parsed) in Alert::from_body(&value, Some(now_ms))
            .into_iter()
            .enumerate()
        {
            counts.alerts += 1;
            let element = match &value {
                Value::Array(items) => items.get(i).map(Value::to_string).unwrap_or_default(),
                one => one.to_string(),
            };
            let alert = match parsed {
                Ok(a) => a,
                Err(r) => {
                    counts.rejected += 1;
                    rejects.push(reject_row(&now, r.alert_id.as_deref(), &r.reason, &element));
                    continue;
                }
            };
            match state.engine.ingest(&alert) {
                Ok(()) => counts.accepted += 1,
                Err(r) if r.reason.starts_with("duplicate") => {
                    counts.duplicates += 1;
                    first_duplicate.get_or_insert_with(|| alert.alert_id.clone());
                }
                Err(r) => {
                    counts.rejected += 1;
                    rejects.push(reject_row(&now, r.alert_id.as_deref(), &r.reason, &element));
                }
            }
        }
    }

    // Subgraphs: the ones that closed (left the window) and the changed ones near the top.
    let mut write: Vec<Subgraph> = state.engine.evict();
    let current = state.engine.subgraphs();
    let live: BTreeSet<String> = current.iter().map(|s| s.subgraph_id.clone()).collect();
    write.extend(
        current
            .into_iter()
            .take(ctx.settings.alert_rows_top)
            .filter(|s| !state.emitted.contains(&s.subgraph_id)),
    );
    let rows: Vec<Value> = write
        .iter()
        .map(|s| {
            let mut row = s.to_row(&now);
            row["RowKey"] = json!(s.subgraph_id);
            row
        })
        .collect();
    let events: Vec<Value> = write
        .iter()
        .filter(|s| s.score >= ctx.settings.alert_event_score)
        .map(|s| {
            json!({
                "id": s.subgraph_id,
                "subject": format!("alertgraph/subgraphs/{}", s.subgraph_id),
                "eventType": "socwire.AlertSubgraphPrioritized",
                "eventTime": now,
                "dataVersion": "1.0",
                "data": {
                    "SubgraphId": s.subgraph_id, "Rank": s.rank, "Score": (s.score * 1000.0).round() / 1000.0,
                    "AlertCount": s.alert_count, "NodeCount": s.node_count, "LongestPath": s.longest_path,
                    "CrossesItOt": s.crosses_it_ot, "Reasons": s.reasons,
                    "Nodes": s.nodes.iter().take(20).collect::<Vec<_>>(),
                }
            })
        })
        .collect();

    // Effects, then the saved window: if anything fails, forget the in-memory window so the
    // redelivered batch is applied to the last saved one.
    let result: Result<(), FunctionError> = async {
        if !rejects.is_empty() {
            ctx.logs.upload(REJECT_STREAM, &rejects).await?;
        }
        if !rows.is_empty() {
            ctx.logs.upload(SUBGRAPH_STREAM, &rows).await?;
        }
        let mut emitted: BTreeSet<String> = state.emitted.intersection(&live).cloned().collect();
        emitted.extend(write.iter().map(|s| s.subgraph_id.clone()));
        ctx.state.save(WINDOW_KEY, &state.engine.snapshot()).await?;
        ctx.state
            .save(
                EMITTED_KEY,
                &serde_json::to_vec(&emitted).unwrap_or_default(),
            )
            .await?;
        state.emitted = emitted;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        *guard = None;
        return Err(e);
    }
    counts.rows = rows.len();
    counts.events = events.len();
    let mut response = InvocationResponse::default();
    response.log(format!(
        "{} alert(s): {} new, {} duplicate(s){}, {} set aside; window {} alert(s); {} subgraph row(s), {} event(s)",
        counts.alerts,
        counts.accepted,
        counts.duplicates,
        first_duplicate.map(|id| format!(" (first {})", socwire_common::text::for_log(&id, 40))).unwrap_or_default(),
        counts.rejected,
        guard.as_ref().map_or(0, |s| s.engine.len()),
        counts.rows,
        counts.events
    ));
    if !events.is_empty() {
        response.messages(EVENTS_OUT, events);
    }
    response.return_value = Some(serde_json::to_value(&counts).unwrap_or_default());
    Ok(response)
}
