//! Every Azure adapter except Sentinel against a local fault-injecting server: throttling with
//! Retry-After, 5xx, 409/412, answers slower than the client timeout, bodies cut short, a
//! token that stops working mid-run, and a dead endpoint. Each adapter retries within its
//! bounds or fails with a clear, secret-free reason, and nothing is written twice.

mod support;

use axum::http::Method;
use serde_json::{json, Value};
use socwire::azure::{
    AdapterOptions, AzureQueue, BlobLedger, BlobReportStore, BlobStateStore, LogsIngestionRest,
    StorageAccount, StorageAuth,
};
use socwire::ports::{Ledger, LogsIngestion, PortError, ReportStore, StateStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fault_server::{closed_port, Answer, Fault, FaultServer, Seen};
use support::tokens::Tokens;

/// Fast bounds for tests: a timeout well above a loopback answer even on a loaded machine,
/// small back-off, a cap far below any Retry-After used.
fn quick() -> AdapterOptions {
    AdapterOptions {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        max_retries: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..AdapterOptions::default()
    }
}

/// What an injected slow answer waits: far beyond `quick().timeout`.
const SLOW: Duration = Duration::from_secs(5);

/// The real storage key form: 64 random-looking bytes, base64.
fn key() -> Vec<u8> {
    (0u8..64).map(|i| i.wrapping_mul(37)).collect()
}

fn account(url: &str, auth: StorageAuth) -> StorageAccount {
    StorageAccount {
        name: "acct".into(),
        blob_endpoint: format!("{url}/acct/").parse().unwrap(),
        queue_endpoint: format!("{url}/acctq/").parse().unwrap(),
        auth,
    }
}

/// True when `text` carries a SAS signature or permission value (anything but REDACTED).
fn leaks_sas(text: &str) -> bool {
    ["sig=", "sp=", "se="].iter().any(|p| {
        text.match_indices(p)
            .any(|(i, _)| !text[i + p.len()..].starts_with("REDACTED"))
    })
}

/// A blob service in memory: containers are implicit, `If-None-Match: *` is honoured.
fn blob_service(blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>) -> impl Fn(&Seen) -> Answer {
    move |req| {
        if req.query.contains("restype=container") {
            return (201, vec![], vec![]);
        }
        let mut blobs = blobs.lock().unwrap();
        match req.method.as_str() {
            "PUT" => {
                if req.header("if-none-match") == Some("*") && blobs.contains_key(&req.path) {
                    return (409, vec![], b"BlobAlreadyExists".to_vec());
                }
                blobs.insert(req.path.clone(), req.body.to_vec());
                (201, vec![], vec![])
            }
            "GET" => match blobs.get(&req.path) {
                Some(b) => (200, vec![], b.clone()),
                None => (404, vec![], b"BlobNotFound".to_vec()),
            },
            _ => (405, vec![], vec![]),
        }
    }
}

async fn blob_server() -> (FaultServer, Arc<Mutex<HashMap<String, Vec<u8>>>>) {
    let blobs = Arc::new(Mutex::new(HashMap::new()));
    (FaultServer::start(blob_service(blobs.clone())).await, blobs)
}

#[tokio::test]
async fn a_dead_endpoint_gives_a_transient_error_without_the_sas() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let account = account(&url, StorageAuth::Key(key()));
    let ledger = BlobLedger::with_options(&account, "ledger", quick()).unwrap();
    let err = ledger.get("k").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PortError::Transient(_)), "{text}");
    assert!(text.contains("could not connect"), "{text}");
    assert!(text.contains("gave up after 4 attempts"), "{text}");
    assert!(!leaks_sas(&text), "{text}");
    assert!(
        text.contains("sig=REDACTED"),
        "the URL stays, minus the secrets: {text}"
    );

    let queue = AzureQueue::with_options(&account, "triage", quick()).unwrap();
    for err in [
        queue.put("m", 0).await.unwrap_err(),
        queue.receive(1, 30).await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(matches!(err, PortError::Transient(_)), "{text}");
        assert!(text.contains("could not connect"), "{text}");
        assert!(!leaks_sas(&text), "{text}");
    }
}

#[tokio::test]
async fn ledger_first_writer_wins_when_the_answer_is_lost_after_the_write_landed() {
    let (server, blobs) = blob_server().await;
    let ledger = BlobLedger::with_options(
        &account(&server.url, StorageAuth::Key(key())),
        "ledger",
        quick(),
    )
    .unwrap();
    server.script(Method::PUT, "/acct/ledger/k1", [Fault::LandThen(503)]);
    assert!(
        ledger.record("k1", "first").await.unwrap(),
        "the write that landed is this caller's"
    );
    assert!(!ledger.record("k1", "second").await.unwrap());
    assert_eq!(ledger.get("k1").await.unwrap().as_deref(), Some("first"));
    assert_eq!(server.seen_on(Method::PUT, "/acct/ledger/k1").len(), 3);

    server.script(Method::PUT, "/acct/ledger/k2", [Fault::LandThenHang(SLOW)]);
    assert!(
        ledger.record("k2", "mine").await.unwrap(),
        "timeout, then 409, then read back"
    );

    // Another writer's blob found on a retry is not claimed.
    server.script(
        Method::PUT,
        "/acct/ledger/k3",
        [Fault::Status(500, vec![], "")],
    );
    blobs
        .lock()
        .unwrap()
        .insert("/acct/ledger/k3".into(), b"other".to_vec());
    assert!(!ledger.record("k3", "mine").await.unwrap());
    assert_eq!(ledger.get("k3").await.unwrap().as_deref(), Some("other"));
    assert_eq!(blobs.lock().unwrap().len(), 3, "one blob per key");
}

#[tokio::test]
async fn throttling_waits_for_retry_after_but_never_longer_than_the_cap() {
    let (server, _) = blob_server().await;
    let options = AdapterOptions {
        max_delay: Duration::from_secs(2),
        ..quick()
    };
    let state = BlobStateStore::with_options(
        &account(&server.url, StorageAuth::Key(key())),
        "state",
        options,
    )
    .unwrap();
    server.script(
        Method::GET,
        "/acct/state/w",
        [
            Fault::Status(429, vec![("retry-after", "1".into())], "throttled"),
            // An hour: capped at max_delay (2 s), or this test would not finish.
            Fault::Status(503, vec![("retry-after", "3600".into())], "busy"),
            Fault::Status(500, vec![], "oops"),
        ],
    );
    let got = tokio::time::timeout(Duration::from_secs(20), state.load("w"))
        .await
        .expect("Retry-After is capped")
        .unwrap();
    assert_eq!(got, None);
    let seen = server.seen_on(Method::GET, "/acct/state/w");
    assert_eq!(seen.len(), 4);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "Retry-After: 1 honoured"
    );
    assert!(
        seen[2].at - seen[1].at >= Duration::from_secs(2),
        "capped wait"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_errors_are_classified() {
    let (server, _) = blob_server().await;
    let account = account(&server.url, StorageAuth::Key(key()));
    let state = BlobStateStore::with_options(&account, "state", quick()).unwrap();
    server.script(
        Method::PUT,
        "/acct/state/a",
        std::iter::repeat_n(Fault::Status(503, vec![], "ServerBusy"), 10),
    );
    let err = state.save("a", b"x").await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(
        server.seen_on(Method::PUT, "/acct/state/a").len(),
        4,
        "1 + max_retries"
    );

    for (status, path) in [(412, "/acct/state/b"), (409, "/acct/state/c")] {
        server.script(
            Method::PUT,
            path,
            [Fault::Status(status, vec![], "ConditionNotMet")],
        );
        let key = path.rsplit('/').next().unwrap();
        let err = state.save(key, b"x").await.unwrap_err();
        assert!(matches!(err, PortError::Conflict(_)), "{err}");
        assert_eq!(
            server.seen_on(Method::PUT, path).len(),
            1,
            "{status}: not retried"
        );
    }
    let error_body = "AuthorizationFailure for /acct/state/d?sv=1&sig=s3cr3t";
    server.script(
        Method::PUT,
        "/acct/state/d",
        [Fault::Status(403, vec![], error_body)],
    );
    let err = state.save("d", b"x").await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert_eq!(server.seen_on(Method::PUT, "/acct/state/d").len(), 1);

    let reports = BlobReportStore::with_link_lifetime(
        &account,
        "reports",
        chrono::Duration::hours(1),
        quick(),
    )
    .unwrap();
    server.script(
        Method::PUT,
        "/acct/reports/r.html",
        [Fault::Status(500, vec![], "")],
    );
    let url = reports.put_html("r.html", "<p>r</p>").await.unwrap();
    assert!(
        url.ends_with("/acct/reports/r.html") && !url.contains('?'),
        "{url}"
    );
}

#[tokio::test]
async fn slow_answers_and_cut_bodies_are_retried_never_returned() {
    let (server, blobs) = blob_server().await;
    let state = BlobStateStore::with_options(
        &account(&server.url, StorageAuth::Key(key())),
        "state",
        quick(),
    )
    .unwrap();
    let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    blobs
        .lock()
        .unwrap()
        .insert("/acct/state/w".into(), content.clone());
    server.script(
        Method::GET,
        "/acct/state/w",
        [Fault::Hang(SLOW), Fault::Truncated, Fault::Truncated],
    );
    assert_eq!(state.load("w").await.unwrap(), Some(content));
    assert_eq!(server.seen_on(Method::GET, "/acct/state/w").len(), 4);

    server.script(
        Method::GET,
        "/acct/state/w",
        std::iter::repeat_n(Fault::Truncated, 4),
    );
    let err = state.load("w").await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("cut short"), "{err}");

    server.script(
        Method::GET,
        "/acct/state/w",
        std::iter::repeat_n(Fault::Hang(SLOW), 4),
    );
    let err = state.load("w").await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(!leaks_sas(&err.to_string()), "{err}");
}

#[tokio::test]
async fn a_token_refused_mid_run_is_replaced_once() {
    let (server, _) = blob_server().await;
    let account = account(&server.url, StorageAuth::Token(Arc::new(Tokens::default())));
    let state = BlobStateStore::with_options(&account, "state", quick()).unwrap();
    state.save("a", b"1").await.unwrap();
    let expired = "AuthenticationFailed: Lifetime validation failed. The token is expired.";
    server.script(
        Method::PUT,
        "/acct/state/a",
        [Fault::Status(401, vec![], expired)],
    );
    state.save("a", b"2").await.unwrap();
    let auth: Vec<_> = server
        .seen_on(Method::PUT, "/acct/state/a")
        .iter()
        .map(|s| s.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(auth.len(), 3);
    assert_ne!(auth[1], auth[2], "the retry carries a new token");

    server.script(
        Method::PUT,
        "/acct/state/a",
        std::iter::repeat_n(Fault::Status(401, vec![], expired), 2),
    );
    let err = state.save("a", b"3").await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("Bearer"), "{err}");
    assert_eq!(
        server.seen_on(Method::PUT, "/acct/state/a").len(),
        5,
        "one retry on 401"
    );
}

/// A queue service in memory (XML as the Queue REST API answers).
fn queue_service(stored: Arc<Mutex<Vec<String>>>) -> impl Fn(&Seen) -> Answer {
    move |req| {
        let xml = |body: String| {
            let headers = vec![("content-type", "application/xml".to_string())];
            let text = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><QueueMessagesList>{body}</QueueMessagesList>"#
            );
            (headers, text.into_bytes())
        };
        match (req.method.as_str(), req.path.ends_with("/messages")) {
            ("POST", true) => {
                let body = String::from_utf8_lossy(&req.body).to_string();
                let text = body
                    .split("<MessageText>")
                    .nth(1)
                    .and_then(|s| s.split("</MessageText>").next())
                    .unwrap_or_default()
                    .to_string();
                let mut stored = stored.lock().unwrap();
                stored.push(text);
                let (h, b) = xml(format!(
                    "<QueueMessage><MessageId>m{}</MessageId><PopReceipt>p</PopReceipt></QueueMessage>",
                    stored.len()
                ));
                (201, h, b)
            }
            ("GET", true) => {
                let items: String = stored
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        format!(
                            "<QueueMessage><MessageId>m{}</MessageId><PopReceipt>p</PopReceipt>\
                             <DequeueCount>1</DequeueCount><MessageText>{t}</MessageText></QueueMessage>",
                            i + 1
                        )
                    })
                    .collect();
                let (h, b) = xml(items);
                (200, h, b)
            }
            ("DELETE", _) => (204, vec![], vec![]),
            ("PUT", false) => (201, vec![], vec![]),
            _ => (400, vec![], b"unexpected".to_vec()),
        }
    }
}

#[tokio::test]
async fn queue_sends_retry_only_when_the_message_cannot_have_been_stored() {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let server = FaultServer::start(queue_service(stored.clone())).await;
    let account = account(&server.url, StorageAuth::Key(key()));
    let queue = AzureQueue::with_options(&account, "triage", quick()).unwrap();
    let path = "/acctq/triage/messages";
    server.script(
        Method::POST,
        path,
        [
            Fault::Status(429, vec![("retry-after", "0".into())], "throttled"),
            Fault::Status(503, vec![], "ServerBusy"),
        ],
    );
    assert_eq!(queue.put("one", 0).await.unwrap(), "m1");
    assert_eq!(server.seen_on(Method::POST, path).len(), 3);

    // A 500 or a timeout may mean "stored": no blind re-send, a clear transient error.
    server.script(Method::POST, path, [Fault::LandThen(500)]);
    let err = queue.put("two", 0).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    server.script(Method::POST, path, [Fault::LandThenHang(SLOW)]);
    let err = queue.put("three", 0).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(!leaks_sas(&err.to_string()), "{err}");
    assert_eq!(server.seen_on(Method::POST, path).len(), 5, "no re-sends");
    assert_eq!(
        *stored.lock().unwrap(),
        ["one", "two", "three"],
        "each stored once"
    );

    // Reads retry anything transient, cut bodies included.
    server.script(
        Method::GET,
        path,
        [
            Fault::Hang(SLOW),
            Fault::Truncated,
            Fault::Status(500, vec![], ""),
        ],
    );
    let got = queue.receive(32, 30).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    server.script(
        Method::DELETE,
        "/acctq/triage/messages/m1",
        [Fault::Status(
            403,
            vec![],
            "AuthorizationPermissionMismatch",
        )],
    );
    let err = queue.delete(&got[0]).await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    queue.delete(&got[0]).await.unwrap();
}

/// A Logs Ingestion endpoint that keeps every row it was sent.
/// With `latest`, only the newest managed-identity token (`mi-{latest}`) is accepted.
fn dce(rows: Arc<Mutex<Vec<Value>>>, latest: Option<Arc<Mutex<u32>>>) -> impl Fn(&Seen) -> Answer {
    move |req| {
        if let Some(n) = &latest {
            let current = format!("Bearer mi-{}", n.lock().unwrap());
            if req.header("authorization") != Some(current.as_str()) {
                return (401, vec![], b"InvalidToken: token expired".to_vec());
            }
        }
        match serde_json::from_slice::<Vec<Value>>(&req.body) {
            Ok(r) => {
                rows.lock().unwrap().extend(r);
                (204, vec![], vec![])
            }
            Err(_) => (400, vec![], b"InvalidPayload".to_vec()),
        }
    }
}

const STREAM_PATH: &str = "/dataCollectionRules/dcr-0123abcd/streams/Custom-AlertSubgraphs";

fn rows(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"RowKey": format!("sg-{i}"), "Score": i}))
        .collect()
}

#[tokio::test]
async fn logs_ingestion_retries_send_the_same_rows_so_readers_can_deduplicate() {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let server = FaultServer::start(dce(stored.clone(), None)).await;
    let logs = LogsIngestionRest::with_options(
        &server.url,
        "dcr-0123abcd",
        Arc::new(Tokens::default()),
        quick(),
    )
    .unwrap();
    server.script(
        Method::POST,
        STREAM_PATH,
        [
            Fault::LandThenHang(SLOW),
            Fault::Status(429, vec![("retry-after", "0".into())], ""),
            Fault::LandThen(503),
        ],
    );
    let calls = logs
        .upload("Custom-AlertSubgraphs", &rows(50))
        .await
        .unwrap();
    assert_eq!(calls, 4);
    let seen = server.seen_on(Method::POST, STREAM_PATH);
    assert_eq!(seen.len(), 4);
    for s in &seen[1..] {
        assert_eq!(s.body, seen[0].body, "every retry sends the same bytes");
        assert_eq!(
            s.header("x-ms-client-request-id"),
            seen[0].header("x-ms-client-request-id")
        );
    }
    // The two calls whose answers were lost landed as well: the API keeps duplicates, and
    // they are exact copies, so de-duplicating on RowKey gives each row once.
    let stored = stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 150);
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &stored {
        by_key
            .entry(r["RowKey"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    assert_eq!(by_key.len(), 50);
    assert!(by_key.values().all(|v| v.iter().all(|r| *r == v[0])));

    server.script(
        Method::POST,
        STREAM_PATH,
        [Fault::Status(400, vec![], "InvalidStream")],
    );
    let err = logs
        .upload("Custom-AlertSubgraphs", &rows(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("InvalidStream"), "{err}");
    assert!(!err.to_string().contains("Bearer"), "{err}");
}

/// App Service managed identity endpoint: `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&
/// resource=…` with `X-IDENTITY-HEADER`, answering `expires_on` as a string of epoch seconds.
fn identity_endpoint(issued: Arc<Mutex<u32>>, lifetime: i64) -> impl Fn(&Seen) -> Answer {
    move |req| {
        if req.header("x-identity-header") != Some("identity-header-secret") {
            return (401, vec![], b"missing header".to_vec());
        }
        let mut n = issued.lock().unwrap();
        *n += 1;
        let expires = chrono::Utc::now().timestamp() + lifetime;
        let body = json!({
            "access_token": format!("mi-{n}"),
            "expires_on": expires.to_string(),
            "resource": req.param("resource").unwrap_or_default(),
            "token_type": "Bearer",
        });
        (
            200,
            vec![("content-type", "application/json".into())],
            body.to_string().into_bytes(),
        )
    }
}

#[tokio::test]
async fn managed_identity_tokens_survive_endpoint_faults_and_expiry_mid_run() {
    let issued = Arc::new(Mutex::new(0));
    // Tokens live 2 minutes, inside the SDK's 5-minute refresh margin: every call asks again.
    let identity = FaultServer::start(identity_endpoint(issued.clone(), 120)).await;
    // This is the only test in this binary that reads these variables.
    std::env::set_var("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url));
    std::env::set_var("IDENTITY_HEADER", "identity-header-secret");
    std::env::remove_var("AZURE_CLIENT_ID");
    let credential = socwire::azure::managed_identity_credential(&quick()).unwrap();

    identity.script(
        Method::GET,
        "/msi/token",
        [
            Fault::Status(503, vec![("retry-after", "0".into())], ""),
            Fault::Hang(SLOW),
            Fault::Status(500, vec![], ""),
        ],
    );
    let stored = Arc::new(Mutex::new(Vec::new()));
    let dce_server = FaultServer::start(dce(stored.clone(), Some(issued.clone()))).await;
    let logs =
        LogsIngestionRest::with_options(&dce_server.url, "dcr-0123abcd", credential, quick())
            .unwrap();
    logs.upload("Custom-AlertSubgraphs", &rows(3))
        .await
        .unwrap();
    let asked = identity.seen_on(Method::GET, "/msi/token");
    assert_eq!(
        asked.len(),
        4,
        "503, timeout and 500 retried by the credential"
    );
    assert_eq!(asked[3].param("api-version").as_deref(), Some("2019-08-01"));
    assert_eq!(
        asked[3].param("resource").as_deref(),
        Some("https://monitor.azure.com")
    );

    // The service refuses the token it gets (expired mid-run, clock skew): the adapter asks
    // the identity endpoint again and goes on with the new one.
    dce_server.script(
        Method::POST,
        STREAM_PATH,
        [Fault::Status(401, vec![], "InvalidToken: token expired")],
    );
    logs.upload("Custom-AlertSubgraphs", &rows(2))
        .await
        .unwrap();
    let auth: Vec<_> = dce_server
        .seen()
        .iter()
        .map(|s| s.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(auth, ["Bearer mi-1", "Bearer mi-2", "Bearer mi-3"]);
    assert_eq!(identity.seen_on(Method::GET, "/msi/token").len(), 6);
    assert_eq!(stored.lock().unwrap().len(), 5);

    // An identity not assigned to the app: permanent, and the header secret never shows.
    identity.script(
        Method::GET,
        "/msi/token",
        [Fault::Status(400, vec![], "identity-header-secret?")],
    );
    let err = logs
        .upload("Custom-AlertSubgraphs", &rows(1))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PortError::Permanent(_)), "{text}");
    assert!(text.contains("getting a token"), "{text}");
    assert!(!text.contains("identity-header-secret"), "{text}");
    // A token endpoint that does not answer in time: transient.
    identity.script(
        Method::GET,
        "/msi/token",
        std::iter::repeat_n(Fault::Hang(SLOW), 4),
    );
    let err = logs
        .upload("Custom-AlertSubgraphs", &rows(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("getting a token"), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(
        identity.seen_on(Method::GET, "/msi/token").len(),
        6 + 1 + 4,
        "the credential's own bounded retries, not multiplied by the adapter's"
    );
}
