//! The Sentinel and Log Analytics adapters against a scripted local HTTP server (raw TCP on
//! 127.0.0.1:0, so it can also cut answers short and stall): 429 with Retry-After, 5xx, 409,
//! 401 with a token refresh, a stalled answer, a truncated body, a huge body, and documented
//! response shapes. Each call retries, backs off or fails with a clear, redacted reason, and
//! nothing is duplicated.

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use serde_json::{json, Value};
use socwire::azure::{AdapterOptions, LogAnalyticsQuery, SentinelRest, SENTINEL_API_VERSION};
use socwire::ports::{IncidentStore, PortError, Question, WorkspaceQueries};
use socwire::sentinel::{IncidentId, Indicator, Severity};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INCIDENT: &str = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

/// One scripted answer.
#[derive(Clone)]
enum Step {
    Reply(u16, Vec<(&'static str, String)>, String),
    Stall(Duration),
    Truncated,
    Huge(usize),
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Step>>,
    /// (method, path+query, authorization, body) of every request seen.
    seen: Mutex<Vec<(String, String, String, String)>>,
    comments: Mutex<HashMap<String, String>>,
}

fn incident() -> Value {
    json!({
        "id": INCIDENT, "name": "73e01a99-5cd7-4139-a149-9f2736ff2ab5",
        "etag": "\"0300bf09-0000-0000-0000-5c37296e0000\"",
        "type": "Microsoft.SecurityInsights/Incidents",
        "properties": {"title": "t", "severity": "Medium", "status": "New", "incidentNumber": 1}
    })
}

async fn read_request(
    stream: &mut tokio::net::TcpStream,
) -> Option<(String, String, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let mut auth = String::new();
    let mut length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = v.trim().to_string(),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some((method, target, auth, body))
}

async fn answer(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// The default, well-behaved answer for a request.
fn normal(fake: &Fake, method: &str, path: &str, body: &str) -> (u16, String) {
    if method == "PUT" && path.contains("/comments/") {
        let id = path
            .split("/comments/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
        let msg: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let created = fake
            .comments
            .lock()
            .unwrap()
            .insert(
                id.clone(),
                msg["properties"]["message"].as_str().unwrap_or("").into(),
            )
            .is_none();
        return (
            if created { 201 } else { 200 },
            json!({"name": id}).to_string(),
        );
    }
    if path.contains("/query") {
        // Log Analytics query API answer shape (SENTINEL.md §3).
        return (200, json!({"tables": [{"name": "PrimaryResult",
            "columns": [{"name": "TimeGenerated", "type": "datetime"}, {"name": "AlertName", "type": "string"}, {"name": "AlertSeverity", "type": "string"}],
            "rows": [["2026-11-28T10:00:00Z", "Beacon <script>", "High"], ["2026-11-27T10:00:00Z", "Scan", "Low"]]}]}).to_string());
    }
    (200, incident().to_string())
}

async fn serve(fake: Arc<Fake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let fake = fake.clone();
            tokio::spawn(async move {
                let Some((method, path, auth, body)) = read_request(&mut stream).await else {
                    return;
                };
                fake.seen
                    .lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), auth, body.clone()));
                let step = fake.script.lock().unwrap().pop_front();
                match step {
                    None => {
                        let (status, text) = normal(&fake, &method, &path, &body);
                        answer(&mut stream, status, &[], text.as_bytes()).await;
                    }
                    Some(Step::Reply(status, headers, text)) => {
                        if status == 503 && method == "PUT" {
                            // Ambiguous failure: the write landed, the answer says otherwise.
                            normal(&fake, &method, &path, &body);
                        }
                        answer(&mut stream, status, &headers, text.as_bytes()).await;
                    }
                    Some(Step::Stall(d)) => {
                        tokio::time::sleep(d).await;
                        answer(&mut stream, 200, &[], incident().to_string().as_bytes()).await;
                    }
                    Some(Step::Truncated) => {
                        let text = incident().to_string();
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", text.len());
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&text.as_bytes()[..text.len() / 3]).await;
                        let _ = stream.shutdown().await;
                    }
                    Some(Step::Huge(n)) => {
                        let text = format!("{{\"value\": \"{}\"}}", "x".repeat(n));
                        answer(&mut stream, 200, &[], text.as_bytes()).await;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Hands out `token-1`, then `token-2`, …; counts the asks.
#[derive(Debug, Default)]
struct Tokens(Mutex<u32>);

#[async_trait]
impl TokenCredential for Tokens {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        Ok(AccessToken::new(
            format!("token-{n}"),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
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

async fn setup(script: Vec<Step>) -> (Arc<Fake>, SentinelRest, Arc<Tokens>, IncidentId) {
    let fake = Arc::new(Fake::default());
    fake.script.lock().unwrap().extend(script);
    let endpoint = serve(fake.clone()).await;
    let tokens = Arc::new(Tokens::default());
    let sentinel = SentinelRest::with_options(&endpoint, tokens.clone(), options()).unwrap();
    (fake, sentinel, tokens, IncidentId::parse(INCIDENT).unwrap())
}

fn reply(status: u16, body: &str) -> Step {
    Step::Reply(status, vec![], body.to_string())
}

#[tokio::test]
async fn throttling_honours_retry_after_within_its_bound() {
    let (fake, sentinel, _, id) = setup(vec![Step::Reply(
        429,
        vec![("retry-after", "1".into())],
        "{}".into(),
    )])
    .await;
    let started = Instant::now();
    let incident = sentinel.get(&id).await.unwrap();
    assert_eq!(incident.properties.severity, Severity::Medium);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
    let seen = fake.seen.lock().unwrap()[0].1.clone();
    assert!(
        seen.contains(&format!("api-version={SENTINEL_API_VERSION}")),
        "{seen}"
    );

    // A Retry-After past the bound is not slept through: the host retries the message later.
    let (fake, sentinel, _, id) = setup(vec![Step::Reply(
        429,
        vec![("retry-after", "3600".into())],
        "{}".into(),
    )])
    .await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(err.to_string().contains("over the 3s bound"), "{err}");
    assert_eq!(fake.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_with_a_redacted_reason() {
    let (fake, sentinel, _, id) = setup(vec![reply(503, "{}"), reply(500, "{}")]).await;
    sentinel.get(&id).await.unwrap();
    assert_eq!(fake.seen.lock().unwrap().len(), 3);

    let leak = r#"{"error":{"message":"see https://acct.blob.core.windows.net/c/b?sv=2024&sig=SECRETSIG&se=2030"}}"#;
    let (fake, sentinel, _, id) =
        setup(vec![reply(500, leak), reply(502, leak), reply(503, leak)]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PortError::Transient(_)), "{text}");
    assert!(
        text.contains("after 3 attempts") && text.contains("503"),
        "{text}"
    );
    assert!(!text.contains("SECRETSIG"), "{text}");
    assert_eq!(fake.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn client_errors_are_classified_and_not_retried() {
    let conflict = r#"{"error":{"code":"Conflict","message":"New version of resource exists. Data was not saved"}}"#;
    let (fake, sentinel, _, id) = setup(vec![reply(409, conflict)]).await;
    let incident: socwire::sentinel::Incident = serde_json::from_value(incident()).unwrap();
    let err = sentinel.update(&id, &incident).await.unwrap_err();
    assert!(matches!(err, PortError::Conflict(_)), "{err}");
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        1,
        "a conflict is the caller's to resolve"
    );
    let sent: Value = serde_json::from_str(&fake.seen.lock().unwrap()[0].3).unwrap();
    assert_eq!(
        sent["etag"], "\"0300bf09-0000-0000-0000-5c37296e0000\"",
        "etag in the body"
    );

    for (status, check) in [(403u16, "403"), (404, "404"), (400, "400")] {
        let (fake, sentinel, _, id) = setup(vec![reply(status, r#"{"error":{"code":"X"}}"#)]).await;
        let err = sentinel.get(&id).await.unwrap_err();
        assert!(err.to_string().contains(check), "{err}");
        assert!(!err.is_transient(), "{status} is not retried: {err}");
        if status == 404 {
            assert!(matches!(err, PortError::NotFound(_)));
        }
        assert_eq!(fake.seen.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let (fake, sentinel, tokens, id) = setup(vec![reply(
        401,
        r#"{"error":{"code":"ExpiredAuthenticationToken"}}"#,
    )])
    .await;
    sentinel.get(&id).await.unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].2, "Bearer token-1");
    assert_eq!(seen[1].2, "Bearer token-2");
    assert_eq!(*tokens.0.lock().unwrap(), 2);
    // A second 401 after the refresh is a clear, permanent failure.
    let (_, sentinel, _, id) = setup(vec![reply(401, "{}"), reply(401, "{}")]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(err.to_string().contains("after a fresh token"), "{err}");
}

#[tokio::test]
async fn a_stalled_or_truncated_answer_is_retried() {
    let (fake, sentinel, _, id) =
        setup(vec![Step::Stall(Duration::from_secs(3)), Step::Truncated]).await;
    sentinel.get(&id).await.unwrap();
    assert_eq!(fake.seen.lock().unwrap().len(), 3);

    let (_, sentinel, _, id) = setup(vec![Step::Truncated, Step::Truncated, Step::Truncated]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Transient(_)), "{err}");
    assert!(
        err.to_string().contains("cut short") || err.to_string().contains("complete JSON"),
        "{err}"
    );

    let (_, sentinel, _, id) = setup(vec![Step::Stall(Duration::from_secs(3)); 3]).await;
    let err = sentinel.get(&id).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_huge_answer_is_refused_without_reading_it_all() {
    let (_, sentinel, _, id) = setup(vec![Step::Huge(4 * 1024 * 1024)]).await;
    let err = sentinel.alerts(&id).await.unwrap_err();
    assert!(matches!(err, PortError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("over 1048576 bytes"), "{err}");
}

#[tokio::test]
async fn a_comment_put_twice_after_an_ambiguous_failure_is_one_comment() {
    let (fake, sentinel, _, id) = setup(vec![reply(503, "{}")]).await;
    sentinel
        .put_comment(&id, "c0ffee00-0000-4000-8000-000000000001", "<p>hi</p>")
        .await
        .unwrap();
    sentinel
        .put_comment(&id, "c0ffee00-0000-4000-8000-000000000001", "<p>hi</p>")
        .await
        .unwrap();
    assert_eq!(fake.comments.lock().unwrap().len(), 1);
    assert_eq!(fake.seen.lock().unwrap().len(), 3);
    for bad in ["..", ".", "a/b", "a%2Fb"] {
        assert!(sentinel.put_comment(&id, bad, "x").await.is_err(), "{bad}");
    }
    // Paths are built from validated segments: what reached the server is the incident's own.
    for (_, path, _, _) in fake.seen.lock().unwrap().iter() {
        assert!(path.starts_with(&format!("{INCIDENT}/comments/")), "{path}");
    }
}

#[tokio::test]
async fn log_analytics_answers_typed_questions_with_escaped_kql() {
    let fake = Arc::new(Fake::default());
    fake.script.lock().unwrap().push_back(Step::Reply(
        429,
        vec![("retry-after", "0".into())],
        "{}".into(),
    ));
    let endpoint = serve(fake.clone()).await;
    let ws = "11111111-2222-3333-4444-555555555555";
    let la = LogAnalyticsQuery::with_options(&endpoint, ws, Arc::new(Tokens::default()), options())
        .unwrap();
    let host = "fin\"ws | union *; \n take";
    let answer = la
        .ask(&Question::RecentAlertsForHost {
            host: host.into(),
            days: 7,
        })
        .await
        .unwrap();
    assert_eq!(answer.rows.len(), 2);
    assert_eq!(answer.rows[0]["AlertName"], "Beacon <script>");
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "429 then success");
    assert_eq!(seen[1].1, format!("/v1/workspaces/{ws}/query"));
    let sent: Value = serde_json::from_str(&seen[1].3).unwrap();
    assert_eq!(sent["timespan"], "P7D");
    let kql = sent["query"].as_str().unwrap();
    assert!(kql.contains(r#""fin\"ws | union *; \n take""#), "{kql}");
    assert_eq!(kql, answer.query, "the finding cites the query that ran");

    // A partial error in a 200 answer is a clear failure; a malformed workspace id is refused.
    fake.script.lock().unwrap().push_back(reply(
        200,
        r#"{"tables":[],"error":{"code":"PartialError","message":"query failed"}}"#,
    ));
    let err = la
        .ask(&Question::ThreatIndicator {
            indicator: Indicator {
                kind: "ipv4".into(),
                value: "203.0.113.7".into(),
            },
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("query failed"), "{err}");
    assert!(LogAnalyticsQuery::new(&endpoint, "../x", Arc::new(Tokens::default())).is_err());
}

#[tokio::test]
async fn the_incident_list_follows_next_links_on_the_same_list_only() {
    let fake = Arc::new(Fake::default());
    let endpoint = serve(fake.clone()).await;
    let list_path = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents";
    let page = |next: Option<String>| {
        let mut v = json!({"value": [incident(), {"id": "not an incident"}]});
        if let Some(n) = next {
            v["nextLink"] = json!(n);
        }
        reply(200, &v.to_string())
    };
    fake.script.lock().unwrap().extend([
        page(Some(format!(
            "{endpoint}{list_path}?api-version={SENTINEL_API_VERSION}&$skipToken=abc"
        ))),
        page(None),
    ]);
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
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let first = url::Url::parse(&format!("{endpoint}{}", seen[0].1)).unwrap();
    let filter: HashMap<String, String> = first.query_pairs().into_owned().collect();
    assert_eq!(
        filter["$filter"],
        "properties/lastModifiedTimeUtc ge 2026-11-29T10:00:00Z"
    );
    assert!(seen[1].1.contains("skipToken=abc"), "{}", seen[1].1);

    // A nextLink elsewhere (another origin) is never followed with our token.
    fake.seen.lock().unwrap().clear();
    fake.script
        .lock()
        .unwrap()
        .push_back(page(Some(format!("https://attacker.example{list_path}"))));
    let err = sentinel
        .list_modified_since(&ws, since, 100)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not followed"), "{err}");
    assert_eq!(fake.seen.lock().unwrap().len(), 1);
}
