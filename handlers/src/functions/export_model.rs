//! `export-model` (Service Bus trigger, Subject `ExportModel`): registers a Completed job's
//! `model` output as a model version with `metadata.json` (interface, AP before/after,
//! hyper-parameters, lineage) and emits `socwire.ModelExported`.
//!
//! - socwire's trainer: exports ONNX from `model.safetensors`; AP from the job's `result.json`.
//! - `trainer: "container"`: registers the job's own artifacts (ONNX when it wrote
//!   `model.onnx`, whose interface is read; otherwise the files as they are, each with its
//!   sha-256); AP from `eval.json` or the job's MLflow metrics (the evaluation contract). A job
//!   that broke the contract is set aside with the reason, reported as `socwire.FineTuneFailed`,
//!   and a pipeline's cluster is scaled back.
//!
//! The version is derived from the job, and the ledger records the export per job and model,
//! so a repeat changes nothing. The output is read streamed, up to `SOCWIRE_ML_MAX_UNPACKED_BYTES`.

use super::refuse;
use super::reject::RejectRecord;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{expect_subject, ExportModel};
use crate::ml::container::{self, Evaluation, Reported};
use crate::ml::{event, model_version_for, scale_back_pipeline};
use crate::ports::{JobInfo, ModelRegistration, PortError};
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Function name.
pub const NAME: &str = "export-model";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "command",
    kind: "serviceBusTrigger",
};
const EVENTS_OUT: &str = "events";
/// Files a version folder of socwire's trainer holds (a container job's holds its own files
/// and `metadata.json`).
pub const ARTEFACTS: &[&str] = &[
    "model.onnx",
    "model.safetensors",
    "eval.safetensors",
    "metadata.json",
];

fn parse_tag(tags: &BTreeMap<String, String>, key: &str) -> Value {
    tags.get(key)
        .map(|v| serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())))
        .unwrap_or(Value::Null)
}

/// What an export adds to the metadata beyond the common fields.
struct Exported {
    before: f64,
    after: f64,
    fields: serde_json::Map<String, Value>,
    format: &'static str,
}

fn result_json(output: &Path) -> Result<Reported, String> {
    let path = output.join("result.json");
    if std::fs::metadata(&path).map_or(true, |m| m.len() > container::MAX_EVAL_JSON_BYTES) {
        return Err("the job's output has no result.json (socwire ml fine-tune writes it)".into());
    }
    let v: Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    match (
        v["averagePrecisionBefore"].as_f64(),
        v["averagePrecisionAfter"].as_f64(),
    ) {
        (Some(before), Some(after)) => Ok(Reported { before, after }),
        _ => Err("the job's result.json has no averagePrecisionBefore/After".into()),
    }
}

/// socwire's trainer: ONNX from the safetensors model, AP from result.json.
async fn export_socwire(output: &Path, folder: &Path) -> Result<Exported, FunctionError> {
    let ap = result_json(output).map_err(|e| refuse(format!("ExportModel: {e}")))?;
    let (model_st, onnx) = (output.join("model.safetensors"), folder.join("model.onnx"));
    let info = tokio::task::spawn_blocking(move || socwire_trainer::export_onnx(&model_st, &onnx))
        .await
        .map_err(|e| FunctionError::Failed(e.to_string()))?
        .map_err(|e| {
            refuse(format!(
                "ExportModel: the job's model cannot be exported: {e}"
            ))
        })?;
    for f in ["model.safetensors", "eval.safetensors"] {
        std::fs::copy(output.join(f), folder.join(f))
            .map_err(|e| refuse(format!("ExportModel: the job's output has no {f}: {e}")))?;
    }
    let mut fields = serde_json::Map::new();
    fields.insert("inputName".into(), json!(info.input_name));
    fields.insert("inputShape".into(), json!(info.input_shape));
    fields.insert("outputName".into(), json!(info.output_name));
    Ok(Exported {
        before: ap.before,
        after: ap.after,
        fields,
        format: "onnx",
    })
}

/// Every file under `dir` (relative, `/`-separated), sorted.
fn files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else if e.file_type()?.is_file() {
                if let Ok(rel) = e.path().strip_prefix(dir) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A container job: its artifacts as they are, AP from the evaluation contract. `Err(Ok(..))`
/// is a broken contract (set aside with the reason), `Err(Err(..))` any other failure.
async fn export_container(
    ctx: &Context,
    job: &JobInfo,
    output: &Path,
    folder: &Path,
) -> Result<Exported, Result<String, FunctionError>> {
    let evaluation = match job.tags.get("evaluation").map(String::as_str) {
        Some("mlflow") => Evaluation::Mlflow,
        _ => Evaluation::EvalJson,
    };
    let ap = match evaluation {
        Evaluation::EvalJson => container::read_eval_json(&output.join("eval.json")),
        Evaluation::Mlflow => {
            let history = |key: &'static str| ctx.ml.metric_history(&job.id, key);
            let before = history(container::MLFLOW_AP_BEFORE)
                .await
                .map_err(|e| Err(e.into()))?;
            let after = history(container::MLFLOW_AP_AFTER)
                .await
                .map_err(|e| Err(e.into()))?;
            container::from_mlflow(&before, &after)
        }
    }
    .map_err(Ok)?;
    let io = |e: std::io::Error| Err(FunctionError::Failed(e.to_string()));
    let names = files(output).map_err(io)?;
    if names.iter().all(|n| n == "eval.json") {
        return Err(Ok(
            "the job wrote no model to {outputs} (only eval.json, or nothing)".into(),
        ));
    }
    let mut listed = Vec::new();
    for name in &names {
        let (from, to) = (output.join(name), folder.join(name));
        // Our metadata.json describes the version; one the job wrote is kept beside it.
        let to = if name == "metadata.json" {
            folder.join("job-metadata.json")
        } else {
            to
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::rename(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            .map_err(io)?;
        let bytes = std::fs::metadata(&to).map_err(io)?.len();
        let sha = crate::ml::staging::sha256_file(&to).map_err(io)?;
        listed.push(json!({ "path": name, "bytes": bytes, "sha256": sha }));
    }
    let mut fields = serde_json::Map::new();
    let onnx = folder.join("model.onnx");
    let format = if onnx.is_file() {
        let info = tokio::task::spawn_blocking(move || socwire_trainer::describe_onnx(&onnx))
            .await
            .map_err(|e| Err(FunctionError::Failed(e.to_string())))?
            .map_err(|e| Ok(format!("the job's model.onnx cannot be read: {e}")))?;
        fields.insert("inputName".into(), json!(info.input_name));
        fields.insert("inputShape".into(), json!(info.input_shape));
        fields.insert("outputName".into(), json!(info.output_name));
        "onnx"
    } else {
        "artifacts"
    };
    fields.insert("files".into(), json!(listed));
    fields.insert("evaluation".into(), json!(evaluation.as_str()));
    fields.insert("command".into(), json!(job.tags.get("containerCommand")));
    Ok(Exported {
        before: ap.before,
        after: ap.after,
        fields,
        format,
    })
}

/// Handles one ExportModel.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER.binding)?;
    expect_subject("ExportModel", t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = ExportModel::parse(&t.body).map_err(refuse)?;
    let job = completed_job(ctx, &cmd).await?;
    let name = cmd
        .model_name
        .clone()
        .or_else(|| job.tags.get("model").cloned())
        .ok_or_else(|| refuse("ExportModel: modelName is required (the job has no model tag)"))?;
    let key = format!("ml:export:v1:{}:{name}", job.id);
    let mut response = InvocationResponse::default();
    if let Some(done) = ctx.ledger.get(&key).await? {
        response.log(format!("job {} already exported as {done}", job.id));
        return Ok(response);
    }
    let version = model_version_for(&job.id);
    let work = ctx
        .settings
        .data_dir
        .join("ml")
        .join("export")
        .join(format!("{}-{version}", job.id));
    let _ = std::fs::remove_dir_all(&work);
    let output = work.join("output");
    let folder = work.join("version");
    download_output(ctx, &job.id, &output).await?;
    std::fs::create_dir_all(&folder).map_err(|e| FunctionError::Failed(e.to_string()))?;
    let container = job.tags.get("trainer").is_some_and(|t| t == "container");
    let exported = if container {
        match export_container(ctx, &job, &output, &folder).await {
            Ok(e) => e,
            Err(Ok(reason)) => {
                let _ = std::fs::remove_dir_all(&work);
                return Ok(contract_broken(ctx, &req, &job, &reason).await);
            }
            Err(Err(e)) => return Err(e),
        }
    } else {
        export_socwire(&output, &folder).await?
    };
    let trainer = if container { "container" } else { "socwire" };
    let mut metadata = metadata_of(&cmd, &job, &name, &version, trainer, &exported);
    if let Some(m) = metadata.as_object_mut() {
        m.extend(exported.fields);
    }
    std::fs::write(
        folder.join("metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap_or_default(),
    )
    .map_err(|e| FunctionError::Failed(e.to_string()))?;
    let tags = BTreeMap::from([
        ("commandId".to_string(), cmd.command_id.clone()),
        (
            "averagePrecisionBefore".to_string(),
            exported.before.to_string(),
        ),
        (
            "averagePrecisionAfter".to_string(),
            exported.after.to_string(),
        ),
        ("format".to_string(), exported.format.to_string()),
        ("trainer".to_string(), trainer.to_string()),
    ]);
    let location = ctx
        .ml
        .register_model(&ModelRegistration {
            name: name.clone(),
            version: version.clone(),
            folder,
            job_id: job.id.clone(),
            tags,
        })
        .await?;
    let _ = std::fs::remove_dir_all(&work);
    response.messages(
        EVENTS_OUT,
        vec![event(
            "socwire.ModelExported",
            &format!("ml/models/{name}/{version}"),
            &format!("{}/{name}", job.id),
            json!({ "model": name, "version": version, "location": location, "jobId": job.id,
                    "commandId": cmd.command_id, "format": exported.format,
                    "averagePrecisionBefore": exported.before,
                    "averagePrecisionAfter": exported.after }),
        )],
    );
    ctx.ledger.record(&key, &location).await?;
    response.log(format!("exported {name} version {version} to {location}"));
    Ok(response)
}

/// Downloads the job's output folder. Missing or refused for good (too large) sets the
/// command aside; anything else is retried.
async fn download_output(ctx: &Context, job_id: &str, output: &Path) -> Result<(), FunctionError> {
    let max = ctx.settings.ml.max_unpacked_bytes;
    ctx.ml
        .download_job_output(job_id, output, max)
        .await
        .map_err(|e| {
            let reason = match &e {
                PortError::NotFound(r) => Some(r.clone()),
                other => other.permanent_reason(),
            };
            match reason {
                Some(r) => refuse(format!("ExportModel: {r}")),
                None => e.into(),
            }
        })
}

/// The job to export: it must exist and have completed. Failed or canceled never will
/// (refused); still running is worth retrying.
async fn completed_job(ctx: &Context, cmd: &ExportModel) -> Result<JobInfo, FunctionError> {
    let Some(job) = ctx.ml.get_job(&cmd.job_id).await? else {
        return Err(refuse(format!(
            "ExportModel: job {} does not exist in this workspace",
            cmd.job_id
        )));
    };
    match job.status.as_str() {
        "Completed" => Ok(job),
        "Failed" | "Canceled" => Err(refuse(format!(
            "ExportModel: job {} ended {}; only a Completed job can be exported",
            job.id, job.status
        ))),
        other => Err(FunctionError::Retry(format!(
            "job {} is {other}; export once it completes",
            job.id
        ))),
    }
}

/// The model version's `metadata.json`: what was trained, how well, and from what (lineage).
fn metadata_of(
    cmd: &ExportModel,
    job: &JobInfo,
    name: &str,
    version: &str,
    trainer: &str,
    exported: &Exported,
) -> Value {
    json!({
        "name": name,
        "version": version,
        "commandId": cmd.command_id,
        "trainer": trainer,
        "format": exported.format,
        "averagePrecisionBefore": exported.before,
        "averagePrecisionAfter": exported.after,
        "hyperParameters": parse_tag(&job.tags, "hyperParameters"),
        "lineage": {
            "cluster": job.cluster,
            "job": job.id,
            "baseModel": { "path": job.tags.get("baseModel"), "assets": parse_tag(&job.tags, "assets"),
                           "allowUnverified": job.tags.get("allowUnverified").is_some_and(|v| v == "true") },
            "image": job.tags.get("image"),
            "commands": {
                "provision": job.tags.get("parentCommandId"),
                "fineTune": job.tags.get("commandId"),
                "export": cmd.command_id,
            },
        },
        "exportedAt": chrono::Utc::now().to_rfc3339(),
    })
}

/// A container job that completed without keeping the evaluation contract: set aside with the
/// reason, reported as `socwire.FineTuneFailed`, its pipeline's cluster scaled back.
async fn contract_broken(
    ctx: &Context,
    req: &InvocationRequest,
    job: &JobInfo,
    reason: &str,
) -> InvocationResponse {
    let reason = format!("ExportModel: job {}: {reason}", job.id);
    let mut response = RejectRecord::new(NAME, TRIGGER.binding, &reason, req).into_response();
    response.messages(
        EVENTS_OUT,
        vec![event(
            "socwire.FineTuneFailed",
            &format!("ml/jobs/{}", job.id),
            &format!("{}:export", job.id),
            json!({ "jobId": job.id, "commandId": job.tags.get("commandId"), "status": job.status,
                    "reason": reason }),
        )],
    );
    if let Some(line) = scale_back_pipeline(
        ctx.ml.as_ref(),
        job.tags.get("parentCommandId").map(String::as_str),
        &job.cluster,
    )
    .await
    {
        response.log(line);
    }
    response
}
