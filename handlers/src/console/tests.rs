//! Console tests: every page against stores seeded here, through the router as the host
//! mounts it. What the browser sees (scripts running, clicks, live updates) is tested with
//! Chromium in `tests/console_browser.rs`.

use super::*;
use crate::ports::Ledger as _;
use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use socwire_host::brokers::SystemClock;
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    console: Arc<Console>,
    brokers: Arc<Brokers>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let brokers = Arc::new(Brokers::open(dir.path(), Arc::new(SystemClock)).unwrap());
    let stats = Arc::new(Stats::new(true));
    let console = Console::open(dir.path().to_path_buf(), brokers.clone(), stats).unwrap();
    Fixture {
        _dir: dir,
        console,
        brokers,
    }
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, HeaderMap, String) {
    let r = router(f.console.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn post(f: &Fixture, uri: &str, form: &str, origin: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:7071");
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let r = router(f.console.clone())
        .oneshot(req.body(Body::from(form.to_string())).unwrap())
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status(), location)
}

/// A decision as triage records it, for incident `n` of the demo set.
fn decision(n: usize, verdict: &str, before: &str, after: Option<&str>) -> String {
    let id = crate::demo::incident_id(n);
    json!({
        "schema": "socwire.triage-decision.v1", "incidentId": id.arm_id(), "incidentNumber": n,
        "read": {"severity": before, "status": "New"}, "verdict": verdict,
        "significant": after.is_some(), "targetSeverity": after, "targetStatus": null,
        "reasons": ["known bad"],
        "findings": [{"about": "ipv4 203.0.113.66", "source": "OfflineTI <img src=x onerror=alert(2)>", "severity": verdict, "reason": "listed as C2"}],
        "commentId": "c", "reportName": "r.html",
        "reportUrl": "http://127.0.0.1:9999/reports/demo/r.html", "eventId": "e",
        "decidedAt": "2026-12-01T00:00:00Z"
    })
    .to_string()
}

async fn seed_incidents(f: &Fixture) {
    let store =
        crate::local::SqliteIncidentStore::open(&f.console.data_dir.join("sentinel.sqlite3"))
            .unwrap();
    crate::demo::seed(&store, 5).unwrap();
    let ledger =
        crate::local::SqliteLedger::open(&f.console.data_dir.join("ledger.sqlite3")).unwrap();
    let key = |n| crate::functions::triage_incident::decision_key(&crate::demo::incident_id(n));
    ledger
        .record(&key(1), &decision(1, "High", "Medium", Some("High")))
        .await
        .unwrap();
    ledger
        .record(&key(2), &decision(2, "Information", "Low", None))
        .await
        .unwrap();
}

#[tokio::test]
async fn incidents_show_triage_and_escape_hostile_text() {
    let f = fixture();
    seed_incidents(&f).await;
    let (status, headers, html) = get(&f, "/incidents").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    // The demo's phishing incident carries markup in its title: shown as text.
    assert!(html.contains("User clicked phishing link &lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<img"), "no markup from the stores");
    assert!(html.contains("Medium → High"));
    assert!(html.contains(r#"href="/reports/demo/r.html""#));
    assert!(html.contains("OfflineTI &lt;img src=x onerror=alert(2)&gt;"));
    assert_eq!(html.matches("<tr><td class=\"n\">").count(), 5);

    let (_, _, high) = get(&f, "/incidents?verdict=High").await;
    assert_eq!(high.matches("<tr><td class=\"n\">").count(), 1);
    assert!(high.contains("Beaconing to a known C2 server"));
    let (_, _, none) = get(&f, "/incidents?verdict=none").await;
    assert_eq!(none.matches("<tr><td class=\"n\">").count(), 3);
    // Search by an entity value and by number.
    let (_, _, found) = get(&f, "/incidents?q=198.51.100.23").await;
    assert_eq!(found.matches("<tr><td class=\"n\">").count(), 1);
    assert!(found.contains("Multiple failed sign-ins"));
    let (_, _, by_number) = get(&f, "/incidents?q=3").await;
    assert!(by_number.contains("Port scan against DMZ"));
}

#[tokio::test]
async fn brokers_list_counts_and_dead_letters_and_replay_needs_the_token() {
    let f = fixture();
    f.brokers.queue("triage-requests").put(b"x", 0).unwrap();
    f.brokers
        .queue("work")
        .put(b"<script>alert(3)</script>", 0)
        .unwrap();
    let m = f.brokers.queue("work").receive(1, 1_000).unwrap().remove(0);
    f.brokers
        .queue("work")
        .poison(&m.id, &m.pop_receipt, "handler said <b>no</b>")
        .unwrap();
    let (status, _, html) = get(&f, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"data-k="q/triage-requests/visible">1<"#));
    assert!(html.contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    assert!(html.contains("handler said &lt;b&gt;no&lt;/b&gt;"));
    assert!(!html.contains("<script>alert"));
    let (_, _, counters) = get(&f, "/console/api/counters").await;
    let counters: serde_json::Value = serde_json::from_str(&counters).unwrap();
    assert_eq!(counters["q/triage-requests/visible"], 1);
    assert_eq!(counters["total/dead-letters"], 1);

    let id = f
        .brokers
        .dead_letter_page(false, 0, 10, 10)
        .unwrap()
        .letters[0]
        .id
        .clone();
    let form = |csrf: &str| format!("id={}&csrf={csrf}", id.replace(':', "%3A"));
    let token = f.console.csrf_token().to_string();
    assert_eq!(
        post(&f, "/console/replay", &form("wrong"), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(
            &f,
            "/console/replay",
            &form(&token),
            Some("http://evil.example")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.brokers.dead_letter_page(false, 0, 10, 10).unwrap().total,
        1
    );
    let (status, location) = post(
        &f,
        "/console/replay",
        &form(&token),
        Some("http://127.0.0.1:7071"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/?replayed={}", id.replace(':', "%3A")));
    assert_eq!(
        f.brokers.dead_letter_page(false, 0, 10, 10).unwrap().total,
        0
    );
    let back = f.brokers.queue("work").receive(1, 1_000).unwrap();
    assert_eq!(back[0].body, b"<script>alert(3)</script>");
}

#[tokio::test]
async fn dead_letters_come_in_pages() {
    let f = fixture();
    for i in 0..(PAGE_ROWS + 3) {
        f.brokers
            .queue("p")
            .put(format!("m{i}").as_bytes(), 0)
            .unwrap();
    }
    for m in f.brokers.queue("p").receive(100, 1_000).unwrap() {
        f.brokers
            .queue("p")
            .poison(&m.id, &m.pop_receipt, "bad")
            .unwrap();
    }
    let (_, _, first) = get(&f, "/").await;
    assert_eq!(first.matches("name=\"id\"").count(), PAGE_ROWS);
    assert!(first.contains("dl=50"), "a link to the next page");
    let (_, _, second) = get(&f, "/?dl=50").await;
    assert_eq!(second.matches("name=\"id\"").count(), 3);
}

/// Stores `n` subgraph rows with descending scores through the local tables, and sends the
/// alerts of the best row's edges to the alert hub.
async fn seed_stories(f: &Fixture) {
    use crate::ports::LogsIngestion as _;
    let tables =
        crate::local::SqliteTables::open(&f.console.data_dir.join("tables.sqlite3")).unwrap();
    let rows: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            json!({
                "TimeGenerated": "2026-12-01T00:00:00Z", "RowKey": format!("k{i}"),
                "SubgraphId": format!("s{i}"), "Rank": 1, "Score": ([2.0, 9.0, 5.0][i]),
                "AlertCount": 3, "NodeCount": 2, "EdgeCount": 1, "LongestPath": 1,
                "CrossesItOt": i == 1, "Path": [],
                "Nodes": [{"Ip": "10.0.0.1", "Domain": "IT"}, {"Ip": "192.168.10.100", "Domain": "OT"}],
                "Edges": [{"Src": "10.0.0.1", "Dst": "192.168.10.100", "FirstSeen": "2026-12-01T00:00:00Z", "Alerts": 2, "Protocols": ["S7"], "Tactics": []},
                          {"Src": "10.0.0.1", "Dst": "10.0.0.1", "FirstSeen": "2026-12-01T00:05:00Z", "Alerts": 1, "Protocols": [], "Tactics": ["Execution"]}],
                "AlertIds": [format!("a{i}1"), format!("a{i}2"), format!("a{i}3")],
                "Reasons": [format!("reason {i} <script>x</script>"), "campaign from 10.0.0.9: 2 host(s) attacked: 10.0.0.1 (exploited), 10.0.0.2"],
                "Evidence": []
            })
        })
        .collect();
    tables
        .upload(crate::functions::alert_stream::SUBGRAPH_STREAM, &rows)
        .await
        .unwrap();
    f.brokers.hub(stories::ALERT_HUB).ensure(2).unwrap();
    let alert = |id: &str, src: &str, dst: Option<&str>, name: &str| {
        json!({"TimeGenerated": "2026-12-01T00:00:00Z", "AlertId": id, "AlertName": name,
               "Severity": "High", "Domain": "OT", "SrcIp": src, "DstIp": dst})
    };
    let body = json!([
        alert(
            "a11",
            "10.0.0.1",
            Some("192.168.10.100"),
            "S7 program <download>"
        ),
        alert("a12", "192.168.10.100", Some("10.0.0.1"), "S7 response"),
        alert("a13", "10.0.0.1", None, "Suspicious PowerShell"),
        alert("zz", "10.0.0.1", Some("192.168.10.100"), "not in the row"),
    ]);
    f.brokers
        .hub(stories::ALERT_HUB)
        .send(
            Some("site"),
            body.to_string().as_bytes(),
            Default::default(),
        )
        .unwrap();
}

#[tokio::test]
async fn stories_rank_by_score_draw_lanes_and_list_an_edge_s_alerts() {
    let f = fixture();
    seed_stories(&f).await;
    let (_, _, list) = get(&f, "/stories").await;
    let at = |s: &str| list.find(s).unwrap_or(usize::MAX);
    assert!(
        at("9.00") < at("5.00") && at("5.00") < at("2.00"),
        "by score"
    );
    assert!(list.contains("reason 1 &lt;script&gt;x&lt;/script&gt;"));
    assert!(list.contains("Campaign from 10.0.0.9"));
    assert!(list.contains("<li>10.0.0.1 (exploited)</li>"));
    // The best row is the second stored (seq 2).
    assert!(list.contains(r#"<a href="/stories/2">Open story 1</a>"#));
    let (status, _, story) = get(&f, "/stories/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(story.matches(r#"class="edge"#).count(), 2);
    assert!(story.contains(r#"data-src="10.0.0.1" data-dst="192.168.10.100""#));
    let (_, headers, svg) = get(&f, "/console/stories/2/svg").await;
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(svg.starts_with("<svg"));

    let (_, _, edge) = get(
        &f,
        "/console/api/stories/2/edge?src=10.0.0.1&dst=192.168.10.100",
    )
    .await;
    let edge: serde_json::Value = serde_json::from_str(&edge).unwrap();
    let names: Vec<&str> = edge["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["S7 program <download>", "S7 response"]);
    let (_, _, own) = get(&f, "/console/api/stories/2/edge?src=10.0.0.1&dst=10.0.0.1").await;
    assert!(own.contains("Suspicious PowerShell") && !own.contains("S7"));
    assert_eq!(get(&f, "/stories/99").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn empty_stores_render_and_nothing_loads_from_elsewhere() {
    let f = fixture();
    for page in ["/", "/incidents", "/stories", "/gpu"] {
        let (status, _, html) = get(&f, page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            html.contains(r##"<a class="skip" href="#main">"##),
            "{page}"
        );
        assert!(html.contains(r#"aria-current="page""#), "{page}");
        for bad in ["https://", "http://", "//cdn", "@import"] {
            assert!(!html.contains(bad), "{page} names {bad}");
        }
    }
    for (asset, kind) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let (status, headers, text) = get(&f, &format!("/console/assets/{asset}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        // Only the SVG namespace name, which loads nothing.
        assert!(
            !text
                .replace("http://www.w3.org/2000/svg", "")
                .contains("http"),
            "{asset}"
        );
        assert!(
            !text.contains("innerHTML"),
            "{asset} places text, never markup"
        );
    }
    assert_eq!(
        get(&f, "/console/assets/x.js").await.0,
        StatusCode::NOT_FOUND
    );
}
