//! The handler service driven in-process (axum `oneshot`), with the real local adapters in a
//! temporary directory: routing, bad input, panics, and exactly-once triage under redelivery.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use socwire::context::Context;
use socwire::local::{FileReportStore, OfflineThreatIntel, SqliteIncidentStore, SqliteLedger};
use socwire::ports::{IncidentStore, PortResult, ThreatIntel, TiFinding};
use socwire::sentinel::{Entity, Incident, IncidentId, IncidentProperties, Indicator, Severity};
use std::sync::Arc;
use tower::ServiceExt;

const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/soc-rg/providers/Microsoft.OperationalInsights/workspaces/soc-ws/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteIncidentStore>,
    ledger: Arc<SqliteLedger>,
    ctx: Arc<Context>,
}

fn fixture_with_ti(ti: Arc<dyn ThreatIntel>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap());
    let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite3")).unwrap());
    let tables =
        Arc::new(socwire::local::SqliteTables::open(&dir.path().join("tables.sqlite3")).unwrap());
    let ctx = Arc::new(Context {
        incidents: store.clone(),
        threat_intel: ti,
        ledger: ledger.clone(),
        reports: Arc::new(FileReportStore::new(
            dir.path().join("reports"),
            "http://127.0.0.1:7071/reports",
        )),
        state: tables.clone(),
        logs: tables,
        alert_engine: Arc::default(),
        ml: Arc::new(
            socwire::local::LocalWorkspace::open(
                dir.path(),
                socwire::local::LocalMlOptions {
                    provision_ms: 0,
                    max_nodes_quota: 8,
                    runner: None,
                },
            )
            .unwrap(),
        ),
        commands: Arc::new(
            socwire::local::LocalCommandBus::open(dir.path(), "ml-commands").unwrap(),
        ),
        assets: Arc::new(socwire::azure::AllowListedFetcher::new(vec![], vec![])),
        settings: Arc::new(socwire::settings::Settings::from_lookup(|_| None).unwrap()),
        adapters: vec![],
    });
    Fixture {
        _dir: dir,
        store,
        ledger,
        ctx,
    }
}

fn fixture() -> Fixture {
    fixture_with_ti(Arc::new(
        OfflineThreatIntel::from_json(socwire::local::threat_intel_builtin()).unwrap(),
    ))
}

fn seed(
    store: &SqliteIncidentStore,
    severity: Severity,
    entities: &[(&str, &str, &str)],
) -> IncidentId {
    let id = IncidentId::parse(ID).unwrap();
    let incident = Incident {
        id: ID.into(),
        name: id.name().into(),
        etag: None,
        properties: IncidentProperties {
            title: "Beaconing <b>".into(),
            severity,
            status: "New".into(),
            description: None,
            incident_number: Some(7),
            other: Default::default(),
        },
    };
    let entities: Vec<Entity> = entities
        .iter()
        .map(|(k, f, v)| Entity {
            kind: k.to_string(),
            properties: [(f.to_string(), json!(v))].into_iter().collect(),
        })
        .collect();
    store.seed(&incident, &entities).unwrap()
}

async fn post(ctx: &Arc<Context>, function: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let app = socwire::serve::app(ctx.clone(), 64 * 1024);
    let resp = app
        .oneshot(
            Request::post(format!("/{function}"))
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn queue_request(message: &str, dequeue_count: u32) -> String {
    json!({
        "Data": { "request": serde_json::to_string(message).unwrap() },
        "Metadata": { "DequeueCount": dequeue_count.to_string(), "Id": "\"m-1\"", "sys": { "MethodName": "triage-incident" } }
    })
    .to_string()
}

#[tokio::test]
async fn readiness_answers_get_root() {
    let f = fixture();
    let app = socwire::serve::app(f.ctx.clone(), 1024);
    let resp = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_function_is_a_clear_404() {
    let f = fixture();
    let (status, body) = post(&f.ctx, "no-such-function", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("triage-incident"),
        "lists what it serves: {body}"
    );
}

#[tokio::test]
async fn malformed_envelope_invalid_utf8_and_oversized_bodies_are_rejected() {
    let f = fixture();
    let (status, body) = post(&f.ctx, "triage-incident", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("envelope"));
    let (status, body) = post(&f.ctx, "triage-incident", vec![0xff, 0xfe, b'{']).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("UTF-8"));
    let (status, _) = post(&f.ctx, "triage-incident", vec![b' '; 70 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_bad_input() {
    let f = fixture();
    let wrong_type = json!({"Data": {"request": "\"x\""}, "Metadata": {"DequeueCount": "\"lots\"", "Id": "\"m\""}}).to_string();
    let (status, body) = post(&f.ctx, "triage-incident", wrong_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(
        &f.ctx,
        "triage-incident",
        queue_request("{\"source\":\"x\"}", 1),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("incidentId"),
        "{body}"
    );
    let event = json!({"Data": {"event": {"id": "e1", "subject": "not-an-incident", "eventType": "x", "eventTime": "2026-11-22T10:00:00Z", "data": {}}}, "Metadata": {}});
    let (status, body) = post(&f.ctx, "incident-created", event.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("names no incident"),
        "{body}"
    );
}

#[tokio::test]
async fn incident_created_queues_one_triage_request() {
    let f = fixture();
    let fixture_path = format!(
        "{}/tests/fixtures/eventgrid.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (status, body) = post(
        &f.ctx,
        "incident-created",
        std::fs::read_to_string(fixture_path).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = body["Outputs"]["triage"].as_array().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]["incidentId"].as_str().unwrap().to_lowercase(),
        ID.to_lowercase()
    );
}

#[tokio::test]
async fn triage_raises_severity_and_comments_exactly_once_under_redelivery() {
    let f = fixture();
    let id = seed(
        &f.store,
        Severity::Medium,
        &[
            ("DnsResolution", "domainName", "c2.evil.example"),
            ("Ip", "address", "10.0.0.5"),
        ],
    );
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["Outputs"]["events"][0]["eventType"],
        "socwire.IncidentTriaged"
    );
    let incident = f.store.get(&id).await.unwrap();
    assert_eq!(incident.properties.severity, Severity::High);
    let comments = f.store.comments(&id).unwrap();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].message.contains("c2.evil.example"));
    // Redelivery, and a second request in our JSON shape: nothing more happens.
    for message in [
        ID.to_string(),
        json!({"incidentId": ID, "requestId": "r", "source": "x"}).to_string(),
    ] {
        let (status, body) = post(&f.ctx, "triage-incident", queue_request(&message, 2)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body["Outputs"].as_object().unwrap().is_empty(),
            "no second event: {body}"
        );
    }
    assert_eq!(f.store.comments(&id).unwrap().len(), 1);
    assert_eq!(f.ledger.count("triage:").unwrap(), 1);
}

#[tokio::test]
async fn unremarkable_incident_is_left_alone_but_recorded() {
    let f = fixture();
    let id = seed(&f.store, Severity::Medium, &[("Ip", "address", "10.1.2.3")]);
    let (status, _) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.store.get(&id).await.unwrap().properties.severity,
        Severity::Medium
    );
    assert!(f.store.comments(&id).unwrap().is_empty());
    assert_eq!(f.ledger.count("triage:").unwrap(), 1);
}

#[tokio::test]
async fn missing_incident_fails_so_the_host_retries_then_poisons() {
    let f = fixture();
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].as_str().unwrap().contains("not found"));
}

struct PanickingTi;

#[async_trait]
impl ThreatIntel for PanickingTi {
    async fn lookup(&self, _: &Indicator) -> PortResult<Vec<TiFinding>> {
        panic!("provider bug");
    }
}

#[tokio::test]
async fn a_panic_fails_one_invocation_and_the_server_keeps_serving() {
    let f = fixture_with_ti(Arc::new(PanickingTi));
    seed(
        &f.store,
        Severity::Low,
        &[("Ip", "address", "203.0.113.66")],
    );
    let app = socwire::serve::app(f.ctx.clone(), 64 * 1024);
    let req = || {
        Request::post("/triage-incident")
            .body(Body::from(queue_request(ID, 1)))
            .unwrap()
    };
    let first = app.clone().oneshot(req()).await.unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = axum::body::to_bytes(first.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("panicked"));
    let again = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn webhook_accepts_arm_id_and_rejects_garbage_with_400() {
    let f = fixture();
    let http = |body: &str| {
        json!({"Data": {"req": {"Url": "http://localhost/api/playbook/triage", "Method": "POST", "Body": body}}, "Metadata": {}}).to_string()
    };
    let (status, body) = post(
        &f.ctx,
        "playbook-webhook",
        http(&json!({"incidentArmId": ID}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Outputs"]["res"]["statusCode"], 202);
    assert_eq!(body["Outputs"]["triage"].as_array().unwrap().len(), 1);
    let (status, body) = post(
        &f.ctx,
        "playbook-webhook",
        http("{\"incidentArmId\": \"'; drop table\"}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Outputs"]["res"]["statusCode"], 400);
    assert!(body["Outputs"].get("triage").is_none());
}
