//! The Incidents page: triaged incidents with severity before and after, the action, the
//! findings with their sources and a link to the HTML report; filtered by verdict and searched
//! by id, number or entity value; newest (highest number) first. Read straight from the local
//! Sentinel store and the ledger (read-only), a page at a time.

use super::{blocking, esc, layout, offset_of, pager, Console, Nav, PAGE_ROWS};
use crate::functions::triage_incident::Decision;
use crate::sentinel::Incident;
use axum::extract::{Query, State};
use axum::response::Response;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The verdicts the filter offers (the decision's `verdict`), and "none" for incidents not
/// triaged yet or with no finding.
const VERDICTS: &[(&str, &str)] = &[
    ("", "Any verdict"),
    ("High", "High"),
    ("Warning", "Warning"),
    ("Information", "Information"),
    ("Benign", "Benign"),
    ("none", "No verdict"),
];

/// One listed incident.
pub(super) struct Listed {
    pub(super) incident: Incident,
    pub(super) decision: Option<Decision>,
}

/// Incidents matching `verdict` and `search`, `PAGE_ROWS + 1` after `offset` (the extra one
/// says there is a next page).
pub(super) fn query(
    console: &Console,
    verdict: &str,
    search: &str,
    offset: usize,
) -> anyhow::Result<Vec<Listed>> {
    let Some(conn) = console.read_only("sentinel.sqlite3")? else {
        return Ok(Vec::new());
    };
    let ledger = console.data_dir.join("ledger.sqlite3");
    let joined = ledger.is_file();
    if joined {
        conn.execute(
            "ATTACH DATABASE ?1 AS l",
            [format!("file:{}?mode=ro", ledger.display())],
        )?;
    }
    // The decision, joined through the ledger's primary key.
    let (join, d) = if joined {
        (
            "LEFT JOIN l.ledger ld ON ld.key = 'triage:decision:v1:' || i.key",
            "ld.detail",
        )
    } else {
        ("", "NULL")
    };
    let search = search.trim().to_lowercase();
    let number: Option<i64> = search.parse().ok();
    let sql = format!(
        "SELECT i.body, {d} FROM incidents i {join}
         WHERE (?1 = '' OR instr(i.key, ?1) > 0
                OR json_extract(i.body, '$.properties.incidentNumber') = ?2
                OR EXISTS (SELECT 1 FROM entities e WHERE e.key = i.key AND instr(lower(e.body), ?1) > 0))
           AND (?3 = '' OR (?3 = 'none' AND json_extract({d}, '$.verdict') IS NULL)
                OR json_extract({d}, '$.verdict') = ?3)
         ORDER BY json_extract(i.body, '$.properties.incidentNumber') DESC
         LIMIT ?4 OFFSET ?5"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params![
            search,
            number,
            verdict,
            (PAGE_ROWS + 1) as i64,
            offset as i64
        ],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (body, decision) = row?;
        let Ok(incident) = serde_json::from_str::<Incident>(&body) else {
            continue;
        };
        out.push(Listed {
            incident,
            decision: decision.and_then(|d| serde_json::from_str(&d).ok()),
        });
    }
    Ok(out)
}

/// The report link: the local report store's path, whatever port wrote it.
fn report_href(url: &str) -> Option<String> {
    url.find("/reports/").map(|at| url[at..].to_string())
}

fn render(list: &[Listed], out: &mut String) {
    out.push_str(r#"<div class="scroll"><table id="incidents"><thead><tr><th scope="col">#</th><th scope="col">Title</th><th scope="col">Severity before → after</th><th scope="col">Status</th><th scope="col">Verdict</th><th scope="col">Action</th><th scope="col">Findings</th><th scope="col">Report</th></tr></thead><tbody>"#);
    for l in list {
        let p = &l.incident.properties;
        let d = l.decision.as_ref();
        let before = d.map_or(p.severity, |d| d.read.severity);
        let after = d.and_then(|d| d.target_severity).unwrap_or(p.severity);
        let severity = if before == after {
            before.to_string()
        } else {
            format!("{before} → {after}")
        };
        let verdict = d.and_then(|d| d.verdict).map_or("none", |v| v.msticpy());
        let action = d.map_or_else(|| "not triaged yet".to_string(), Decision::action);
        let mut findings = String::new();
        match d.map(|d| &d.findings) {
            Some(f) if !f.is_empty() => {
                let _ = write!(
                    findings,
                    "<details><summary>{} finding(s)</summary><ul>",
                    f.len()
                );
                for x in f {
                    let _ = write!(
                        findings,
                        r#"<li><strong>{}</strong> — {} <span class="badge">{}</span> <span class="muted">source: {}</span></li>"#,
                        esc(&x.about),
                        esc(&x.reason),
                        esc(x.severity.msticpy()),
                        esc(&x.source)
                    );
                }
                findings.push_str("</ul></details>");
            }
            _ => findings.push_str(r#"<span class="muted">none</span>"#),
        }
        let report = d
            .and_then(|d| d.report_url.as_deref())
            .and_then(report_href)
            .map(|h| format!(r#"<a href="{}">report</a>"#, esc(&h)))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<tr><td class="n">{num}</td><th scope="row" class="title">{title}<div class="muted id">{id}</div></th><td>{severity}</td><td>{status}</td><td><span class="badge v-{vclass}">{verdict}</span></td><td>{action}</td><td>{findings}</td><td>{report}</td></tr>"#,
            num = p.incident_number.map(|n| n.to_string()).unwrap_or_default(),
            title = esc(&p.title),
            id = esc(&l.incident.name),
            status = esc(&p.status),
            vclass = esc(verdict),
            verdict = esc(verdict),
            action = esc(&action),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// `GET /incidents?verdict=&q=&offset=`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let verdict = q
        .get("verdict")
        .filter(|v| VERDICTS.iter().any(|(k, _)| k == v))
        .cloned()
        .unwrap_or_default();
    let search: String = q
        .get("q")
        .cloned()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let offset = offset_of(&q, "offset");
    let c = console.clone();
    let (v2, s2) = (verdict.clone(), search.clone());
    let listed = blocking(move || query(&c, &v2, &s2, offset)).await;
    let mut list = match listed {
        Ok(l) => l,
        Err(r) => return r,
    };
    let more = list.len() > PAGE_ROWS;
    list.truncate(PAGE_ROWS);
    let mut body = String::from(
        r#"<form class="filters" method="get" action="/incidents" role="search"><label for="verdict">Verdict</label><select id="verdict" name="verdict">"#,
    );
    for (k, label) in VERDICTS {
        let _ = write!(
            body,
            r#"<option value="{k}"{}>{label}</option>"#,
            if *k == verdict { " selected" } else { "" }
        );
    }
    let _ = write!(
        body,
        r#"</select><label for="q">Id, number or entity</label><input id="q" name="q" type="search" value="{}" placeholder="e.g. 203.0.113.66"><button type="submit">Filter</button></form>"#,
        esc(&search)
    );
    if list.is_empty() {
        body.push_str(r#"<p>No incidents match.</p>"#);
    } else {
        render(&list, &mut body);
        body.push_str(&pager(
            "/incidents",
            &[("verdict", verdict), ("q", search)],
            "offset",
            offset,
            list.len(),
            more,
        ));
    }
    layout(&console, "Incidents", Nav::Incidents, &body)
}
