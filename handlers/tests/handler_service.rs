//! The handler service driven in-process (axum `oneshot`), with the real local adapters in a
//! temporary directory: routing, bad input, panics, and exactly-once triage under redelivery.

mod support;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use socwire::context::Context;
use socwire::local::{OfflineThreatIntel, SqliteIncidentStore, SqliteLedger};
use socwire::ports::{IncidentStore, Ledger, PortError, PortResult, ThreatIntel, TiAnswer};
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
    fixture_with(dir, store.clone(), store, ti)
}

fn fixture_with(
    dir: tempfile::TempDir,
    store: Arc<SqliteIncidentStore>,
    incidents: Arc<dyn IncidentStore>,
    ti: Arc<dyn ThreatIntel>,
) -> Fixture {
    let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite3")).unwrap());
    let ctx = Arc::new(Context {
        incidents,
        threat_intel: ti,
        ledger: ledger.clone(),
        ..support::context::local(dir.path())
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
        .map(|(k, f, v)| {
            Entity::new(
                k,
                Value::Object([(f.to_string(), json!(v))].into_iter().collect()),
            )
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

/// The reason on an acknowledged answer's `rejects` output: inputs that can never succeed
/// are answered 200 (the real host reads only success or failure) and set aside.
fn set_aside_reason(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::OK, "{body}");
    let rejects = body["Outputs"]["rejects"]
        .as_array()
        .expect("a rejects output");
    assert_eq!(rejects.len(), 1, "{body}");
    assert!(
        body["Outputs"].as_object().unwrap().len() == 1,
        "no other output: {body}"
    );
    rejects[0]["reason"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_set_aside_with_the_reason() {
    let f = fixture();
    let wrong_type = json!({"Data": {"request": "\"x\""}, "Metadata": {"DequeueCount": "\"lots\"", "Id": "\"m\""}}).to_string();
    let (status, body) = post(&f.ctx, "triage-incident", wrong_type).await;
    let reason = set_aside_reason(status, &body);
    assert!(reason.contains("expected u32"), "{reason}");
    let (status, body) = post(
        &f.ctx,
        "triage-incident",
        queue_request("{\"source\":\"x\"}", 1),
    )
    .await;
    assert!(
        set_aside_reason(status, &body).contains("incidentId"),
        "{body}"
    );
    assert_eq!(body["Outputs"]["rejects"][0]["function"], "triage-incident");
    let event = json!({"Data": {"event": {"id": "e1", "subject": "not-an-incident", "eventType": "x", "eventTime": "2026-11-22T10:00:00Z", "data": {}}}, "Metadata": {}});
    let (status, body) = post(&f.ctx, "incident-created", event.to_string()).await;
    assert!(
        set_aside_reason(status, &body).contains("names no incident"),
        "{body}"
    );
    assert_eq!(
        body["Outputs"]["rejects"][0]["key"], "e1",
        "the event id is its key"
    );
    // Malformed and dot-segment ARM ids are set aside too, and the function keeps serving.
    for bad in [
        ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", ".."),
        format!("{ID}/../../comments/x"),
        ID.replace("soc-ws", "soc%2Fws"),
        "/subscriptions/x".to_string(),
    ] {
        let (status, body) = post(&f.ctx, "triage-incident", queue_request(&bad, 1)).await;
        assert!(
            set_aside_reason(status, &body).contains("incident"),
            "{body}"
        );
    }
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
            ("Ip", "address", "203.0.113.66"),
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
    assert!(comments[0].message.contains("203.0.113.66"));
    let first_event = body["Outputs"]["events"][0].clone();
    // Redelivery, and a second request in our JSON shape: nothing more happens in Sentinel;
    // the event goes out again with the same id and time (a consumer sees one event).
    for message in [
        ID.to_string(),
        json!({"incidentId": ID, "requestId": "r", "source": "x"}).to_string(),
    ] {
        let (status, body) = post(&f.ctx, "triage-incident", queue_request(&message, 2)).await;
        assert_eq!(status, StatusCode::OK);
        let again = &body["Outputs"]["events"][0];
        assert_eq!(
            (&again["id"], &again["eventTime"]),
            (&first_event["id"], &first_event["eventTime"]),
            "{body}"
        );
    }
    assert_eq!(f.store.comments(&id).unwrap().len(), 1);
    assert_eq!(f.ledger.count("triage:v1:").unwrap(), 1);
    assert_eq!(f.store.get(&id).await.unwrap().properties.status, "New");
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
    assert_eq!(f.ledger.count("triage:v1:").unwrap(), 1);
    assert_eq!(f.ledger.count("triage:decision:v1:").unwrap(), 1);
}

/// The local Sentinel with faults injected: comment writes that fail (as a 429 would), and an
/// analyst who edits the incident just before our update lands.
struct Faulty {
    inner: Arc<SqliteIncidentStore>,
    failing_comments: std::sync::atomic::AtomicU32,
    analyst_sets: std::sync::Mutex<Option<Severity>>,
}

#[async_trait]
impl IncidentStore for Faulty {
    async fn get(&self, id: &IncidentId) -> PortResult<Incident> {
        self.inner.get(id).await
    }
    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>> {
        self.inner.entities(id).await
    }
    async fn alerts(&self, id: &IncidentId) -> PortResult<Vec<Value>> {
        self.inner.alerts(id).await
    }
    async fn update(&self, id: &IncidentId, incident: &Incident) -> PortResult<()> {
        if let Some(severity) = self.analyst_sets.lock().unwrap().take() {
            self.inner
                .analyst_edit(id, |p| p.severity = severity)
                .unwrap();
        }
        self.inner.update(id, incident).await
    }
    async fn put_comment(
        &self,
        id: &IncidentId,
        comment_id: &str,
        message: &str,
    ) -> PortResult<()> {
        use std::sync::atomic::Ordering;
        if self
            .failing_comments
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::Transient(
                "Sentinel PUT comment: HTTP 429".into(),
            ));
        }
        self.inner.put_comment(id, comment_id, message).await
    }
    async fn list_modified_since(
        &self,
        ws: &socwire::sentinel::WorkspaceRef,
        since: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> PortResult<Vec<Incident>> {
        self.inner.list_modified_since(ws, since, max).await
    }
}

fn faulty_fixture(failing_comments: u32, analyst_sets: Option<Severity>) -> (Fixture, Arc<Faulty>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap());
    let faulty = Arc::new(Faulty {
        inner: store.clone(),
        failing_comments: failing_comments.into(),
        analyst_sets: std::sync::Mutex::new(analyst_sets),
    });
    let ti =
        Arc::new(OfflineThreatIntel::from_json(socwire::local::threat_intel_builtin()).unwrap());
    (fixture_with(dir, store, faulty.clone(), ti), faulty)
}

#[tokio::test]
async fn a_comment_that_fails_after_the_severity_change_is_completed_on_redelivery() {
    // A known C2 address: triage raises Low -> High, then the comment write fails.
    let (f, _) = faulty_fixture(1, None);
    let id = seed(
        &f.store,
        Severity::Low,
        &[("Ip", "address", "203.0.113.66")],
    );
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "retried: {body}");
    assert_eq!(
        f.store.get(&id).await.unwrap().properties.severity,
        Severity::High
    );
    assert!(f.store.comments(&id).unwrap().is_empty());
    assert_eq!(f.ledger.count("triage:v1:").unwrap(), 0);

    // The redelivery must not re-assess the now-High incident as "nothing to do".
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let comments = f.store.comments(&id).unwrap();
    assert_eq!(comments.len(), 1, "the missing comment was written");
    assert!(
        comments[0].message.contains("203.0.113.66"),
        "{}",
        comments[0].message
    );
    let event = &body["Outputs"]["events"][0];
    assert_eq!(event["data"]["verdict"], "high");
    assert_eq!(event["data"]["newSeverity"], "High");
    assert_eq!(event["data"]["previousSeverity"], "Low");
}

#[tokio::test]
async fn an_analyst_change_during_triage_is_kept_and_the_comment_says_so() {
    // Triage wants High (known C2 address); the analyst sets Informational just before our PUT.
    let (f, faulty) = faulty_fixture(0, Some(Severity::Informational));
    let id = seed(
        &f.store,
        Severity::Medium,
        &[("Ip", "address", "203.0.113.66")],
    );
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        faulty.analyst_sets.lock().unwrap().is_none(),
        "the analyst acted"
    );
    let incident = f.store.get(&id).await.unwrap();
    assert_eq!(
        incident.properties.severity,
        Severity::Informational,
        "analyst's value kept"
    );
    let comments = f.store.comments(&id).unwrap();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].message.contains("change was kept"),
        "{}",
        comments[0].message
    );
    assert!(body["Outputs"]["events"][0]["data"]["outcome"]
        .as_str()
        .unwrap()
        .contains("analyst"));
}

#[tokio::test]
async fn hostile_incident_and_entity_text_never_reaches_the_report_unescaped() {
    let f = fixture();
    let id = seed(
        &f.store,
        Severity::Low,
        &[
            ("Ip", "address", "203.0.113.66"),
            (
                "Host",
                "hostName",
                "<script>alert(1)</script>\" | take 1; \n",
            ),
            (
                "Account",
                "accountName",
                "a\"; drop\r\n<img src=x onerror=y>",
            ),
            ("NewKind<b>", "friendlyName", "<svg onload=1>"),
            (
                "Url",
                "url",
                "http://c2.evil.example/\u{1b}[31m\nFAKE LOG LINE",
            ),
        ],
    );
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["Outputs"]["events"][0]["data"]["reportUrl"]
        .as_str()
        .unwrap();
    let name = url.rsplit("/reports/").next().unwrap();
    let html = std::fs::read_to_string(f._dir.path().join("reports").join(name)).unwrap();
    for raw in ["<script>", "<img", "<svg", "NewKind<b>"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }
    assert!(
        html.contains("NewKind&lt;b&gt;"),
        "unknown kinds are listed"
    );
    assert!(html.contains("&lt;script&gt;"));
    assert!(f.store.get(&id).await.is_ok());
}

#[tokio::test]
async fn ten_thousand_entities_are_bounded_with_a_note_in_the_verdict() {
    let f = fixture();
    let many: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            (
                "Ip".to_string(),
                format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = many
        .iter()
        .map(|(k, v)| (k.as_str(), "address", v.as_str()))
        .collect();
    seed(&f.store, Severity::Medium, &refs);
    let (status, body) = post(&f.ctx, "triage-incident", queue_request(ID, 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reasons = body["Outputs"]["events"][0]["data"]["reasons"].to_string();
    assert!(reasons.contains("10000 entities"), "{reasons}");
    assert!(reasons.contains("not checked"), "{reasons}");
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
    async fn lookup(&self, _: &Indicator) -> PortResult<TiAnswer> {
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

fn timer_request() -> String {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {}}).to_string()
}

#[tokio::test]
async fn sweep_queues_open_untriaged_incidents_and_commits_its_checkpoint_a_run_later() {
    let f = fixture();
    let settings = socwire::settings::Settings::from_lookup(|k| match k {
        "SOCWIRE_SENTINEL_SUBSCRIPTION_ID" => Some("00000000-0000-0000-0000-000000000000".into()),
        "SOCWIRE_SENTINEL_RESOURCE_GROUP" => Some("soc-rg".into()),
        "SOCWIRE_SENTINEL_WORKSPACE" => Some("soc-ws".into()),
        _ => None,
    })
    .unwrap();
    let ctx = Arc::new(Context {
        settings: Arc::new(settings),
        ..(*f.ctx).clone()
    });
    let make = |guid: &str, status: &str, modified: &str| Incident {
        id: ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", guid),
        name: guid.into(),
        etag: None,
        properties: IncidentProperties {
            title: "t".into(),
            severity: Severity::Low,
            status: status.into(),
            description: None,
            incident_number: None,
            other: [
                ("lastModifiedTimeUtc".to_string(), json!(modified)),
                ("createdTimeUtc".to_string(), json!(modified)),
            ]
            .into_iter()
            .collect(),
        },
    };
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::minutes(30)).to_rfc3339();
    let old = (now - chrono::Duration::days(3)).to_rfc3339();
    let open = "11111111-1111-4111-8111-111111111111";
    f.store.seed(&make(open, "New", &recent), &[]).unwrap();
    f.store
        .seed(
            &make("22222222-2222-4222-8222-222222222222", "Closed", &recent),
            &[],
        )
        .unwrap();
    f.store
        .seed(
            &make("33333333-3333-4333-8333-333333333333", "Active", &old),
            &[],
        )
        .unwrap();
    let other_ws = make("44444444-4444-4444-8444-444444444444", "New", &recent);
    let other_ws = Incident {
        id: other_ws.id.replace("soc-ws", "other-ws"),
        ..other_ws
    };
    f.store.seed(&other_ws, &[]).unwrap();

    let (status, body) = post(&ctx, "incident-sweep", timer_request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let queued = body["Outputs"]["triage"].as_array().unwrap();
    assert_eq!(
        queued.len(),
        1,
        "only the open, recent incident of this workspace: {body}"
    );
    assert!(queued[0]["incidentId"].as_str().unwrap().ends_with(open));
    let state = |ctx: &Arc<Context>| {
        let ctx = ctx.clone();
        async move {
            let bytes = ctx
                .state
                .load(socwire::functions::incident_sweep::CHECKPOINT_KEY)
                .await
                .unwrap()
                .unwrap();
            serde_json::from_slice::<socwire::functions::incident_sweep::Checkpoint>(&bytes)
                .unwrap()
        }
    };
    let first = state(&ctx).await;
    assert!(first.candidate.is_some());

    // Once triaged, the next sweep does not queue it again; the candidate is now committed.
    f.ledger
        .record(
            &socwire::functions::triaged_key(
                &IncidentId::parse(&make(open, "New", &recent).id).unwrap(),
            ),
            "done",
        )
        .await
        .unwrap();
    let (_, body) = post(&ctx, "incident-sweep", timer_request()).await;
    assert!(body["Outputs"].get("triage").is_none(), "{body}");
    let second = state(&ctx).await;
    assert_eq!(second.committed, first.candidate);
    assert!(second.candidate > first.candidate);
}
