//! `alert-stream` (Event Hubs trigger, cardinality many): folds IT/OT alerts (an event body is
//! one alert in any format `alertgraph::formats` reads — ALERTS.md, Suricata EVE, Sentinel
//! SecurityAlert rows, Wazuh — or an array of them, or Sentinel's `{"records": [...]}` export)
//! into the alert
//! graph engine and writes every final row (a subgraph that closed, or the part of one that
//! left the window) to `AlertSubgraphs_CL` through the Logs Ingestion port, publishing
//! `socwire.AlertSubgraphPrioritized` for rows that score high. Every accepted alert ends in
//! exactly one row.
//!
//! State is kept per Event Hubs partition (each partition has its own window) as an
//! append-only journal plus a periodic compacted base, so a batch costs in proportion to the
//! batch:
//! - `alertgraph/p/{partition}/journal/{n}`: the batch's accepted alerts and the events it
//!   emitted, written with a conditional create, so two instances that both think they own a
//!   partition cannot both commit the same entry (the loser fails and reloads);
//! - `alertgraph/p/{partition}/base`: an exact engine snapshot and the next journal number,
//!   rewritten every [`COMPACT_EVERY`] batches, after which the entries it covers are deleted.
//!
//! Order of effects: reject rows and subgraph rows (stable `RowKey`s) are written first, then
//! the journal entry; the events go out in the response, which the host routes after the
//! handler answers. A batch redelivered after a failed routing (same partition and sequence
//! numbers) is recognised from the journal and answered with the same events, same ids; its
//! alerts are not applied twice.

pub mod state;

use super::FunctionError;
use crate::context::Context;
use crate::ports::PortError;
use crate::protocol::{EventHubBatchTrigger, InvocationRequest, InvocationResponse};
use alertgraph::formats::Format;
use alertgraph::{Config, EarlyEvictions, Engine, Subgraph};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;
use state::{Base, BatchRecord, EngineState, JournalEntry, PartitionState};
use std::collections::VecDeque;

/// Function name.
pub const NAME: &str = "alert-stream";
/// State key of analysts' verdicts by row shape (`socwire alerts feedback`).
pub const FEEDBACK_KEY: &str = "alertgraph/feedback";
/// How long verdicts read from the state store are used before they are read again.
const FEEDBACK_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "events",
    kind: "eventHubTrigger",
};
/// Event Grid output binding.
const EVENTS_OUT: &str = "prioritized";
/// DCR stream of subgraph rows.
pub const SUBGRAPH_STREAM: &str = "Custom-AlertSubgraphs";
/// DCR stream of rejected alerts.
pub const REJECT_STREAM: &str = "Custom-AlertRejects";
/// Largest event body read (bigger ones are rejected whole).
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Batches between compactions of a partition's journal into its base.
const COMPACT_EVERY: u64 = 64;

fn base_key(partition: &str) -> String {
    format!("alertgraph/p/{partition}/base")
}

fn journal_key(partition: &str, n: u64) -> String {
    format!("alertgraph/p/{partition}/journal/{n:016}")
}

fn reject_row(now: &str, alert_id: Option<&str>, reason: &str, body: &str) -> Value {
    let sample: String = body.chars().take(2048).collect();
    let key: String = sha2::Sha256::digest(format!("{reason}\u{0}{body}").as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({ "TimeGenerated": now, "RowKey": key, "AlertId": alert_id, "Reason": reason, "Body": sample })
}

/// The text of the object an item came from: the body itself, or its `record`-th element (of
/// an array, a `records` wrapper, or a query response's rows).
fn element_of(value: &Value, record: usize) -> String {
    let nth = |items: &Vec<Value>| {
        items
            .get(record.wrapping_sub(1))
            .map(Value::to_string)
            .unwrap_or_default()
    };
    match value {
        _ if record == 0 => value.to_string(),
        Value::Array(items) => nth(items),
        Value::Object(m) => match m.get("records") {
            Some(Value::Array(items)) => nth(items),
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

fn state_error(what: &str, e: impl std::fmt::Display) -> FunctionError {
    FunctionError::Failed(format!("alert engine state ({what}): {e}"))
}

/// Loads a partition: the base, then every journal entry after it, replayed in order.
async fn load(ctx: &Context, partition: &str) -> Result<PartitionState, FunctionError> {
    let cfg = Config {
        window_ms: ctx.settings.alerts.window_ms,
        ..Config::default()
    };
    let mut state = match ctx.state.load(&base_key(partition)).await? {
        Some(bytes) => {
            let base: Base = bincode::deserialize(&bytes).map_err(|e| state_error("base", e))?;
            // A base this engine cannot read (one an older release wrote) would fail every
            // batch until the retry policy gave up on it: start a new window instead, say so,
            // and go on with the journal after it.
            let engine = Engine::restore(&base.engine).unwrap_or_else(|e| {
                tracing::error!(
                    partition = %socwire_common::text::for_log(partition, 64),
                    error = %e,
                    "alert engine: the saved window cannot be read; starting a new one (its alerts are in no row)"
                );
                Engine::new(cfg)
            });
            PartitionState {
                engine,
                next: base.next,
                base_next: base.next,
                recent: base.recent.into(),
            }
        }
        None => PartitionState {
            engine: Engine::new(cfg),
            next: 0,
            base_next: 0,
            recent: VecDeque::new(),
        },
    };
    while let Some(bytes) = ctx.state.load(&journal_key(partition, state.next)).await? {
        let entry: JournalEntry =
            serde_json::from_slice(&bytes).map_err(|e| state_error("journal", e))?;
        for a in &entry.alerts {
            // The journal holds only alerts the engine took once; replayed in order they are
            // taken again, so the answer (counted when the batch ran) is not needed.
            let _ = state.engine.ingest(a);
        }
        state.engine.evict();
        state.remember(entry.batch);
        state.next += 1;
    }
    Ok(state)
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

fn event_of(s: &Subgraph, now: &str) -> Value {
    json!({
        "id": s.subgraph_id,
        "subject": format!("alertgraph/subgraphs/{}", s.subgraph_id),
        "eventType": "socwire.AlertSubgraphPrioritized",
        "eventTime": now,
        "dataVersion": "1.0",
        "data": {
            "SubgraphId": s.subgraph_id, "Score": (s.score * 1000.0).round() / 1000.0,
            "AlertCount": s.alert_count, "NodeCount": s.node_count, "LongestPath": s.longest_path,
            "CrossesItOt": s.crosses_it_ot, "Reasons": s.reasons.iter().take(8).collect::<Vec<_>>(),
            "Nodes": s.nodes.iter().take(20).collect::<Vec<_>>(),
        }
    })
}

/// Handles one batch: the partition's engine (loaded on first use), a redelivered batch
/// answered from what it emitted, the batch's alerts ingested, the final rows and the journal
/// entry written (outputs first, state after), and a summary.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = EventHubBatchTrigger::from_request(&req, TRIGGER.binding)?;
    let partition = partition_of(&trigger);
    let seqs = &trigger.metadata.sequence_number_array.0;
    let (first_seq, last_seq) = (
        seqs.iter().copied().min().unwrap_or(-1),
        seqs.iter().copied().max().unwrap_or(-1),
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = alertgraph::alert::format_time(now_ms);
    let mut guard = ctx.alert_engine.lock().await;
    let engines = guard.get_or_insert_with(EngineState::default);
    hold_partition(ctx, engines, &partition).await?;
    refresh_feedback(ctx, engines).await?;
    let partitions_held = engines.partitions.len();
    let state = engines.partitions.get_mut(&partition).expect("held above");

    // A redelivery: answer with the events already emitted for these sequence numbers.
    let (replayed, applied_already) = emitted_before(state, first_seq, last_seq);
    if applied_already {
        let mut response = InvocationResponse::default();
        response.log(format!(
            "partition {partition} batch {first_seq}..{last_seq} was already applied; {} event(s) emitted again with their ids",
            replayed.len()
        ));
        if !replayed.is_empty() {
            response.messages(EVENTS_OUT, replayed);
        }
        return Ok(response);
    }

    let early_before = state.engine.early_evictions();
    let mut batch = ingest_batch(&mut state.engine, &trigger.events, &now, now_ms);

    // Final rows: groups that closed and parts that left the window (or the bound).
    let rows: Vec<Subgraph> = state.engine.evict();
    let early = state.engine.early_evictions();
    let mut events: Vec<Value> = rows
        .iter()
        .filter(|s| s.score >= ctx.settings.alerts.event_score)
        .map(|s| event_of(s, &now))
        .collect();
    let record = BatchRecord {
        first_seq,
        last_seq,
        events: events.iter().map(Value::to_string).collect(),
    };
    let entry = JournalEntry {
        batch: record.clone(),
        alerts: std::mem::take(&mut batch.applied),
    };
    let row_values: Vec<Value> = rows.iter().map(|s| s.to_row(&now)).collect();
    if let Err(e) = commit(ctx, &partition, state, &batch.rejects, &row_values, &entry).await {
        // Forget the in-memory partition, so the redelivered batch is applied to the last
        // committed state.
        engines.partitions.remove(&partition);
        return Err(e);
    }
    state.next += 1;
    state.remember(record);
    if state.next - state.base_next >= COMPACT_EVERY {
        compact(ctx, &partition, state).await?;
    }

    batch.counts.rows = rows.len();
    batch.counts.events = events.len();
    let mut response = InvocationResponse::default();
    let held = Held {
        early_before,
        early,
        partitions: partitions_held,
        memory_bytes: ctx.settings.alerts.memory_bytes,
    };
    response.log(summary(&partition, state, &batch, &held));
    events.extend(replayed);
    if !events.is_empty() {
        response.messages(EVENTS_OUT, events);
    }
    response.return_value = Some(serde_json::to_value(&batch.counts).unwrap_or_default());
    Ok(response)
}

/// The events already emitted for the batches this one overlaps, and whether it is exactly one
/// of them (a redelivery of a batch already applied).
fn emitted_before(state: &PartitionState, first_seq: i64, last_seq: i64) -> (Vec<Value>, bool) {
    let replayed = state
        .recent
        .iter()
        .filter(|b| first_seq >= 0 && b.overlaps(first_seq, last_seq))
        .flat_map(|b| b.events.iter())
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let applied = state
        .recent
        .iter()
        .any(|b| b.first_seq == first_seq && b.last_seq == last_seq && first_seq >= 0);
    (replayed, applied)
}

/// What the window bound did, for the batch's log line.
struct Held {
    early_before: EarlyEvictions,
    early: EarlyEvictions,
    partitions: usize,
    memory_bytes: usize,
}

/// The batch's log line: alerts new, repeated and set aside, what the window holds, rows and
/// events out, and what the window bound moved out early.
fn summary(partition: &str, state: &PartitionState, batch: &Ingested, held: &Held) -> String {
    let bound = if held.early.times > held.early_before.times {
        format!(
            "; the window bound ({} alerts, {} MB of this instance's {} MB for {} partition(s)) moved {} alert(s) out early so far ({} MB held)",
            state.engine.config().max_alerts,
            state.engine.config().max_bytes >> 20,
            held.memory_bytes >> 20,
            held.partitions,
            held.early.alerts,
            state.engine.held_bytes() >> 20
        )
    } else {
        String::new()
    };
    let counts = &batch.counts;
    format!(
        "partition {partition}: {} alert(s): {} new, {} duplicate(s){}, {} set aside; {} held; {} final row(s), {} event(s){bound}",
        counts.alerts,
        counts.accepted,
        counts.duplicates,
        batch.first_duplicate.as_ref().map(|id| format!(" (first {})", socwire_common::text::for_log(id, 40))).unwrap_or_default(),
        counts.rejected,
        state.engine.held(),
        counts.rows,
        counts.events
    )
}

/// The batch's partition id from its metadata ("0" when absent or not a plain id).
fn partition_of(trigger: &EventHubBatchTrigger) -> String {
    trigger
        .metadata
        .partition_context
        .as_ref()
        .and_then(|p| p.partition_id.clone())
        .filter(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .unwrap_or_else(|| "0".into())
}

/// Loads `partition`'s engine on its first batch here, and shares the instance's memory budget
/// among every partition it holds.
async fn hold_partition(
    ctx: &Context,
    engines: &mut EngineState,
    partition: &str,
) -> Result<(), FunctionError> {
    if engines.partitions.contains_key(partition) {
        return Ok(());
    }
    let mut loaded = load(ctx, partition).await?;
    loaded.engine.set_feedback(engines.feedback.clone());
    engines.partitions.insert(partition.to_string(), loaded);
    let share = ctx.settings.alerts.memory_bytes / engines.partitions.len();
    for p in engines.partitions.values_mut() {
        p.engine.set_max_bytes(share);
    }
    Ok(())
}

/// Reads the analysts' verdicts again when the copy held is over a minute old.
async fn refresh_feedback(ctx: &Context, engines: &mut EngineState) -> Result<(), FunctionError> {
    if engines
        .feedback_read
        .is_some_and(|at| at.elapsed() < FEEDBACK_REFRESH)
    {
        return Ok(());
    }
    let feedback: alertgraph::feedback::Feedback = match ctx.state.load(FEEDBACK_KEY).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "alert engine: the stored analysts' verdicts cannot be read; going on without them");
            Default::default()
        }),
        None => Default::default(),
    };
    for p in engines.partitions.values_mut() {
        p.engine.set_feedback(feedback.clone());
    }
    engines.feedback = feedback;
    engines.feedback_read = Some(std::time::Instant::now());
    Ok(())
}

/// What one batch's events gave the engine.
struct Ingested {
    counts: Counts,
    /// Rows of the alerts set aside, with their reasons.
    rejects: Vec<Value>,
    /// The alerts the engine took, for the journal.
    applied: Vec<alertgraph::Alert>,
    /// The first repeat of an alert already in the window (counted, not set aside).
    first_duplicate: Option<String>,
}

/// Reads every alert of the batch's events (any format) into `engine`; a refusal while
/// parsing and one by the engine are set aside alike.
fn ingest_batch(engine: &mut Engine, bodies: &[String], now: &str, now_ms: i64) -> Ingested {
    let mut out = Ingested {
        counts: Counts {
            alerts: 0,
            accepted: 0,
            duplicates: 0,
            rejected: 0,
            rows: 0,
            events: 0,
        },
        rejects: Vec::new(),
        applied: Vec::new(),
        first_duplicate: None,
    };
    for body in bodies {
        if body.len() > MAX_EVENT_BYTES {
            out.counts.rejected += 1;
            let reason = format!("event body is {} bytes; the limit is 1 MiB", body.len());
            out.rejects.push(reject_row(now, None, &reason, body));
            continue;
        }
        let value: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                out.counts.rejected += 1;
                let reason = format!("event body is not JSON: {e}");
                out.rejects.push(reject_row(now, None, &reason, body));
                continue;
            }
        };
        for item in alertgraph::formats::alerts_of_value(&value, Format::Auto, Some(now_ms)) {
            out.counts.alerts += 1;
            match item
                .result
                .and_then(|alert| engine.ingest(&alert).map(|()| alert))
            {
                Ok(alert) => {
                    out.counts.accepted += 1;
                    out.applied.push(alert);
                }
                Err(r) if r.reason.starts_with("duplicate") => {
                    out.counts.duplicates += 1;
                    out.first_duplicate
                        .get_or_insert_with(|| r.alert_id.unwrap_or_default());
                }
                Err(r) => {
                    out.counts.rejected += 1;
                    let element = element_of(&value, item.record);
                    out.rejects
                        .push(reject_row(now, r.alert_id.as_deref(), &r.reason, &element));
                }
            }
        }
    }
    out
}

/// Rows first, then the journal entry (conditional: one writer per entry).
async fn commit(
    ctx: &Context,
    partition: &str,
    state: &PartitionState,
    rejects: &[Value],
    rows: &[Value],
    entry: &JournalEntry,
) -> Result<(), FunctionError> {
    if !rejects.is_empty() {
        ctx.logs.upload(REJECT_STREAM, rejects).await?;
    }
    if !rows.is_empty() {
        ctx.logs.upload(SUBGRAPH_STREAM, rows).await?;
    }
    let bytes = serde_json::to_vec(entry).map_err(|e| state_error("journal", e))?;
    if !ctx
        .state
        .create(&journal_key(partition, state.next), &bytes)
        .await?
    {
        return Err(PortError::Conflict(format!(
            "journal entry {} of partition {partition} was written by another instance",
            state.next
        ))
        .into());
    }
    Ok(())
}

/// Writes the partition's base (exact engine snapshot) and deletes the journal entries it
/// covers. A crash between the two leaves entries below the base's number, which are never
/// read again.
async fn compact(
    ctx: &Context,
    partition: &str,
    state: &mut PartitionState,
) -> Result<(), FunctionError> {
    let base = Base {
        next: state.next,
        engine: state.engine.snapshot(),
        recent: state.recent.iter().cloned().collect(),
    };
    let bytes = bincode::serialize(&base).map_err(|e| state_error("base", e))?;
    ctx.state.save(&base_key(partition), &bytes).await?;
    for n in state.base_next..state.next {
        ctx.state.delete(&journal_key(partition, n)).await?;
    }
    state.base_next = state.next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn context(dir: &std::path::Path) -> Context {
        let data = dir.to_string_lossy().to_string();
        let settings = Settings::from_lookup(|k| match k {
            "SOCWIRE_DATA_DIR" => Some(data.clone()),
            "SOCWIRE_ALERT_WINDOW" => Some("1h".into()),
            "SOCWIRE_ALERT_EVENT_SCORE" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        Context::from_settings(&settings).unwrap()
    }

    fn alert(id: &str, minutes_ago: i64, src: &str, dst: &str) -> String {
        let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        json!({"TimeGenerated": t.to_rfc3339(), "AlertId": id, "AlertName": "Remote service",
               "Severity": "High", "Domain": "IT", "SrcIp": src, "DstIp": dst})
        .to_string()
    }

    fn batch(first_seq: i64, bodies: &[String]) -> InvocationRequest {
        let seqs: Vec<i64> = (first_seq..first_seq + bodies.len() as i64).collect();
        serde_json::from_value(json!({
            "Data": {"events": bodies},
            "Metadata": {"PartitionContext": {"PartitionId": "3"}, "SequenceNumberArray": seqs}
        }))
        .unwrap()
    }

    fn event_ids(r: &InvocationResponse) -> Vec<String> {
        let mut ids: Vec<String> = r
            .outputs
            .get(EVENTS_OUT)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| e["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn rows(dir: &std::path::Path) -> usize {
        crate::local::SqliteTables::open(&dir.join("tables.sqlite3"))
            .unwrap()
            .rows(SUBGRAPH_STREAM)
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn a_redelivered_batch_gets_the_same_events_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let early = vec![
            alert("a1", 200, "10.0.0.1", "10.0.0.2"),
            alert("a2", 190, "10.0.0.2", "10.0.0.3"),
        ];
        run(&ctx, batch(0, &early)).await.unwrap();
        // Two hours later the first alerts left the 1-hour window: their rows are final.
        let later = vec![alert("b1", 0, "10.9.0.1", "10.9.0.2")];
        let first = run(&ctx, batch(2, &later)).await.unwrap();
        let ids = event_ids(&first);
        assert!(!ids.is_empty());
        let written = rows(dir.path());
        assert!(written > 0);

        // The host failed to route the outputs and delivers the batch again.
        let again = run(&ctx, batch(2, &later)).await.unwrap();
        assert_eq!(event_ids(&again), ids);
        // And again after a restart: the journal remembers the batch.
        let restarted = context(dir.path());
        let after_restart = run(&restarted, batch(2, &later)).await.unwrap();
        assert_eq!(event_ids(&after_restart), ids);
        assert_eq!(rows(dir.path()), written, "no row written twice");
    }

    #[tokio::test]
    async fn an_analysts_verdict_in_the_state_store_reaches_rows_of_the_same_shape() {
        use crate::ports::StateStore;
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let early = vec![
            alert("a1", 200, "10.0.0.1", "10.0.0.2"),
            alert("a2", 190, "10.0.0.2", "10.0.0.3"),
        ];
        run(&ctx, batch(0, &early)).await.unwrap();
        run(&ctx, batch(2, &[alert("b1", 0, "10.9.0.1", "10.9.0.2")]))
            .await
            .unwrap();
        let tables = crate::local::SqliteTables::open(&dir.path().join("tables.sqlite3")).unwrap();
        let stored = tables.rows(SUBGRAPH_STREAM).unwrap();
        let shape = stored[0]["Shape"].as_str().unwrap().to_string();
        assert!(!stored[0]["Reasons"].to_string().contains("analysts"));
        let mut feedback = alertgraph::feedback::Feedback::default();
        feedback.record(
            &shape,
            alertgraph::feedback::Verdict::Benign,
            "2026-12-07T00:00:00Z",
        );
        tables
            .save(FEEDBACK_KEY, &serde_json::to_vec(&feedback).unwrap())
            .await
            .unwrap();
        // A new instance reads the verdict; the same alerts again, under new ids, later.
        let restarted = context(dir.path());
        let again = vec![
            alert("c1", 59, "10.0.0.1", "10.0.0.2"),
            alert("c2", 58, "10.0.0.2", "10.0.0.3"),
        ];
        run(&restarted, batch(3, &again)).await.unwrap();
        // 14 minutes ahead (within what the engine accepts): c1 and c2 leave the 1 h window.
        run(
            &restarted,
            batch(5, &[alert("d1", -14, "10.9.0.1", "10.9.0.2")]),
        )
        .await
        .unwrap();
        let rows = tables.rows(SUBGRAPH_STREAM).unwrap();
        let marked: Vec<&Value> = rows
            .iter()
            .filter(|r| r["Reasons"].to_string().contains("1 time(s) benign"))
            .collect();
        assert!(
            marked.iter().any(|r| r["Shape"] == shape.as_str()),
            "{rows:#?}"
        );
    }

    #[tokio::test]
    async fn a_saved_window_this_engine_cannot_read_does_not_stall_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let old = Base {
            next: 7,
            engine: b"an older release's snapshot".to_vec(),
            recent: Vec::new(),
        };
        ctx.state
            .save(&base_key("3"), &bincode::serialize(&old).unwrap())
            .await
            .unwrap();
        let r = run(&ctx, batch(0, &[alert("n1", 5, "10.0.0.1", "10.0.0.2")]))
            .await
            .unwrap();
        assert_eq!(r.return_value.as_ref().unwrap()["accepted"], 1, "{r:?}");
        assert!(ctx
            .state
            .load(&journal_key("3", 7))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn two_instances_cannot_both_commit_a_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (context(dir.path()), context(dir.path()));
        run(&one, batch(0, &[alert("x1", 10, "10.0.0.1", "10.0.0.2")]))
            .await
            .unwrap();
        run(&two, batch(1, &[alert("x2", 9, "10.0.0.1", "10.0.0.2")]))
            .await
            .unwrap();
        // `one` still holds the partition as it was before `two` wrote entry 1.
        let stale = run(&one, batch(2, &[alert("x3", 8, "10.0.0.1", "10.0.0.2")])).await;
        assert_eq!(
            stale.as_ref().err().map(|e| e.status()),
            Some(503),
            "{stale:?}"
        );
        // Reloaded, it continues from the journal both wrote to.
        run(&one, batch(2, &[alert("x3", 8, "10.0.0.1", "10.0.0.2")]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn compaction_keeps_the_window_and_bounds_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        for n in 0..COMPACT_EVERY as i64 + 3 {
            let id = format!("c{n}");
            run(
                &ctx,
                batch(n, &[alert(&id, 50 - n / 4, "10.0.0.1", "10.0.0.2")]),
            )
            .await
            .unwrap();
        }
        let restarted = context(dir.path());
        let dup = run(
            &restarted,
            batch(999, &[alert("c5", 49, "10.0.0.1", "10.0.0.2")]),
        )
        .await
        .unwrap();
        assert_eq!(dup.return_value.as_ref().unwrap()["duplicates"], 1);
        for n in 0..COMPACT_EVERY {
            assert!(ctx
                .state
                .load(&journal_key("3", n))
                .await
                .unwrap()
                .is_none());
        }
    }
}
