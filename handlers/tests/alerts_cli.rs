//! `socwire alerts prioritise` as a user runs it: any format in, rows out, what was set aside
//! written with its line, and a closed pipe ends it quietly.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn socwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socwire"))
}

/// Generated alerts (family A) as JSON lines in `dir`.
fn generated(dir: &std::path::Path, alerts: usize) -> std::path::PathBuf {
    let path = dir.join("alerts.jsonl");
    let out = socwire()
        .args([
            "alerts",
            "generate",
            "--alerts",
            &alerts.to_string(),
            "--chains",
            "3",
        ])
        .arg("--output")
        .arg(&path)
        .output()
        .expect("socwire runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn mixed_formats_go_in_and_bad_lines_come_out_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let lines = [
        json!({"TimeGenerated": "2026-11-20T10:00:00Z", "AlertId": "a1", "AlertName": "SMB lateral movement",
               "Severity": "High", "Domain": "IT", "SrcIp": "10.0.0.5", "DstIp": "10.0.0.9"}).to_string(),
        "not json at all".to_string(),
        json!({"timestamp": "2026-11-20T10:01:00.000000+0000", "event_type": "alert", "src_ip": "10.0.0.9",
               "src_port": 51000, "dest_ip": "203.0.113.7", "dest_port": 4444, "proto": "TCP",
               "alert": {"signature": "ET TROJAN Example beacon", "signature_id": 1, "category": "A Network Trojan was detected", "severity": 1}}).to_string(),
        json!({"timestamp": "2026-11-20T10:02:00.000+0000", "id": "17.1",
               "rule": {"id": "5402", "level": 12, "description": "Successful sudo to ROOT executed.", "groups": ["sudo"]},
               "agent": {"name": "web-01", "ip": "10.0.0.9"}}).to_string(),
        json!({"event_type": "flow", "src_ip": "10.0.0.1"}).to_string(),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let output = dir.path().join("rows.jsonl");
    let out = socwire()
        .args(["alerts", "prioritise", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("socwire runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 set aside while reading"), "{stdout}");
    let rejects: Vec<Value> = std::fs::read_to_string(dir.path().join("rows.rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rejects
            .iter()
            .map(|r| r["Line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 5]
    );
    assert!(rejects[1]["Reason"]
        .as_str()
        .unwrap()
        .contains("is not an alert"));
    let rows: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let held: u64 = rows.iter().map(|r| r["AlertCount"].as_u64().unwrap()).sum();
    assert_eq!(held, 3, "every accepted alert is in a row");
    // The beacon is compromise evidence about its source, 10.0.0.9, whatever way it went.
    let evidence: Vec<&Value> = rows
        .iter()
        .flat_map(|r| r["Evidence"].as_array().into_iter().flatten())
        .collect();
    assert!(
        evidence
            .iter()
            .any(|e| e["Host"] == "10.0.0.9" && e["Stage"] == "command and control"),
        "{rows:?}"
    );
}

#[test]
fn writing_into_a_closed_pipe_ends_quietly_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000);
    let mut child = socwire()
        .args(["alerts", "prioritise", "--output", "-", "--input"])
        .arg(&input)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socwire runs");
    // `| head -1`: one row read, then the reader goes away.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"TimeGenerated\""), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_pretty_printed_json_document_is_read_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.json");
    let mut f = std::fs::File::create(&input).unwrap();
    let doc = json!({"records": [
        {"Type": "SecurityAlert", "TimeGenerated": "2026-11-20T10:00:00Z", "SystemAlertId": "s1",
         "AlertName": "Suspicious PowerShell", "AlertSeverity": "Medium", "CompromisedEntity": "ws-7"},
        {"Type": "Heartbeat", "TimeGenerated": "2026-11-20T10:00:00Z"}
    ]});
    writeln!(f, "{}", serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let out = socwire()
        .args(["alerts", "prioritise", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("rows.jsonl"))
        .output()
        .expect("socwire runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 set aside while reading"), "{stdout}");
    assert!(stdout.contains("1 accepted"), "{stdout}");
}

#[test]
fn a_verdict_on_a_row_moves_rows_of_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 5000);
    let rows = dir.path().join("rows.jsonl");
    let store = dir.path().join("verdicts.json");
    let prioritise = |feedback: bool| -> Vec<Value> {
        let mut cmd = socwire();
        cmd.args(["alerts", "prioritise", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&rows);
        if feedback {
            cmd.arg("--feedback").arg(&store);
        }
        let out = cmd.output().expect("socwire runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&rows)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let before = prioritise(false);
    let top = &before[0];
    let key = top["RowKey"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let out = socwire()
            .args(["alerts", "feedback", &key, "--verdict", "benign", "--rows"])
            .arg(&rows)
            .arg("--store")
            .arg(&store)
            .output()
            .expect("socwire runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = prioritise(true);
    let again = after
        .iter()
        .find(|r| r["RowKey"] == key)
        .expect("the same row");
    let (score_before, score_after) = (
        top["Score"].as_f64().unwrap(),
        again["Score"].as_f64().unwrap(),
    );
    assert!(
        (score_before - 8.0 - score_after).abs() < 1e-6,
        "{score_before} → {score_after}"
    );
    assert!(again["Reasons"].to_string().contains("2 time(s) benign"));
    // Rows of other shapes score as they did.
    for r in before
        .iter()
        .skip(1)
        .take(20)
        .filter(|r| r["Shape"] != top["Shape"])
    {
        let same = after
            .iter()
            .find(|a| a["RowKey"] == r["RowKey"])
            .expect("the row");
        assert_eq!(same["Score"], r["Score"]);
    }
    // An unknown row is refused, saying where it looked.
    let out = socwire()
        .args([
            "alerts",
            "feedback",
            "no-such-row",
            "--verdict",
            "benign",
            "--rows",
        ])
        .arg(&rows)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no row with RowKey"));
}
