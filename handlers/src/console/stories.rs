//! The Alert stories page: the alert engine's final rows (`AlertSubgraphs_CL` in the local
//! tables) ranked by score with their reasons, campaign rows with their victims; and one
//! story drawn as lanes (`alertgraph::svg`, the drawing `alerts prioritise --svg` exports),
//! whose arrows list their alerts when clicked. Those alerts are read back from the `alerts`
//! Event Hub, where the stream came in (as long as the hub retains them).

use super::{
    blocking, esc, json, layout, offset_of, pager, secure_headers, Console, Nav, PAGE_ROWS,
};
use crate::functions::alert_stream::SUBGRAPH_STREAM;
use alertgraph::svg::{render_story, Story};
use alertgraph::Alert;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// The hub the alert stream reads (function-defs/alert-stream).
pub const ALERT_HUB: &str = "alerts";

/// Alerts listed for one arrow at most.
const MAX_EDGE_ALERTS: usize = 200;

/// One row of the list.
struct Row {
    seq: i64,
    story: Story,
}

/// The ranked rows: highest score first, `PAGE_ROWS + 1` after `offset`. The order uses the
/// index the local tables keep on the score (`rows_subgraph_score`), so a page costs the same
/// at 100,000 rows as at 100.
fn ranked(console: &Console, offset: usize) -> anyhow::Result<Vec<Row>> {
    let Some(conn) = console.read_only("tables.sqlite3")? else {
        return Ok(Vec::new());
    };
    // The stream name is written into the statement, as the partial index's condition says
    // it, and the index is named: the planner would otherwise take the (stream, row_key)
    // index and sort every row.
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, body FROM rows INDEXED BY rows_subgraph_score
         WHERE stream = '{SUBGRAPH_STREAM}'
         ORDER BY json_extract(body, '$.Score') DESC LIMIT ?1 OFFSET ?2"
    ))?;
    let rows = stmt.query_map(
        rusqlite::params![(PAGE_ROWS + 1) as i64, offset as i64],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body) = row?;
        if let Ok(story) = serde_json::from_str(&body) {
            out.push(Row { seq, story });
        }
    }
    Ok(out)
}

/// One stored row by its sequence number.
fn row(console: &Console, seq: i64) -> anyhow::Result<Option<(Story, Value)>> {
    let Some(conn) = console.read_only("tables.sqlite3")? else {
        return Ok(None);
    };
    let body: Option<String> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT body FROM rows WHERE seq = ?1 AND stream = ?2",
        rusqlite::params![seq, SUBGRAPH_STREAM],
        |r| r.get(0),
    ))?;
    Ok(match body {
        Some(b) => {
            let value: Value = serde_json::from_str(&b)?;
            Some((serde_json::from_value(value.clone())?, value))
        }
        None => None,
    })
}

/// A campaign row's victims, from its reason (`campaign from X: N host(s) attacked: a, b`).
fn victims(story: &Story) -> Option<(String, Vec<String>)> {
    story.reasons.iter().find_map(|r| {
        let rest = r.strip_prefix("campaign from ")?;
        let (source, rest) = rest.split_once(": ")?;
        let (_, list) = rest.split_once("attacked: ")?;
        Some((
            source.to_string(),
            list.split(", ").map(str::to_string).collect(),
        ))
    })
}

/// `GET /stories?offset=`.
pub(super) async fn list(
    State(console): State<Arc<Console>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let offset = offset_of(&q, "offset");
    let c = console.clone();
    let mut rows = match blocking(move || ranked(&c, offset)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let more = rows.len() > PAGE_ROWS;
    rows.truncate(PAGE_ROWS);
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str("<p>No alert stories yet: the alert engine writes a row when a story closes (its newest alert leaves the window). <code>socwire up --demo</code> streams a generated day.</p>");
        return layout(&console, "Alert stories", Nav::Stories, &body);
    }
    body.push_str(r#"<div class="scroll"><table id="stories"><thead><tr><th scope="col" class="n">Rank</th><th scope="col" class="n">Score</th><th scope="col" class="n">Alerts</th><th scope="col" class="n">Hosts</th><th scope="col" class="n">Longest path</th><th scope="col">IT→OT</th><th scope="col">Reasons</th><th scope="col">Story</th></tr></thead><tbody>"#);
    for (i, r) in rows.iter().enumerate() {
        let s = &r.story;
        let mut reasons = String::from("<ul class=\"reasons\">");
        for reason in s.reasons.iter().take(6) {
            let _ = write!(reasons, "<li>{}</li>", esc(reason));
        }
        reasons.push_str("</ul>");
        if let Some((source, list)) = victims(s) {
            let _ = write!(
                reasons,
                r#"<div class="victims"><strong>Campaign from {}</strong>, victims:<ul>"#,
                esc(&source)
            );
            for v in &list {
                let _ = write!(reasons, "<li>{}</li>", esc(v));
            }
            reasons.push_str("</ul></div>");
        }
        let _ = write!(
            body,
            r#"<tr><td class="n">{rank}</td><td class="n">{score:.2}</td><td class="n">{alerts}</td><td class="n">{nodes}</td><td class="n">{hops}</td><td>{ot}</td><td>{reasons}</td><td><a href="/stories/{seq}">Open story {rank}</a></td></tr>"#,
            rank = offset + i + 1,
            score = s.score,
            alerts = s.alert_count,
            nodes = s.node_count,
            hops = s.longest_path,
            ot = if s.crosses_it_ot { "yes" } else { "" },
            seq = r.seq,
        );
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&pager("/stories", &[], "offset", offset, rows.len(), more));
    layout(&console, "Alert stories", Nav::Stories, &body)
}

/// `GET /stories/{row}`: one story, its evidence, and the lane drawing.
pub(super) async fn story(State(console): State<Arc<Console>>, Path(seq): Path<i64>) -> Response {
    let c = console.clone();
    let found = match blocking(move || row(&c, seq)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((story, value)) = found else {
        return (StatusCode::NOT_FOUND, "no such story").into_response();
    };
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p><a href="/stories">← All stories</a> · <a href="/console/stories/{seq}/svg" download="story-{seq}.svg">Download SVG</a></p><p>Score {score:.2} · {alerts} alert(s) · {nodes} host(s) · longest path {hops} hop(s){ot} · row <code>{id}</code></p>"#,
        score = story.score,
        alerts = story.alert_count,
        nodes = story.node_count,
        hops = story.longest_path,
        ot = if story.crosses_it_ot {
            " · crosses IT→OT"
        } else {
            ""
        },
        id = esc(&story.subgraph_id),
    );
    body.push_str(r#"<h2>Why it ranks here</h2><ul class="reasons">"#);
    for r in &story.reasons {
        let _ = write!(body, "<li>{}</li>", esc(r));
    }
    body.push_str("</ul>");
    if let Some((source, list)) = victims(&story) {
        let _ = write!(body, "<h2>Campaign from {}: victims</h2><ul>", esc(&source));
        for v in &list {
            let _ = write!(body, "<li>{}</li>", esc(v));
        }
        body.push_str("</ul>");
    }
    if !story.path.is_empty() {
        let _ = write!(
            body,
            r#"<p><strong>Path:</strong> {}</p>"#,
            esc(&story.path.join(" → "))
        );
    }
    body.push_str(r#"<h2 id="graph-h">The story, as it unfolded</h2><p class="muted">Time runs left to right; each host has a lane, grouped by zone and Purdue level where the asset map says. Select an arrow (click, or Tab to it and press Enter) to list its alerts.</p><figure class="graph" aria-labelledby="graph-h">"#);
    body.push_str(&render_story(&story, &console.zones));
    let _ = write!(
        body,
        r#"</figure><section id="edge-alerts" aria-live="polite" data-row="{seq}"><h2>Alerts on the selected arrow</h2><p class="muted">None selected.</p></section>"#
    );
    if let Some(evidence) = value.get("Evidence").and_then(Value::as_array) {
        if !evidence.is_empty() {
            body.push_str(r#"<h2>Compromise evidence</h2><div class="scroll"><table id="evidence"><thead><tr><th scope="col">Time</th><th scope="col">Rule</th><th scope="col">Stage</th><th scope="col">Host</th><th scope="col">Peer</th><th scope="col">Alert</th></tr></thead><tbody>"#);
            for e in evidence {
                let t = |k: &str| esc(e.get(k).and_then(Value::as_str).unwrap_or(""));
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    t("Time"),
                    t("Name"),
                    t("Stage"),
                    t("Host"),
                    t("Peer"),
                    t("AlertId")
                );
            }
            body.push_str("</tbody></table></div>");
        }
    }
    layout(
        &console,
        &format!("Alert story: score {:.2}", story.score),
        Nav::Stories,
        &body,
    )
}

/// `GET /console/stories/{row}/svg`: the same drawing as a file.
pub(super) async fn svg(State(console): State<Arc<Console>>, Path(seq): Path<i64>) -> Response {
    let c = console.clone();
    match blocking(move || row(&c, seq)).await {
        Ok(Some((story, _))) => (
            secure_headers("image/svg+xml"),
            render_story(&story, &console.zones),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such story").into_response(),
        Err(r) => r,
    }
}

/// The alerts of `ids` between `src` and `dst` (either way; host-only alerts when they are
/// equal), read from the alert hub's retained events; also how many events were read.
pub(super) fn alerts_on(
    console: &Console,
    ids: &HashSet<String>,
    src: &str,
    dst: &str,
) -> anyhow::Result<(Vec<Alert>, usize)> {
    let b = &console.brokers;
    let partitions = b.hub(ALERT_HUB).partitions()?.unwrap_or(0);
    let mut found = Vec::new();
    let mut events = 0;
    for p in 0..partitions {
        let mut after = -1;
        loop {
            let batch = b.hub(ALERT_HUB).read("$console", p, Some(after), 500)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.sequence_number;
            events += batch.len();
            for e in &batch {
                // A cheap test first: most events hold none of the row's alerts.
                let text = String::from_utf8_lossy(&e.body);
                if !ids.iter().any(|id| text.contains(id.as_str())) {
                    continue;
                }
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                for alert in Alert::from_body(&value, None).into_iter().flatten() {
                    if !ids.contains(&alert.alert_id) {
                        continue;
                    }
                    let to = alert.dst_ip.as_deref().unwrap_or(&alert.src_ip);
                    let pair = (alert.src_ip.as_str(), to);
                    if pair == (src, dst) || pair == (dst, src) {
                        found.push(alert);
                    }
                }
            }
        }
    }
    found.sort_by_key(|a| a.time_generated);
    Ok((found, events))
}

/// `GET /console/api/stories/{row}/edge?src=&dst=`: the alerts on one arrow.
pub(super) async fn edge_alerts(
    State(console): State<Arc<Console>>,
    Path(seq): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(src), Some(dst)) = (q.get("src").cloned(), q.get("dst").cloned()) else {
        return (StatusCode::BAD_REQUEST, "src and dst are required").into_response();
    };
    let c = console.clone();
    let answer = blocking(move || {
        let Some((_, value)) = row(&c, seq)? else {
            return Ok(None);
        };
        let ids: HashSet<String> = value
            .get("AlertIds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let listed = ids.len();
        let total = value.get("AlertCount").and_then(Value::as_u64).unwrap_or(0);
        let (alerts, events) = alerts_on(&c, &ids, &src, &dst)?;
        let shown: Vec<Value> = alerts
            .iter()
            .take(MAX_EDGE_ALERTS)
            .map(|a| {
                json!({
                    "time": alertgraph::alert::format_time(a.time_generated),
                    "id": a.alert_id,
                    "name": a.alert_name,
                    "severity": format!("{:?}", a.severity),
                    "src": a.src_ip,
                    "dst": a.dst_ip,
                    "port": a.dst_port,
                    "protocol": a.protocol,
                    "tactic": a.tactic,
                })
            })
            .collect();
        Ok(Some(json!({
            "src": src, "dst": dst, "alerts": shown, "found": alerts.len(),
            "eventsRead": events, "rowListsIds": listed, "rowAlerts": total,
        })))
    })
    .await;
    match answer {
        Ok(Some(v)) => json(v),
        Ok(None) => (StatusCode::NOT_FOUND, "no such story").into_response(),
        Err(r) => r,
    }
}
