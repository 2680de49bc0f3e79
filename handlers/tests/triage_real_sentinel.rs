//! Triage through the handler against entities in the SecurityInsights REST shapes (the
//! specification's examples), with internet providers on a local mock: what reaches the
//! providers, what is found in free text, and what the report and comment say.

mod support;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use socwire::context::Context;
use socwire::local::{OfflineThreatIntel, SqliteIncidentStore};
use socwire::ports::{IncidentStore, ThreatIntel};
use socwire::providers::{CacheLimits, Provider, ProviderChain, Quota, Secret, VirusTotal};
use socwire::sentinel::{Entity, Incident, IncidentId, IncidentProperties, Severity};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const ID: &str = "/subscriptions/d0cfe6b2-9ac0-4464-9919-dccaee2e48c0/resourceGroups/myRg/providers/Microsoft.OperationalInsights/workspaces/myWorkspace/providers/Microsoft.SecurityInsights/Incidents/afbd324f-6c48-459c-8710-8d1e1cd03812";

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteIncidentStore>,
    ctx: Arc<Context>,
}

fn fixture(ti: Arc<dyn ThreatIntel>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap());
    let ctx = Arc::new(Context {
        incidents: store.clone(),
        threat_intel: ti,
        ..support::context::local(dir.path())
    });
    Fixture { dir, store, ctx }
}

fn offline(extra: Value) -> Arc<OfflineThreatIntel> {
    let mut list: Vec<Value> =
        serde_json::from_str(socwire::local::threat_intel_builtin()).unwrap();
    list.extend(extra.as_array().unwrap().iter().cloned());
    Arc::new(OfflineThreatIntel::from_json(&Value::Array(list).to_string()).unwrap())
}

fn rest_entities(name: &str) -> Vec<Entity> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(v["entities"].clone()).unwrap()
}

fn seed(
    f: &Fixture,
    severity: Severity,
    description: Option<String>,
    entities: &[Entity],
) -> IncidentId {
    let id = IncidentId::parse(ID).unwrap();
    let incident = Incident {
        id: ID.into(),
        name: id.name().into(),
        etag: None,
        properties: IncidentProperties {
            title: "REST shapes".into(),
            severity,
            status: "Active".into(),
            description,
            incident_number: Some(22),
            other: Default::default(),
        },
    };
    f.store.seed(&incident, entities).unwrap()
}

async fn triage(f: &Fixture) -> Value {
    let app = socwire::serve::app(f.ctx.clone(), 4 * 1024 * 1024);
    let body = json!({"Data": {"request": serde_json::to_string(ID).unwrap()},
        "Metadata": {"DequeueCount": "1", "Id": "\"m-1\""}})
    .to_string();
    let resp = app
        .oneshot(
            Request::post("/triage-incident")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body["Outputs"]["events"][0]["data"].clone()
}

fn report(f: &Fixture, event: &Value) -> String {
    let url = event["reportUrl"].as_str().expect("a report was written");
    let name = url.rsplit("/reports/").next().unwrap();
    std::fs::read_to_string(f.dir.path().join("reports").join(name)).unwrap()
}

#[tokio::test]
async fn a_feed_listed_submission_mail_sender_ip_raises_the_incident() {
    // The example SubmissionMail's `senderIp` (1.4.35.34), on the feed.
    let ti = offline(
        json!([{"kind": "ipv4", "value": "1.4.35.34", "severity": "High", "source": "feed", "details": "phishing sender"}]),
    );
    let f = fixture(ti);
    let entities = rest_entities("sentinel-entities.json");
    let id = seed(&f, Severity::Medium, None, &entities);
    let event = triage(&f).await;
    let incident = f.store.get(&id).await.unwrap();
    assert_eq!(incident.properties.severity, Severity::High, "{event}");
    assert_eq!(incident.properties.status, "New");
    let comments = f.store.comments(&id).unwrap();
    assert!(
        comments[0].message.contains("1.4.35.34"),
        "{}",
        comments[0].message
    );
    // The examples' broken links are notes, not failures.
    assert!(
        event["reasons"]
            .to_string()
            .contains("not among the incident's entities"),
        "{event}"
    );
}

#[tokio::test]
async fn linked_entities_show_as_relations_and_cycles_as_notes() {
    let ti = offline(
        json!([{"kind": "filehash", "value": "e923636f1093c414aab39f846e9d7a372beefa7b628b28179197e539c56aa0f0", "severity": "High", "source": "feed", "details": "known dropper"}, {"kind": "url", "value": "http://185.220.101.4/a.ps1", "severity": "High", "source": "feed", "details": "stager"}]),
    );
    let f = fixture(ti);
    seed(
        &f,
        Severity::Low,
        None,
        &rest_entities("sentinel-entities-linked.json"),
    );
    let event = triage(&f).await;
    let html = report(&f, &event);
    assert!(
        html.contains("process cmd.exe ran from C:\\Windows\\System32\\cmd.exe (SHA256 E923636F1093C414AAB39F846E9D7A372BEEFA7B628B28179197E539C56AA0F0) on host vm1 as administrator, started by powershell.exe"),
        "{html}"
    );
    assert!(event["reasons"].to_string().contains("cycle"), "{event}");
    // The stager URL is only in the second process's command line, defanged or not: found,
    // looked up, marked as from text, and (a URL) acted on by the notebook's rule.
    assert!(
        html.contains("from text: command line of process powershell.exe"),
        "{html}"
    );
    assert_eq!(event["newSeverity"], "High", "{event}");
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

async fn vt(State(s): State<Arc<Seen>>, Path((kind, id)): Path<(String, String)>) -> Json<Value> {
    s.0.lock().unwrap().push(format!("{kind}/{id}"));
    Json(
        json!({"data": {"attributes": {"last_analysis_stats": {"harmless": 70, "malicious": 0, "suspicious": 0, "undetected": 5}}}}),
    )
}

#[tokio::test]
async fn only_public_observables_leave_and_the_report_says_what_did_not() {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/api/v3/{kind}/{id}", get(vt))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let providers: Vec<(Arc<dyn Provider>, Quota)> = vec![(
        Arc::new(VirusTotal::new(&base, &Secret("k".into()), Duration::from_secs(2)).unwrap()),
        Quota::default(),
    )];
    let chain = ProviderChain::new(
        offline(json!([])),
        providers,
        Duration::from_secs(2),
        CacheLimits {
            ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(60),
            entries: 100,
        },
    );
    let f = fixture(Arc::new(chain));
    let e = |kind: &str, props: Value| Entity::new(kind, props);
    seed(
        &f,
        Severity::Medium,
        Some("Also seen: 10.9.8.7, hxxp://intranet/login and 8.8.4[.]4.".into()),
        &[
            e("Ip", json!({"address": "10.1.2.3"})),
            e("Ip", json!({"address": "fe80::1%eth0"})),
            e("Ip", json!({"address": "0x7f.0.0.1"})),
            e("Url", json!({"url": "http://192.168.1.10/admin"})),
            e("DnsResolution", json!({"domainName": "fin-ws-042.corp"})),
            e("Ip", json!({"address": "8.8.8.8"})),
        ],
    );
    let event = triage(&f).await;
    let asked = seen.0.lock().unwrap().clone();
    let mut want = vec![
        "ip_addresses/8.8.8.8".to_string(),
        "ip_addresses/8.8.4.4".to_string(),
    ];
    want.sort();
    let mut got = asked.clone();
    got.sort();
    assert_eq!(got, want, "only public observables reach the provider");
    // Nothing rated: no report under the notebook's rule; the decision still names what was
    // not sent and the refused octal form.
    let reasons = event["reasons"].to_string();
    assert!(
        reasons.contains("0x7f.0.0.1") && reasons.contains("127.0.0.1"),
        "{reasons}"
    );
    assert_eq!(event["newSeverity"], Value::Null, "{event}");
}

#[tokio::test]
async fn hostile_descriptions_stay_within_their_bounds() {
    let f = fixture(offline(json!([])));
    // 1 MiB of text holding about 100,000 distinct candidate addresses.
    let mut text = String::new();
    let mut n = 0u32;
    while text.len() < 1 << 20 {
        text.push_str(&format!(
            "{}.{}.{}.9 ",
            11 + n / 65536 % 200,
            n / 256 % 256,
            n % 256
        ));
        n += 1;
    }
    seed(
        &f,
        Severity::Medium,
        Some(text),
        &[Entity::new("Ip", json!({"address": "8.8.8.8"}))],
    );
    let event = triage(&f).await;
    let reasons = event["reasons"].to_string();
    assert!(reasons.contains("only the first 64 KiB read"), "{reasons}");
    assert!(
        reasons.contains("more indicator(s) in free text not looked up"),
        "{reasons}"
    );
}
