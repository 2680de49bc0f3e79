//! End-to-end tests: the real `socwire` binary runs the function set under its local host,
//! with the handler as a child process and durable SQLite brokers in a temporary directory.

use serde_json::Value;
use socwire::local::SqliteIncidentStore;
use socwire::ports::IncidentStore;
use socwire::sentinel::Severity;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn app_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn socwire(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socwire"));
    cmd.env("SOCWIRE_DATA_DIR", data)
        .env_remove("SOCWIRE_LOG")
        .current_dir(app_root());
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "command failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn up_until_idle(data: &Path, extra: &[&str]) -> String {
    let out = run_ok(
        socwire(data)
            .args(["up", "--exit-when-idle", "--port", "0", "--lease-secs", "2"])
            .args(extra),
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The summary row for `function`: delivered, retried, poisoned, dead-lettered, lost.
fn counts(stdout: &str, function: &str) -> [u64; 5] {
    let line = stdout
        .lines()
        .find(|l| {
            l.split_whitespace().next() == Some(function) && l.split_whitespace().count() == 6
        })
        .unwrap_or_else(|| panic!("no summary row for {function} in:\n{stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    [n[0], n[1], n[2], n[3], n[4]]
}

fn status_json(data: &Path) -> Value {
    let out = run_ok(socwire(data).args(["status", "--json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn demo_runs_to_completion_and_triages_each_incident_once() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = up_until_idle(dir.path(), &["--demo"]);
    assert_eq!(
        counts(&stdout, "incident-created"),
        [5, 0, 0, 0, 0],
        "{stdout}"
    );
    assert_eq!(
        counts(&stdout, "triage-incident"),
        [5, 0, 0, 0, 0],
        "{stdout}"
    );

    let store = SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap();
    let get = |n: usize| {
        let id = socwire::demo::incident_id(n);
        let comments = store.comments(&id).unwrap().len();
        (id, comments)
    };
    // 1: known C2 domain -> High with one comment; 3: allow-listed scanners -> lowered to Low;
    // 4: nothing known -> untouched, no comment.
    let (id1, c1) = get(1);
    assert_eq!(
        store.get(&id1).await.unwrap().properties.severity,
        Severity::High
    );
    assert_eq!(c1, 1);
    let (id3, c3) = get(3);
    assert_eq!(
        store.get(&id3).await.unwrap().properties.severity,
        Severity::Low
    );
    assert_eq!(c3, 1);
    let (id4, c4) = get(4);
    assert_eq!(
        store.get(&id4).await.unwrap().properties.severity,
        Severity::Medium
    );
    assert_eq!(c4, 0);
    // The report the comment links to exists.
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("reports/triage"))
        .unwrap()
        .collect();
    assert_eq!(reports.len(), 4, "one report per incident that mattered");

    // Running again delivers nothing new: every broker was drained and checkpointed.
    let again = up_until_idle(dir.path(), &[]);
    assert_eq!(counts(&again, "triage-incident")[0], 0, "{again}");
}

#[test]
fn bad_queue_message_is_poisoned_with_its_reason_and_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut send = socwire(dir.path());
    send.args(["send", "queue", "triage-requests"])
        .stdin(Stdio::piped());
    let mut child = send.stdout(Stdio::null()).spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"this is not an incident id")
        .unwrap();
    assert!(child.wait().unwrap().success());

    let stdout = up_until_idle(dir.path(), &[]);
    // host.json maxDequeueCount is 5: four retries, then poison.
    assert_eq!(
        counts(&stdout, "triage-incident"),
        [0, 4, 1, 0, 0],
        "{stdout}"
    );
    let list = run_ok(socwire(dir.path()).args(["dlq", "list", "--json"]));
    let letters: Value = serde_json::from_slice(&list.stdout).unwrap();
    let letter = &letters.as_array().unwrap()[0];
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("not a Sentinel incident ARM id"),
        "{letter}"
    );
    let id = letter["id"].as_str().unwrap().to_string();
    run_ok(socwire(dir.path()).args(["dlq", "replay", &id]));
    let stdout = up_until_idle(dir.path(), &[]);
    assert_eq!(
        counts(&stdout, "triage-incident")[2],
        1,
        "replayed message is poisoned again: {stdout}"
    );
}

#[test]
fn malformed_event_grid_event_is_dead_lettered_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut send = socwire(dir.path());
    send.args(["send", "eventgrid", "sentinel-incidents"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = send.spawn().unwrap();
    use std::io::Write;
    let event = r#"{"id":"e-1","subject":"hello","eventType":"Sentinel.IncidentCreated","eventTime":"2026-11-22T10:00:00Z","data":{"objectSchemaType":"Alert"}}"#;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let stdout = up_until_idle(dir.path(), &[]);
    assert_eq!(
        counts(&stdout, "incident-created"),
        [0, 0, 0, 1, 0],
        "{stdout}"
    );
    let list = run_ok(socwire(dir.path()).args(["dlq", "list", "--json"]));
    let letters: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("400"),
        "{letters}"
    );
    assert!(
        letters[0]["description"]
            .as_str()
            .unwrap()
            .contains("not an Incident"),
        "{letters}"
    );
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(data: &Path, extra: &[&str]) -> Self {
        let mut child = socwire(data)
            .args(["up", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a line containing all of `needles`; the timeout only bounds a hung test.
    fn wait_for(&self, needles: &[&str]) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("host output stopped");
            if needles.iter().all(|n| line.contains(n)) {
                return line;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn killed_host_restarts_with_nothing_lost_and_no_effect_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let incidents = 120;
    let run = Running::start(
        dir.path(),
        &["--demo", "--incidents", &incidents.to_string()],
    );
    // Let some triage happen, then kill -9 mid-run.
    for _ in 0..10 {
        run.wait_for(&["triage-incident", " ok "]);
    }
    drop(run); // SIGKILL
    let stdout = up_until_idle(dir.path(), &[]);
    let status = status_json(dir.path());
    let store = SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap();
    let ledger = socwire::local::SqliteLedger::open(&dir.path().join("ledger.sqlite3")).unwrap();
    assert_eq!(
        ledger.count("triage:").unwrap(),
        incidents as u64,
        "every incident triaged: {stdout}\n{status}"
    );
    for n in 1..=incidents {
        let id = socwire::demo::incident_id(n);
        let comments = store.comments(&id).unwrap().len();
        let expected = if n % 5 == 4 { 0 } else { 1 }; // the 4th demo incident has nothing known
        assert_eq!(comments, expected, "incident {n}");
    }
    let poisoned = counts(&stdout, "triage-incident")[2];
    assert_eq!(poisoned, 0, "{stdout}");
    assert!(status.to_string().contains("triage-requests"), "{status}");
}

#[test]
fn webhook_needs_the_function_key_and_queues_triage() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(dir.path(), &[]);
    let line = run.wait_for(&["HTTP triggers"]);
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let key = std::fs::read_to_string(dir.path().join("function-key")).unwrap();
    let url = format!("{base}/api/playbook/triage");
    let body = format!(
        "{{\"incidentArmId\":\"{}\"}}",
        socwire::demo::incident_id(1)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let (no_key, with_key) = rt.block_on(async {
        let a = client
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let b = client
            .post(&url)
            .header("x-functions-key", key.trim())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        (a, (b.status().as_u16(), b.text().await.unwrap()))
    });
    assert_eq!(no_key, 401);
    assert_eq!(with_key.0, 202, "{}", with_key.1);
    // The request reached the queue and the triage function (which fails: no such incident
    // in this empty store, so it is retried, as the host would).
    run.wait_for(&["triage-incident", "not found"]);
}

fn table_rows(data: &Path, stream: &str) -> Vec<Value> {
    socwire::local::SqliteTables::open(&data.join("tables.sqlite3"))
        .unwrap()
        .rows(stream)
        .unwrap()
}

#[test]
fn alert_stream_writes_every_alert_in_one_final_row_sets_bad_alerts_aside_and_ignores_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    run_ok(
        socwire(dir.path())
            .args([
                "alerts", "generate", "--alerts", "3000", "--chains", "3", "--seed", "5",
                "--hours", "72",
            ])
            .arg("--output")
            .arg(&alerts),
    );
    // Fresh times: the function refuses alerts more than 30 days old. Three days of alerts
    // through the 24-hour window: most groups close and become final rows.
    let now = chrono::Utc::now();
    let mut text = std::fs::read_to_string(&alerts).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let t0 =
        chrono::DateTime::parse_from_rfc3339(first["TimeGenerated"].as_str().unwrap()).unwrap();
    let shift = now.signed_duration_since(t0) - chrono::Duration::hours(73);
    text = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(v["TimeGenerated"].as_str().unwrap())
                .unwrap()
                + shift;
            v["TimeGenerated"] = Value::String(t.to_rfc3339());
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bad = serde_json::json!({"AlertId": "bad-1", "TimeGenerated": now.to_rfc3339(), "AlertName": "x", "Severity": "High", "Domain": "Cloud", "SrcIp": "10.0.0.1"});
    text.push_str(&format!("\n{bad}\nnot json at all\n"));
    std::fs::write(&alerts, &text).unwrap();
    // One partition (one plant): each partition keeps its own window.
    let send = |data: &Path| {
        run_ok(
            socwire(data)
                .args([
                    "send",
                    "eventhub",
                    "alerts",
                    "--lines",
                    "--partition-key",
                    "plant-1",
                ])
                .arg("--file")
                .arg(&alerts),
        )
    };
    send(dir.path());
    let stdout = up_until_idle(dir.path(), &["--quiet"]);
    let [delivered, _, _, _, lost] = counts(&stdout, "alert-stream");
    assert!(delivered >= 3002 && lost == 0, "{stdout}");

    let rows = table_rows(dir.path(), "Custom-AlertSubgraphs");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["RowKey"] == r["SubgraphId"]
        && r["Reasons"].as_array().is_some_and(|a| !a.is_empty())));
    // Final rows only, each alert in one of them; the rest is still held in the window.
    let in_rows: u64 = rows.iter().map(|r| r["AlertCount"].as_u64().unwrap()).sum();
    assert!(in_rows > 1500 && in_rows <= 3000, "{in_rows}");
    let best = rows
        .iter()
        .max_by(|a, b| {
            a["Score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["Score"].as_f64().unwrap())
        })
        .unwrap();
    assert!(
        best["LongestPath"].as_u64().unwrap() >= 2,
        "the best row is a multi-hop chain: {best}"
    );
    let rejects = table_rows(dir.path(), "Custom-AlertRejects");
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(
        rejects
            .iter()
            .any(|r| r["AlertId"] == "bad-1"
                && r["Reason"].as_str().unwrap().contains("not IT or OT"))
    );
    assert!(rejects
        .iter()
        .any(|r| r["Reason"].as_str().unwrap().contains("not JSON")));

    // The same alerts again, after a restart: the window came back from the journal; alerts
    // still held are duplicates, older ones are set aside as older than the window; no row
    // is written twice.
    send(dir.path());
    let stdout = up_until_idle(dir.path(), &["--quiet"]);
    assert_eq!(counts(&stdout, "alert-stream")[4], 0, "{stdout}");
    assert_eq!(
        table_rows(dir.path(), "Custom-AlertSubgraphs").len(),
        rows.len(),
        "redelivery wrote no new rows"
    );
    assert!(table_rows(dir.path(), "Custom-AlertRejects")
        .iter()
        .all(|r| ["not IT or OT", "not JSON", "older than the window"]
            .iter()
            .any(|why| r["Reason"].as_str().unwrap().contains(why))));
}
