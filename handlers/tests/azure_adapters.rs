//! Azure adapters against real protocols: Blob and Queue Storage against a real Azurite
//! (`.ci/run` starts one on 127.0.0.1:10000-10001 and sets `SOCWIRE_TEST_AZURITE=1`), and the
//! Sentinel REST adapter against a local HTTP server answering with documented payloads.

mod support;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use serde_json::{json, Value};
use socwire::azure::{
    AzureQueue, BlobLedger, BlobReportStore, BlobStateStore, SentinelRest, StorageAccount,
    SENTINEL_API_VERSION,
};
use socwire::ports::{IncidentStore, Ledger, ReportStore, StateStore};
use socwire::sentinel::{IncidentId, Severity};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::arm::fixture;

/// The Azurite account, or None (test skipped) when Azurite is not running and CI did not
/// ask for it. With `SOCWIRE_TEST_AZURITE=1` a missing Azurite is a failure.
fn azurite() -> Option<StorageAccount> {
    let required = std::env::var("SOCWIRE_TEST_AZURITE").is_ok_and(|v| v == "1");
    let up = std::net::TcpStream::connect("127.0.0.1:10000").is_ok()
        && std::net::TcpStream::connect("127.0.0.1:10001").is_ok();
    if !up {
        assert!(
            !required,
            "SOCWIRE_TEST_AZURITE=1 but Azurite is not listening on 127.0.0.1:10000-10001"
        );
        eprintln!("skipped: Azurite is not running (see .ci/run)");
        return None;
    }
    Some(StorageAccount::parse("UseDevelopmentStorage=true").unwrap())
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[tokio::test]
async fn blob_ledger_first_writer_wins_even_when_racing() {
    let Some(account) = azurite() else { return };
    let ledger = Arc::new(BlobLedger::new(&account, &unique("ledger")).unwrap());
    assert_eq!(ledger.get("triage:v1:a").await.unwrap(), None);
    assert!(ledger
        .record("triage:v1:a", "raised to High")
        .await
        .unwrap());
    assert!(!ledger.record("triage:v1:a", "again").await.unwrap());
    assert_eq!(
        ledger.get("triage:v1:a").await.unwrap().as_deref(),
        Some("raised to High")
    );

    let racers: Vec<_> = (0..8)
        .map(|i| {
            let l = ledger.clone();
            tokio::spawn(async move {
                l.record("race/key with spaces", &format!("writer {i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one writer records a key");
}

#[tokio::test]
async fn blob_reports_and_state_round_trip() {
    let Some(account) = azurite() else { return };
    let reports = BlobReportStore::new(&account, &unique("reports")).unwrap();
    let url = reports
        .put_html("incident-1.html", "<p>hi</p>")
        .await
        .unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:10000/devstoreaccount1/reports-"),
        "{url}"
    );
    assert!(!url.contains("sig="), "no SAS in links");
    let sas = account.account_sas(chrono::Duration::minutes(5)).unwrap();
    let body = reqwest::get(format!("{url}?{sas}")).await.unwrap();
    assert_eq!(body.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(body.text().await.unwrap(), "<p>hi</p>");
    assert!(reports.put_html("../escape.html", "x").await.is_err());

    let state = BlobStateStore::new(&account, &unique("state")).unwrap();
    assert_eq!(state.load("window").await.unwrap(), None);
    state.save("window", &[0, 1, 2, 255]).await.unwrap();
    state.save("window", &[9]).await.unwrap();
    assert_eq!(state.load("window").await.unwrap(), Some(vec![9]));
}

#[tokio::test]
async fn storage_queue_put_receive_delete_on_azurite() {
    let Some(account) = azurite() else { return };
    let queue = AzureQueue::new(&account, &unique("triage")).unwrap();
    queue.create_if_missing().await.unwrap();
    queue.create_if_missing().await.unwrap();
    let id = queue.put(r#"{"incidentId":"x"}"#, 0).await.unwrap();
    queue.put("later", 3600).await.unwrap();
    let got = queue.receive(32, 30).await.unwrap();
    assert_eq!(got.len(), 1, "the delayed message is invisible");
    assert_eq!(
        (
            got[0].id.as_str(),
            got[0].text.as_str(),
            got[0].dequeue_count
        ),
        (id.as_str(), r#"{"incidentId":"x"}"#, 1)
    );
    assert!(
        queue.receive(32, 30).await.unwrap().is_empty(),
        "received message is invisible"
    );
    queue.delete(&got[0]).await.unwrap();
    assert!(queue.delete(&got[0]).await.is_err(), "deleted once");
    assert!(
        queue.put(&"x".repeat(65 * 1024), 0).await.is_err(),
        "64 KiB limit"
    );
    assert!(AzureQueue::new(&account, "Bad_Name").is_err());
}

/// A credential that hands out a fixed token, and counts how often it was asked.
#[derive(Debug, Default)]
struct FixedToken(Mutex<Vec<String>>);

#[async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.0.lock().unwrap().push(scopes.join(" "));
        Ok(AccessToken::new(
            "test-token",
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// What the fake ARM endpoint holds and saw.
#[derive(Default)]
struct Arm {
    incident: Mutex<Value>,
    conflicts_left: Mutex<u32>,
    puts: Mutex<Vec<Value>>,
    comments: Mutex<HashMap<String, String>>,
}

type Shared = State<Arc<Arm>>;
type Q = Query<HashMap<String, String>>;

fn check(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(), (StatusCode, Json<Value>)> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-token") {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "AuthenticationFailed"}})),
        ));
    }
    if q.get("api-version").map(String::as_str) != Some(SENTINEL_API_VERSION) {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "MissingApiVersionParameter"}})),
        ));
    }
    Ok(())
}

async fn get_incident(
    State(arm): Shared,
    headers: HeaderMap,
    Query(q): Q,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    check(&headers, &q)?;
    Ok(Json(arm.incident.lock().unwrap().clone()))
}

async fn put_incident(
    State(arm): Shared,
    headers: HeaderMap,
    Query(q): Q,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    check(&headers, &q)?;
    arm.puts.lock().unwrap().push(body.clone());
    let mut stored = arm.incident.lock().unwrap();
    {
        let mut left = arm.conflicts_left.lock().unwrap();
        if *left > 0 {
            // Someone else updated the incident: a new etag, as ARM does.
            *left -= 1;
            stored["etag"] = json!(format!("\"v{left}\""));
        }
    }
    if body["etag"] != stored["etag"] {
        let message = "New version of resource exists. Data was not saved";
        return Err((
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "Conflict", "message": message}})),
        ));
    }
    stored["properties"] = body["properties"].clone();
    stored["etag"] = json!("\"next\"");
    Ok(Json(stored.clone()))
}

async fn list_entities(
    headers: HeaderMap,
    Query(q): Q,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    check(&headers, &q)?;
    // Shape from Incidents_ListEntities (SecurityInsights REST, GetAllIncidentEntities example).
    Ok(Json(fixture("incident-entities-200")))
}

async fn not_found() -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "ResourceNotFound", "message": "not found"}})),
    )
}

async fn put_comment(
    State(arm): Shared,
    headers: HeaderMap,
    Query(q): Q,
    Path(path): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, Json<Value>)> {
    check(&headers, &q)?;
    let comment_id = path.rsplit('/').next().unwrap().to_string();
    let message = body["properties"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let created = arm
        .comments
        .lock()
        .unwrap()
        .insert(comment_id.clone(), message)
        .is_none();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"name": comment_id, "properties": body["properties"]})),
    ))
}

const INCIDENT: &str = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

async fn fake_arm(arm: Arc<Arm>) -> String {
    let app = Router::new()
        .route(INCIDENT, get(get_incident).put(put_incident))
        .route(&format!("{INCIDENT}/entities"), post(list_entities))
        .route("/{*rest}", get(not_found).put(put_comment))
        .with_state(arm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn incident_body() -> Value {
    fixture("incident-get-200")
}

#[tokio::test]
async fn sentinel_rest_reads_updates_with_etag_retry_and_comments_idempotently() {
    let arm = Arc::new(Arm {
        incident: Mutex::new(incident_body()),
        conflicts_left: Mutex::new(1),
        ..Default::default()
    });
    let endpoint = fake_arm(arm.clone()).await;
    let token = Arc::new(FixedToken::default());
    let sentinel = SentinelRest::new(&endpoint, token.clone()).unwrap();
    let id = IncidentId::parse(INCIDENT).unwrap();

    let incident = sentinel.get(&id).await.unwrap();
    assert_eq!(
        (
            incident.properties.severity,
            incident.properties.incident_number
        ),
        (Severity::Medium, Some(42))
    );
    let entities = sentinel.entities(&id).await.unwrap();
    assert_eq!(
        entities.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["Ip", "Url"]
    );

    let mut update = incident.clone();
    update.properties.severity = Severity::High;
    let conflict = sentinel.update(&id, &update).await.unwrap_err();
    assert!(
        matches!(conflict, socwire::ports::PortError::Conflict(_)),
        "{conflict}"
    );
    let mut fresh = sentinel.get(&id).await.unwrap();
    fresh.properties.severity = Severity::High;
    sentinel.update(&id, &fresh).await.unwrap();
    let puts = arm.puts.lock().unwrap().clone();
    assert_eq!(
        puts.len(),
        2,
        "one conflict, then a re-read and a second PUT"
    );
    assert_eq!(
        puts[1]["etag"], "\"v0\"",
        "the second PUT carries the fresh etag"
    );
    let stored = arm.incident.lock().unwrap().clone();
    assert_eq!(stored["properties"]["severity"], "High");
    assert_eq!(
        stored["properties"]["labels"][0]["labelName"], "kept",
        "fields not read are kept"
    );

    sentinel
        .put_comment(&id, "c0ffee00-0000-4000-8000-000000000001", "first")
        .await
        .unwrap();
    sentinel
        .put_comment(&id, "c0ffee00-0000-4000-8000-000000000001", "first")
        .await
        .unwrap();
    assert_eq!(
        arm.comments.lock().unwrap().len(),
        1,
        "same comment id, one comment"
    );
    assert!(sentinel.put_comment(&id, "../x", "no").await.is_err());
    assert!(token
        .0
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == &format!("{endpoint}/.default")));
}

#[tokio::test]
async fn sentinel_rest_errors_are_classified() {
    let arm = Arc::new(Arm {
        incident: Mutex::new(incident_body()),
        conflicts_left: Mutex::new(99),
        ..Default::default()
    });
    let endpoint = fake_arm(arm).await;
    let sentinel = SentinelRest::new(&endpoint, Arc::new(FixedToken::default())).unwrap();
    let id = IncidentId::parse(INCIDENT).unwrap();
    let mut incident = sentinel.get(&id).await.unwrap();
    incident.properties.severity = Severity::High;
    let err = sentinel.update(&id, &incident).await.unwrap_err();
    assert!(
        matches!(err, socwire::ports::PortError::Conflict(_)),
        "{err}"
    );
    let other = IncidentId::parse(&INCIDENT.replace("73e01a99", "00000000")).unwrap();
    assert!(matches!(
        sentinel.get(&other).await.unwrap_err(),
        socwire::ports::PortError::NotFound(_)
    ));
    assert!(
        SentinelRest::new("http://management.example", Arc::new(FixedToken::default())).is_err(),
        "https only"
    );
}

/// A Logs Ingestion endpoint that throttles the first call and refuses bodies over 300 kB.
#[derive(Default)]
struct Dce {
    calls: Mutex<u32>,
    rows: Mutex<Vec<Value>>,
}

async fn ingest(
    State(dce): State<Arc<Dce>>,
    Path((dcr, stream)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Q,
    body: axum::body::Bytes,
) -> StatusCode {
    assert_eq!(
        (
            dcr.as_str(),
            stream.as_str(),
            q.get("api-version").map(String::as_str)
        ),
        ("dcr-0123abcd", "Custom-AlertSubgraphs", Some("2023-01-01"))
    );
    assert_eq!(headers.get("authorization").unwrap(), "Bearer test-token");
    let n = {
        let mut calls = dce.calls.lock().unwrap();
        *calls += 1;
        *calls
    };
    if n == 1 {
        return StatusCode::TOO_MANY_REQUESTS; // no Retry-After: the client backs off 1 s
    }
    if body.len() > 300_000 {
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
    dce.rows.lock().unwrap().extend(rows);
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn logs_ingestion_waits_on_429_and_splits_on_413_without_losing_rows() {
    let dce = Arc::new(Dce::default());
    let app = Router::new()
        .route("/dataCollectionRules/{dcr}/streams/{stream}", post(ingest))
        .with_state(dce.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let logs = socwire::azure::LogsIngestionRest::new(
        &format!("http://{addr}"),
        "dcr-0123abcd",
        Arc::new(FixedToken::default()),
    )
    .unwrap();
    let rows: Vec<Value> = (0..1500)
        .map(|i| json!({ "RowKey": format!("k{i}"), "Pad": "x".repeat(500) }))
        .collect();
    use socwire::ports::LogsIngestion;
    let calls = logs.upload("Custom-AlertSubgraphs", &rows).await.unwrap();
    let got = dce.rows.lock().unwrap().clone();
    assert_eq!(got.len(), 1500, "every row arrives once");
    let keys: std::collections::HashSet<_> = got
        .iter()
        .map(|r| r["RowKey"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1500);
    assert!(
        calls >= 5,
        "one throttled call, one 413, then halves: {calls}"
    );
    assert!(
        socwire::azure::LogsIngestionRest::new(
            "http://dce.example",
            "dcr-1",
            Arc::new(FixedToken::default())
        )
        .is_err(),
        "https only"
    );
}
