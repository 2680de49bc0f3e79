//! The Brokers page: every queue, Service Bus entity, hub, partition and Event Grid
//! subscription with its depth, what is in flight, and the counters of the functions it
//! feeds (delivered, retried, poisoned, dead-lettered, set aside), updated every second by the
//! script from `/console/api/counters`; then the dead letters and the functions' rejects, a
//! page at a time, each with its reason, an escaped body preview and a Replay button.

use super::{
    blocking, esc, json, layout, offset_of, pager, same_origin_post, when, Console, Nav, PAGE_ROWS,
};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use socwire_host::brokers::{BrokerStatus, DeadLetter, FunctionTrigger, PartitionCounts};
use socwire_host::stats::FunctionStats;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

/// Bytes of a body shown in the preview.
const PREVIEW_BYTES: usize = 400;

/// A table cell: text, or a live count with its key.
enum Col {
    Text(String),
    Count(String, i64),
}

/// One table of the page.
struct Table {
    id: &'static str,
    title: &'static str,
    headers: &'static [&'static str],
    rows: Vec<Vec<Col>>,
}

/// The counters of the functions a source feeds, summed.
fn fed(
    stats: &BTreeMap<String, FunctionStats>,
    triggers: &[FunctionTrigger],
    kind: &str,
    source: &str,
) -> FunctionStats {
    let mut t = FunctionStats::default();
    for f in triggers
        .iter()
        .filter(|t| t.kind == kind && t.source == source)
    {
        if let Some(s) = stats.get(&f.function) {
            t += s;
        }
    }
    t
}

/// The broker page's tables, read from the brokers and this run's counters.
fn tables(console: &Console) -> anyhow::Result<Vec<Table>> {
    let b = &console.brokers;
    let status = b.status()?;
    let partitions = b.partitions()?;
    let triggers = b.function_triggers()?;
    let stats = console.stats.snapshot();
    Ok(vec![
        queue_table(&status, &stats, &triggers),
        service_bus_table(&status, &stats, &triggers),
        event_hub_table(&status, &stats, &triggers),
        partition_table(&partitions),
        event_grid_table(&status, &stats, &triggers),
        function_table(&stats),
    ])
}

/// Counts of one table cell, keyed for the live counters.
fn count(key: String, v: i64) -> Col {
    Col::Count(key, v)
}

/// A counter of this run (`u64`) as a cell value.
fn n(v: u64) -> i64 {
    v as i64
}

/// Storage queues: depth, and what their functions did with the messages.
fn queue_table(
    status: &BrokerStatus,
    stats: &BTreeMap<String, FunctionStats>,
    triggers: &[FunctionTrigger],
) -> Table {
    let rows = status
        .queues
        .iter()
        .map(|q| {
            let f = fed(stats, triggers, "queue", &q.name);
            let k = |c: &str| format!("q/{}/{c}", q.name);
            vec![
                Col::Text(q.name.clone()),
                count(k("visible"), q.visible),
                count(k("invisible"), q.invisible),
                count(k("delivered"), n(f.delivered)),
                count(k("retried"), n(f.retried)),
                count(k("poisoned"), n(f.poisoned)),
                count(k("rejected"), n(f.set_aside)),
            ]
        })
        .collect();
    Table {
        id: "queues",
        title: "Storage queues",
        headers: &[
            "Queue",
            "Depth (visible)",
            "In flight or waiting",
            "Delivered",
            "Retried",
            "Poisoned",
            "Rejected",
        ],
        rows,
    }
}

/// Service Bus entities: depth, locks, schedules and outcomes.
fn service_bus_table(
    status: &BrokerStatus,
    stats: &BTreeMap<String, FunctionStats>,
    triggers: &[FunctionTrigger],
) -> Table {
    let rows = status
        .service_bus
        .iter()
        .map(|e| {
            let f = fed(stats, triggers, "servicebus", &e.entity);
            let k = |c: &str| format!("sb/{}/{c}", e.entity);
            vec![
                Col::Text(e.entity.clone()),
                Col::Text(e.kind.clone()),
                count(k("active"), e.active),
                count(k("locked"), e.locked),
                count(k("scheduled"), e.scheduled),
                count(k("delivered"), n(f.delivered)),
                count(k("retried"), n(f.retried)),
                count(k("dead-lettered"), e.dead_lettered),
                count(k("rejected"), n(f.set_aside)),
            ]
        })
        .collect();
    Table {
        id: "service-bus",
        title: "Service Bus queues, topics and subscriptions",
        headers: &[
            "Entity",
            "Kind",
            "Depth (active)",
            "In flight (locked)",
            "Scheduled",
            "Delivered",
            "Retried",
            "Dead-lettered",
            "Rejected",
        ],
        rows,
    }
}

/// Event hubs: retained events, backlog and outcomes.
fn event_hub_table(
    status: &BrokerStatus,
    stats: &BTreeMap<String, FunctionStats>,
    triggers: &[FunctionTrigger],
) -> Table {
    let rows = status
        .event_hubs
        .iter()
        .map(|h| {
            let f = fed(stats, triggers, "eventhub", &h.hub);
            let k = |c: &str| format!("eh/{}/{c}", h.hub);
            let backlog: i64 = h.consumer_groups.iter().map(|g| g.unprocessed).sum();
            vec![
                Col::Text(h.hub.clone()),
                Col::Text(h.partitions.to_string()),
                count(k("events"), h.events),
                count(k("backlog"), backlog),
                count(k("delivered"), n(f.delivered)),
                count(k("retried"), n(f.retried)),
                count(k("lost"), n(f.lost_after_retries)),
                count(k("rejected"), n(f.set_aside)),
            ]
        })
        .collect();
    Table {
        id: "event-hubs",
        title: "Event Hubs",
        headers: &[
            "Hub",
            "Partitions",
            "Events retained",
            "Not yet processed",
            "Delivered",
            "Retried",
            "Lost after retries",
            "Rejected",
        ],
        rows,
    }
}

/// Event Hubs partitions: events, last sequence number, backlog per consumer group.
fn partition_table(partitions: &[PartitionCounts]) -> Table {
    let rows = partitions
        .iter()
        .map(|p| {
            let k = |c: &str| format!("ehp/{}/{}/{c}", p.hub, p.partition);
            let mut row = vec![
                Col::Text(p.hub.clone()),
                Col::Text(p.partition.to_string()),
                count(k("events"), p.events),
                count(k("last"), p.last_sequence),
            ];
            row.push(Col::Text(if p.unprocessed.is_empty() {
                "no checkpoint yet".into()
            } else {
                p.unprocessed
                    .iter()
                    .map(|(g, n)| format!("{g}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }));
            row
        })
        .collect();
    Table {
        id: "partitions",
        title: "Event Hubs partitions",
        headers: &[
            "Hub",
            "Partition",
            "Events",
            "Last sequence",
            "Not yet processed, per consumer group",
        ],
        rows,
    }
}

/// Event Grid subscriptions: due, retrying and outcomes.
fn event_grid_table(
    status: &BrokerStatus,
    stats: &BTreeMap<String, FunctionStats>,
    triggers: &[FunctionTrigger],
) -> Table {
    let rows = status
        .event_grid
        .iter()
        .map(|s| {
            let f = fed(stats, triggers, "eventgrid", &s.topic);
            let k = |c: &str| format!("eg/{}/{}/{c}", s.topic, s.subscriber);
            vec![
                Col::Text(format!("{} → {}", s.topic, s.subscriber)),
                count(k("due"), s.due),
                count(k("retrying"), s.retrying),
                count(k("delivered"), n(f.delivered)),
                count(k("retried"), n(f.retried)),
                count(k("dead-lettered"), n(f.dead_lettered)),
                count(k("rejected"), n(f.set_aside)),
            ]
        })
        .collect();
    Table {
        id: "event-grid",
        title: "Event Grid subscriptions",
        headers: &[
            "Topic → subscriber",
            "Due or in flight",
            "Waiting to retry",
            "Delivered",
            "Retried",
            "Dead-lettered",
            "Rejected",
        ],
        rows,
    }
}

/// Functions: what each did this run.
fn function_table(stats: &BTreeMap<String, FunctionStats>) -> Table {
    let rows = stats
        .iter()
        .map(|(name, s)| {
            let k = |c: &str| format!("fn/{name}/{c}");
            vec![
                Col::Text(name.clone()),
                count(k("delivered"), n(s.delivered)),
                count(k("retried"), n(s.retried)),
                count(k("poisoned"), n(s.poisoned)),
                count(k("dead-lettered"), n(s.dead_lettered)),
                count(k("lost"), n(s.lost_after_retries)),
                count(k("rejected"), n(s.set_aside)),
            ]
        })
        .collect();
    Table {
        id: "functions",
        title: "Functions (this run)",
        headers: &[
            "Function",
            "Delivered",
            "Retried",
            "Poisoned",
            "Dead-lettered",
            "Lost",
            "Rejected",
        ],
        rows,
    }
}

fn render_table(t: &Table, out: &mut String) {
    let _ = write!(
        out,
        r#"<section aria-labelledby="{id}-h"><h2 id="{id}-h">{title}</h2>"#,
        id = t.id,
        title = t.title
    );
    if t.rows.is_empty() {
        out.push_str("<p>None.</p></section>");
        return;
    }
    let _ = write!(
        out,
        r#"<div class="scroll"><table id="{}"><thead><tr>"#,
        t.id
    );
    for (i, h) in t.headers.iter().enumerate() {
        let numeric = matches!(t.rows[0].get(i), Some(Col::Count(..)));
        let _ = write!(
            out,
            r#"<th scope="col"{}>{h}</th>"#,
            if numeric { r#" class="n""# } else { "" }
        );
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            match c {
                Col::Text(s) if i == 0 => {
                    let _ = write!(out, r#"<th scope="row">{}</th>"#, esc(s));
                }
                Col::Text(s) => {
                    let _ = write!(out, "<td>{}</td>", esc(s));
                }
                Col::Count(k, v) => {
                    let _ = write!(out, r#"<td class="n" data-k="{}">{v}</td>"#, esc(k));
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

#[allow(clippy::too_many_arguments)]
fn letters_table(
    console: &Console,
    id: &str,
    title: &str,
    letters: &[DeadLetter],
    total: i64,
    offset: usize,
    param: &str,
    keep: (&str, usize),
    out: &mut String,
) {
    let _ = write!(
        out,
        r#"<section aria-labelledby="{id}-h"><h2 id="{id}-h">{title} <span class="count" data-k="total/{id}">{total}</span></h2>"#
    );
    if letters.is_empty() {
        out.push_str("<p>None.</p></section>");
        return;
    }
    let _ = write!(
        out,
        r#"<div class="scroll"><table id="{id}"><thead><tr><th scope="col">Id</th><th scope="col">From</th><th scope="col">Reason</th><th scope="col" class="n">Attempts</th><th scope="col">When</th><th scope="col">Body (preview)</th><th scope="col">Action</th></tr></thead><tbody>"#
    );
    for d in letters {
        let _ = write!(
            out,
            r#"<tr data-id="{id}"><th scope="row">{id}</th><td>{source}</td><td>{reason}<div class="muted">{desc}</div></td><td class="n">{attempts}</td><td>{when}</td><td><pre class="preview">{body}</pre></td><td><form method="post" action="/console/replay"><input type="hidden" name="id" value="{id}"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" aria-label="Replay {id}">Replay</button></form></td></tr>"#,
            id = esc(&d.id),
            source = esc(&d.source),
            reason = esc(&d.reason),
            desc = esc(&d.description),
            attempts = d.attempts,
            when = when(d.dead_lettered_ms),
            body = esc(&d.body),
            csrf = esc(&console.csrf),
        );
    }
    out.push_str("</tbody></table></div>");
    out.push_str(&pager(
        "/",
        &[(keep.0, keep.1.to_string())],
        param,
        offset,
        letters.len(),
        (offset + letters.len()) < total as usize,
    ));
    out.push_str("</section>");
}

/// `GET /`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let dl = offset_of(&query, "dl");
    let rj = offset_of(&query, "rj");
    let notice = query
        .get("replayed")
        .map(|id| {
            format!(
                r#"<p class="notice" role="status">Replayed {}: it is back on its broker.</p>"#,
                esc(id)
            )
        })
        .or_else(|| {
            query.get("error").map(|e| {
                format!(
                    r#"<p class="error" role="alert">Replay failed: {}</p>"#,
                    esc(e)
                )
            })
        })
        .unwrap_or_default();
    let c = console.clone();
    let built = blocking(move || {
        let mut body = notice;
        body.push_str(r#"<p class="muted">Counters update every second. <span id="live" role="status" aria-live="off"></span></p>"#);
        for t in tables(&c)? {
            render_table(&t, &mut body);
        }
        let dead = c.brokers.dead_letter_page(false, dl, PAGE_ROWS, PREVIEW_BYTES)?;
        letters_table(&c, "dead-letters", "Dead letters", &dead.letters, dead.total, dl, "dl", ("rj", rj), &mut body);
        let rejects = c.brokers.dead_letter_page(true, rj, PAGE_ROWS, PREVIEW_BYTES)?;
        letters_table(&c, "rejects", "Rejected by the functions (set aside with a reason)", &rejects.letters, rejects.total, rj, "rj", ("dl", dl), &mut body);
        Ok(body)
    })
    .await;
    match built {
        Ok(body) => layout(&console, "Brokers", Nav::Brokers, &body),
        Err(r) => r,
    }
}

/// `GET /console/api/counters`: every live count on the Brokers page, by key.
pub(super) async fn counters(State(console): State<Arc<Console>>) -> Response {
    let c = console.clone();
    match blocking(move || {
        let mut map = Map::new();
        for t in tables(&c)? {
            for row in t.rows {
                for col in row {
                    if let Col::Count(k, v) = col {
                        map.insert(k, Value::from(v));
                    }
                }
            }
        }
        let dead = c.brokers.dead_letter_page(false, 0, 0, 0)?.total;
        let rejects = c.brokers.dead_letter_page(true, 0, 0, 0)?.total;
        map.insert("total/dead-letters".into(), Value::from(dead));
        map.insert("total/rejects".into(), Value::from(rejects));
        Ok(Value::Object(map))
    })
    .await
    {
        Ok(v) => json(v),
        Err(r) => r,
    }
}

/// `POST /console/replay` (form: `id`, `csrf`): `socwire dlq replay` for one entry.
pub(super) async fn replay(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if !same_origin_post(&console, &headers, form.get("csrf").map(String::as_str)) {
        return (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token, or a request from another site",
        )
            .into_response();
    }
    let Some(id) = form.get("id").cloned().filter(|id| id.len() <= 64) else {
        return (StatusCode::BAD_REQUEST, "no dead-letter id").into_response();
    };
    let c = console.clone();
    let target = id.clone();
    let result = tokio::task::spawn_blocking(move || c.brokers.replay(&target)).await;
    let q = match result {
        Ok(Ok(())) => {
            tracing::info!(id = %socwire_common::text::for_log(&id, 64), "console: replayed");
            format!("replayed={id}")
        }
        Ok(Err(e)) => format!("error={e}"),
        Err(e) => format!("error={e}"),
    };
    let (k, v) = q.split_once('=').unwrap_or(("error", ""));
    let location = format!(
        "/?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair(k, v)
            .finish()
    );
    (StatusCode::SEE_OTHER, [("location", location)]).into_response()
}
