//! `export-model` (Service Bus trigger, Subject `ExportModel`): takes a Completed job's `model`
//! output, exports ONNX, writes the model version folder (model.onnx, model.safetensors,
//! eval.safetensors, metadata.json with interface, AP before/after, hyper-parameters and
//! lineage), registers it and emits `socwire.ModelExported`. The version is derived from the
//! job, and the ledger records the export per job and model, so a repeat changes nothing.

use super::refuse;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{expect_subject, ExportModel};
use crate::ml::{event, model_version_for};
use crate::ports::ModelRegistration;
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Function name.
pub const NAME: &str = "export-model";
const TRIGGER: &str = "command";
const EVENTS_OUT: &str = "events";
/// Files a model version folder holds.
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

/// Handles one ExportModel.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER)?;
    expect_subject("ExportModel", t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = ExportModel::parse(&t.body).map_err(refuse)?;
    let Some(job) = ctx.ml.get_job(&cmd.job_id).await? else {
        return Err(refuse(format!(
            "ExportModel: job {} does not exist in this workspace",
            cmd.job_id
        )));
    };
    match job.status.as_str() {
        "Completed" => {}
        "Failed" | "Canceled" => {
            return Err(refuse(format!(
                "ExportModel: job {} ended {}; only a Completed job can be exported",
                job.id, job.status
            )))
        }
        other => {
            return Err(FunctionError::Retry(format!(
                "job {} is {other}; export once it completes",
                job.id
            )))
        }
    }
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
    ctx.ml
        .download_job_output(&job.id, &output)
        .await
        .map_err(|e| match e {
            crate::ports::PortError::NotFound(r) => refuse(format!("ExportModel: {r}")),
            other => other.into(),
        })?;
    std::fs::create_dir_all(&folder).map_err(|e| FunctionError::Failed(e.to_string()))?;
    let result: Value = std::fs::read(output.join("result.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
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
    let metadata = json!({
        "name": name,
        "version": version,
        "commandId": cmd.command_id,
        "inputName": info.input_name,
        "inputShape": info.input_shape,
        "outputName": info.output_name,
        "averagePrecisionBefore": result["averagePrecisionBefore"],
        "averagePrecisionAfter": result["averagePrecisionAfter"],
        "steps": result["steps"],
        "hyperParameters": parse_tag(&job.tags, "hyperParameters"),
        "lineage": {
            "cluster": job.cluster,
            "job": job.id,
            "baseModel": { "path": job.tags.get("baseModel"), "assets": parse_tag(&job.tags, "assets") },
            "image": job.tags.get("image"),
            "commands": {
                "provision": job.tags.get("parentCommandId"),
                "fineTune": job.tags.get("commandId"),
                "export": cmd.command_id,
            },
        },
        "exportedAt": chrono::Utc::now().to_rfc3339(),
    });
    std::fs::write(
        folder.join("metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap_or_default(),
    )
    .map_err(|e| FunctionError::Failed(e.to_string()))?;
    let mut tags = BTreeMap::new();
    tags.insert("commandId".to_string(), cmd.command_id.clone());
    tags.insert(
        "averagePrecisionAfter".to_string(),
        result["averagePrecisionAfter"].to_string(),
    );
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
                    "commandId": cmd.command_id,
                    "averagePrecisionBefore": result["averagePrecisionBefore"],
                    "averagePrecisionAfter": result["averagePrecisionAfter"] }),
        )],
    );
    ctx.ledger.record(&key, &location).await?;
    response.log(format!("exported {name} version {version} to {location}"));
    Ok(response)
}
