//! The Sentinel and Log Analytics adapters against the fault-injecting local HTTP server
//! (`support::fault_server`): 429 with Retry-After, 5xx, 409, 401 with a token refresh, a
//! stalled answer, a truncated body, a huge body, and documented response shapes. Each call retries, backs off or fails with a clear, redacted reason, and
//! nothing is duplicated.

mod support;

use axum::http::Method;
use serde_json::{json, Value};
use socwire::azure::{AdapterOptions, LogAnalyticsQuery, SentinelRest, SENTINEL_API_VERSION};
use socwire::ports::{IncidentStore, PortError, Question, WorkspaceQueries};
use socwire::sentinel::{HostRef, IncidentId, Indicator, Severity};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::arm::fixture;
use support::fault_server::{Answer, Fault, FaultServer, Seen};
use support::tokens::Tokens;

const INCIDENT: &str = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

/// `Incidents_Get` (fixture), its title plain and number 1.
fn incident() -> Value {
    let mut v = fixture("incident-get-200");
    v["properties"]["title"] = json!("t");
    v["properties"]["incidentNumber"] = json!(1);
    v
}

/// Sentinel and the Log Analytics query API in memory: comments are kept by id (a second PUT
/// of the same id updates it), anything else answers one incident.
fn arm_service(comments: Arc<Mutex<HashMap<String, String>>>) -> impl Fn(&Seen) -> Answer {
    move |req| {
        let json = |status: u16, v: Value| (status, vec![], v.to_string().into_bytes());
        if req.method == Method::PUT && req.path.contains("/comments/") {
            let id = req.path.rsplit('/').next().unwrap().to_string();
            let msg: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let created = comments
                .lock()
                .unwrap()
                .insert(
                    id.clone(),
                    msg["properties"]["message"].as_str().unwrap_or("").into(),
                )
                .is_none();
            return json(if created { 201 } else { 200 }, json!({"name": id}));
        }
        if req.path.ends_with("/query") {
            // Log Analytics query API answer shape (Azure Monitor "Log Analytics API response format").
            return json(200, fixture("log-analytics-query-200"));
        }
        json(200, incident())
    }
}

/// A fault server running [`arm_service`], and the comments it keeps.
async fn serve() -> (FaultServer, Arc<Mutex<HashMap<String, String>>>) {
    let comments = Arc::new(Mutex::new(HashMap::new()));
    (
        FaultServer::start(arm_service(comments.clone())).await,
        comments,
    )
}

fn options() -> AdapterOptions {
    AdapterOptions {
        max_retries: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(3),
        timeout: Duration::from_millis(500),
        max_body: 1024 * 1024,
        ..AdapterOptions::json_api()
    }
}

/// A server whose incident GETs meet `faults` first, and a Sentinel adapter for it.
async fn setup(
    faults: Vec<Fault>,
) -> (
    FaultServer,
    Arc<Mutex<HashMap<String, String>>>,
    SentinelRest,
    Arc<Tokens>,
    IncidentId,
) {
    let (server, comments) = serve().await;
    server.script(Method::GET, INCIDENT, faults);
    let tokens = Arc::new(Tokens::default());
    let sentinel = SentinelRest::with_options(&server.url, tokens.clone(), options()).unwrap();
    let id = IncidentId::parse(INCIDENT).unwrap();
    (server, comments, sentinel, tokens, id)
}

fn reply(status: u16, body: &'static str) -> Fault {
    Fault::Status(status, vec![], body)
}

#[tokio::test]
async fn throttling_honours_retry_after_within_its_bound() {
    let (server, _, sentinel, _, id) = setup(vec![Fault::Status(
        429,
        vec![("retry-after", "1".into())],
        "{}",
    )])
    .await;
    let started = Instant::now();
    let incident = sentinel.get(&id).await.unwrap();
    assert_eq!(incident.properties.severity, Severity::Medium);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].param("api-version").as_deref(),
        Some(SENTINEL_API_VERSION),
        "{}",
        seen[0].query
    );

    // A Retry-After past the bound is not slept through: the host retries the message later.
    let (server, _, sentinel, _, id) = setup(vec![Fault::Status(
        429,
        vec![("retry-after", "3600".into())],
        "{}",
    )])
    .await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("over the 3s bound"), "{err}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_with_a_redacted_reason() {
    let (server, _, sentinel, _, id) = setup(vec![reply(503, "{}"), reply(500, "{}")]).await;
    sentinel.get(&id).await.unwrap();
    assert_eq!(server.seen().len(), 3);

    let leak = r#"{"error":{"message":"see https://acct.blob.core.windows.net/c/b?sv=2024&sig=SECRETSIG&se=2030"}}"#;
    let (server, _, sentinel, _, id) =
        setup(vec![reply(500, leak), reply(502, leak), reply(503, leak)]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PortError::Transient(_)), "{text}");
    assert!(
        text.contains("after 3 attempts") && text.contains("503"),
        "{text}"
    );
    assert!(!text.contains("SECRETSIG"), "{text}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn client_errors_are_classified_and_not_retried() {
    let conflict = r#"{"error":{"code":"Conflict","message":"New version of resource exists. Data was not saved"}}"#;
    let (server, _, sentinel, _, id) = setup(vec![]).await;
    server.script(Method::PUT, INCIDENT, [reply(409, conflict)]);
    let incident: socwire::sentinel::Incident = serde_json::from_value(incident()).unwrap();
    let err = sentinel.update(&id, &incident).await.unwrap_err();
    assert!(matches!(err, PortError::Conflict(_)), "{err}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "a conflict is the caller's to resolve");
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        sent["etag"], "\"0300bf09-0000-0000-0000-5c37296e0000\"",
        "etag in the body"
    );

    for (status, check) in [(403u16, "403"), (404, "404"), (400, "400")] {
        let (server, _, sentinel, _, id) =
            setup(vec![reply(status, r#"{"error":{"code":"X"}}"#)]).await;
        let err = sentinel.get(&id).await.unwrap_err();
        assert!(err.to_string().contains(check), "{err}");
        assert!(!err.is_transient(), "{status} is not retried: {err}");
        if status == 404 {
            assert!(matches!(err, PortError::NotFound(_)));
        }
        assert_eq!(server.seen().len(), 1);
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let (server, _, sentinel, tokens, id) = setup(vec![reply(
        401,
        r#"{"error":{"code":"ExpiredAuthenticationToken"}}"#,
    )])
    .await;
    sentinel.get(&id).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("authorization"), Some("Bearer token-1"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer token-2"));
    assert_eq!(tokens.asked(), 2);
    // A second 401 after the refresh is a clear, permanent failure.
    let (_, _, sentinel, _, id) = setup(vec![reply(401, "{}"), reply(401, "{}")]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(err.to_string().contains("after a fresh token"), "{err}");
}

#[tokio::test]
async fn a_stalled_or_truncated_answer_is_retried() {
    let (server, _, sentinel, _, id) =
        setup(vec![Fault::Hang(Duration::from_secs(3)), Fault::Truncated]).await;
    sentinel.get(&id).await.unwrap();
    assert_eq!(server.seen().len(), 3);

    let (_, _, sentinel, _, id) = setup(vec![Fault::Truncated; 3]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(
        err.to_string().contains("cut short") || err.to_string().contains("complete JSON"),
        "{err}"
    );

    let (_, _, sentinel, _, id) = setup(vec![Fault::Hang(Duration::from_secs(3)); 3]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_huge_answer_is_refused_without_reading_it_all() {
    let (server, _, sentinel, _, id) = setup(vec![]).await;
    let huge = format!("{{\"value\": \"{}\"}}", "x".repeat(4 * 1024 * 1024));
    server.script(
        Method::POST,
        &format!("{INCIDENT}/alerts"),
        [Fault::Reply((200, vec![], huge.into_bytes()))],
    );
    let err = sentinel.alerts(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("over 1048576 bytes"), "{err}");
}

#[tokio::test]
async fn a_comment_put_twice_after_an_ambiguous_failure_is_one_comment() {
    let (server, comments, sentinel, _, id) = setup(vec![]).await;
    let comment = "c0ffee00-0000-4000-8000-000000000001";
    // The write lands, the answer says otherwise.
    server.script(
        Method::PUT,
        &format!("{INCIDENT}/comments/{comment}"),
        [Fault::LandThen(503)],
    );
    sentinel
        .put_comment(&id, comment, "<p>hi</p>")
        .await
        .unwrap();
    sentinel
        .put_comment(&id, comment, "<p>hi</p>")
        .await
        .unwrap();
    assert_eq!(comments.lock().unwrap().len(), 1);
    assert_eq!(server.seen().len(), 3);
    for bad in ["..", ".", "a/b", "a%2Fb"] {
        assert!(sentinel.put_comment(&id, bad, "x").await.is_err(), "{bad}");
    }
    // Paths are built from validated segments: what reached the server is the incident's own.
    for seen in server.seen() {
        assert!(
            seen.path.starts_with(&format!("{INCIDENT}/comments/")),
            "{}",
            seen.path
        );
    }
}

#[tokio::test]
async fn log_analytics_answers_typed_questions_with_escaped_kql() {
    let (server, _) = serve().await;
    let ws = "11111111-2222-3333-4444-555555555555";
    let query_path = format!("/v1/workspaces/{ws}/query");
    server.script(
        Method::POST,
        &query_path,
        [Fault::Status(429, vec![("retry-after", "0".into())], "{}")],
    );
    let la =
        LogAnalyticsQuery::with_options(&server.url, ws, Arc::new(Tokens::default()), options())
            .unwrap();
    let host = "fin\"ws | union *; \n take";
    let answer = la
        .ask(&Question::RecentAlertsForHost {
            host: HostRef {
                name: host.into(),
                fqdn: None,
            },
            days: 7,
        })
        .await
        .unwrap();
    assert_eq!(answer.rows.len(), 2);
    assert_eq!(answer.rows[0]["AlertName"], "Beacon <script>");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "429 then success");
    assert_eq!(seen[1].path, query_path);
    let sent: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(sent["timespan"], "P7D");
    let kql = sent["query"].as_str().unwrap();
    assert!(kql.contains(r#""fin\"ws | union *; \n take""#), "{kql}");
    assert_eq!(kql, answer.query, "the finding cites the query that ran");

    // A partial error in a 200 answer (a fuzzy union naming a table this workspace lacks, as
    // the Log Analytics API's response-format page describes) keeps the rows it has and says
    // so; an error with no table at all is a failure.
    let ip = || Question::FirstSeenIp {
        ip: "8.8.8.8".into(),
        days: 30,
    };
    server.script(
        Method::POST,
        &query_path,
        [
            reply(
                200,
                r#"{"tables":[{"name":"PrimaryResult","columns":[{"name":"FirstSeen","type":"datetime"},{"name":"Count","type":"long"}],"rows":[["2026-11-30T10:00:00Z",3]]}],"error":{"code":"PartialError","message":"There were some errors when processing your query.","details":[{"code":"EngineError","message":"'DeviceNetworkEvents' could not be resolved"}]}}"#,
            ),
            reply(
                200,
                r#"{"error":{"code":"BadArgumentError","message":"query failed"}}"#,
            ),
        ],
    );
    let partial = la.ask(&ip()).await.unwrap();
    assert_eq!(partial.rows.len(), 1, "{partial:?}");
    assert_eq!(partial.rows[0]["Count"], 3);
    assert!(
        partial.warnings[0].contains("DeviceNetworkEvents"),
        "{:?}",
        partial.warnings
    );
    let err = la
        .ask(&Question::ThreatIndicator {
            indicator: Indicator {
                kind: "ipv4".into(),
                value: "8.8.8.8".into(),
            },
            table: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("query failed"), "{err}");
    assert!(LogAnalyticsQuery::new(&server.url, "../x", Arc::new(Tokens::default())).is_err());
}

#[tokio::test]
async fn the_incident_list_follows_next_links_on_the_same_list_only() {
    let (server, _) = serve().await;
    let endpoint = server.url.clone();
    let list_path = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents";
    let page = |next: Option<String>| {
        let mut v = json!({"value": [incident(), {"id": "not an incident"}]});
        if let Some(n) = next {
            v["nextLink"] = json!(n);
        }
        Fault::Reply((200, vec![], v.to_string().into_bytes()))
    };
    server.script(
        Method::GET,
        list_path,
        [
            page(Some(format!(
                "{endpoint}{list_path}?api-version={SENTINEL_API_VERSION}&$skipToken=abc"
            ))),
            page(None),
        ],
    );
    let sentinel =
        SentinelRest::with_options(&endpoint, Arc::new(Tokens::default()), options()).unwrap();
    let ws = socwire::sentinel::WorkspaceRef {
        subscription: "0000".into(),
        resource_group: "soc".into(),
        workspace: "ws".into(),
    };
    let since = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let listed = sentinel.list_modified_since(&ws, since, 100).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "one incident per page; the malformed item is skipped"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].param("$filter").as_deref(),
        Some("properties/lastModifiedTimeUtc ge 2026-11-29T10:00:00Z")
    );
    assert_eq!(
        seen[1].param("$skipToken").as_deref(),
        Some("abc"),
        "{}",
        seen[1].query
    );

    // A nextLink elsewhere (another origin) is never followed with our token.
    server.script(
        Method::GET,
        list_path,
        [page(Some(format!("https://attacker.example{list_path}")))],
    );
    let err = sentinel
        .list_modified_since(&ws, since, 100)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not followed"), "{err}");
    assert_eq!(server.seen().len(), 3, "one request more");
}
