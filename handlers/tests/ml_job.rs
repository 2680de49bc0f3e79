//! `socwire ml fine-tune`, the command an Azure ML job runs, as a process: it trains the same
//! model as the library, prints its telemetry and result, and sends the telemetry to an Event
//! Hub over REST with the Azure ML node's managed identity (`MSI_ENDPOINT` / `MSI_SECRET` /
//! `DEFAULT_IDENTITY_CLIENT_ID`), both played by a local fault server. Telemetry that cannot be
//! sent never fails the job.
#![cfg(feature = "local-trainer")]

mod support;

use axum::http::Method;
use serde_json::{json, Value};
use socwire::ml::job::telemetry_event;
use socwire_trainer::{
    fine_tune, pretrain_base_model_with, DataConfig, HyperParameters, JobResult, JobSpec,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use support::fault_server::{Fault, FaultServer, Seen};
use tempfile::TempDir;

const JOB: &str = "socwire-ft-0123456789abcdef";
const HUB_PATH: &str = "/training-telemetry/messages";

/// A tiny base model, pre-trained once per test process.
fn base_model() -> PathBuf {
    static BASE: OnceLock<TempDir> = OnceLock::new();
    let dir = BASE.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        pretrain_base_model_with(7, &DataConfig::tiny(), &dir.path().join("base.safetensors"))
            .unwrap();
        dir
    });
    dir.path().join("base.safetensors")
}

fn hyper() -> HyperParameters {
    HyperParameters {
        epochs: 2,
        ..HyperParameters::default()
    }
}

/// The identity endpoint and the Event Hub; the hub answers `hub_status`.
async fn azure(hub_status: u16) -> FaultServer {
    FaultServer::start(move |seen: &Seen| {
        if seen.path == "/msi/token" {
            let expires = chrono::Utc::now().timestamp() + 3600;
            let body = json!({ "access_token": "tok-1", "expires_on": expires.to_string(),
                               "resource": "https://eventhubs.azure.net", "token_type": "Bearer" });
            (200, vec![], body.to_string().into_bytes())
        } else if seen.path == HUB_PATH {
            (hub_status, vec![], Vec::new())
        } else {
            (404, vec![], Vec::new())
        }
    })
    .await
}

/// Runs the job against `server` (identity endpoint and hub); returns its output, its stderr
/// and its `--out` folder.
async fn run_job(server: &FaultServer) -> (Output, String, TempDir) {
    let out = TempDir::new().unwrap();
    let (server, dir) = (server.clone(), out.path().to_path_buf());
    let run = tokio::task::spawn_blocking(move || job_process(&server, &dir))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    (run, stderr, out)
}

fn job_process(server: &FaultServer, out: &Path) -> Output {
    let h = hyper();
    std::process::Command::new(env!("CARGO_BIN_EXE_socwire"))
        .args(["ml", "fine-tune", "--job-id", JOB, "--base-model"])
        .arg(base_model())
        .args(["--epochs", &h.epochs.to_string()])
        .args(["--learning-rate", &h.learning_rate.to_string()])
        .args(["--batch-size", &h.batch_size.to_string()])
        .args(["--seed", "8", "--out"])
        .arg(out)
        .arg("--telemetry-eventhub")
        .arg(format!("{}/training-telemetry", server.url))
        .env("MSI_ENDPOINT", format!("{}/msi/token", server.url))
        .env("MSI_SECRET", "node-secret")
        .env("DEFAULT_IDENTITY_CLIENT_ID", "client-of-the-cluster")
        .env_remove("AZURE_CLIENT_ID")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_trains_like_the_library_and_sends_every_event_once_after_a_throttle() {
    let server = azure(201).await;
    server.script(
        Method::POST,
        HUB_PATH,
        [Fault::Status(
            503,
            vec![("retry-after", "0".into())],
            "busy",
        )],
    );
    let (run, stderr, out) = run_job(&server).await;

    // The same run through the library.
    let library = TempDir::new().unwrap();
    let mut expected = Vec::new();
    let spec = JobSpec {
        seed: 8,
        base_model: base_model(),
        hyper: hyper(),
        work_dir: library.path().to_path_buf(),
    };
    let reference = fine_tune(&spec, &AtomicBool::new(false), &mut |p| {
        expected.push(telemetry_event(JOB, &p).to_string())
    })
    .unwrap();

    let stdout = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, events) = lines.split_last().unwrap();
    // Compared as text: the same numbers print the same digits (parsing back may not be exact).
    assert_eq!(events, expected);
    let result: JobResult = serde_json::from_str(last).unwrap();
    assert_eq!(
        result.average_precision_after,
        reference.average_precision_after
    );
    let out = out.path();
    assert!(out.join("model.safetensors").is_file() && out.join("eval.safetensors").is_file());
    // result.json carries the AP to export-model in Azure as locally (issue #23, finding 3).
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(
        summary["averagePrecisionAfter"].as_f64(),
        Some(result.average_precision_after)
    );
    assert_eq!(
        summary["averagePrecisionBefore"].as_f64(),
        Some(result.average_precision_before)
    );

    // Tokens came from the Azure ML identity endpoint, asked the way MSAL asks.
    let tokens = server.seen_on(Method::GET, "/msi/token");
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert_eq!(t.header("secret"), Some("node-secret"));
        assert_eq!(t.param("api-version").as_deref(), Some("2017-09-01"));
        assert_eq!(
            t.param("resource").as_deref(),
            Some("https://eventhubs.azure.net")
        );
        assert_eq!(
            t.param("clientid").as_deref(),
            Some("client-of-the-cluster")
        );
    }

    // Batches: the throttled first one is sent again unchanged; the accepted ones hold every
    // event exactly once, in order, keyed to the job's partition.
    let posts = server.seen_on(Method::POST, HUB_PATH);
    assert!(posts.len() >= 2, "{} posts", posts.len());
    assert_eq!(posts[0].body, posts[1].body);
    let mut delivered = Vec::new();
    for p in &posts[1..] {
        assert_eq!(p.header("authorization"), Some("Bearer tok-1"));
        assert_eq!(
            p.header("content-type"),
            Some("application/vnd.microsoft.servicebus.json")
        );
        assert_eq!(p.param("api-version").as_deref(), Some("2014-01"));
        let batch: Vec<Value> = serde_json::from_slice(&p.body).unwrap();
        for e in batch {
            assert_eq!(e["BrokerProperties"]["PartitionKey"], JOB);
            let body = e["Body"].as_str().unwrap();
            socwire::ml::telemetry::parse_event(body).unwrap();
            delivered.push(body.to_string());
        }
    }
    assert_eq!(delivered, expected);
    assert!(
        stderr.contains(&format!("telemetry: {} event(s) sent", expected.len())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_the_hub_refuses_is_reported_and_the_job_still_succeeds() {
    let server = azure(403).await;
    let (_, stderr, out) = run_job(&server).await;
    assert!(out.path().join("model.safetensors").is_file());
    assert!(
        stderr.contains("not sent") && stderr.contains("403"),
        "{stderr}"
    );
    assert!(stderr.contains("telemetry: 0 event(s) sent"), "{stderr}");
    // Refused for good: a 403 is not retried, so no batch was sent twice.
    let posts = server.seen_on(Method::POST, HUB_PATH);
    assert!(!posts.is_empty());
    let mut bodies: Vec<_> = posts.iter().map(|p| p.body.clone()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), posts.len());
}
