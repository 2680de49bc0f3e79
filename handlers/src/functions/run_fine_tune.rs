//! `run-fine-tune` (Service Bus trigger, Subject `RunFineTune`): stages the NGC assets (allow-
//! listed hosts, size caps, sha-256, safe unpacking) into the workspace datastore, registers the
//! environment, submits a Command job and emits `socwire.FineTuneSubmitted`. The job id is
//! derived from the commandId, so a redelivered command finds its job instead of making a
//! second. It then watches the job with scheduled follow-ups: a job still Queued/Preparing past
//! `queueDeadlineMinutes` is cancelled and reported as `socwire.FineTuneFailed`.

use super::refuse;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{expect_subject, FollowUp, FollowUpKind, RunFineTune};
use crate::ml::staging::{self, Limits, StageError};
use crate::ml::{event, job_id_for, now_ms, send_command};
use crate::ports::{JobInfo, JobSubmission};
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};
use serde_json::json;
use std::collections::BTreeMap;

/// Function name.
pub const NAME: &str = "run-fine-tune";
const TRIGGER: &str = "command";
const EVENTS_OUT: &str = "events";
/// The Subject it takes.
pub const SUBJECT: &str = "RunFineTune";
/// Environment name registered for fine-tunes.
pub const ENVIRONMENT: &str = "socwire-fine-tune";
const WAITING: &[&str] = &[
    "NotStarted",
    "Queued",
    "Preparing",
    "Provisioning",
    "Starting",
];

async fn follow_up(
    ctx: &Context,
    cmd: &RunFineTune,
    kind: FollowUpKind,
    attempt: u32,
    started_ms: i64,
    job_id: Option<String>,
    last: bool,
) -> Result<(), FunctionError> {
    let mut next = cmd.clone();
    next.follow_up = Some(FollowUp {
        kind,
        attempt,
        operation: None,
        started_ms,
        job_id,
        last,
    });
    let tag = if kind == FollowUpKind::JobWatch {
        "watch"
    } else {
        "wait"
    };
    send_command(
        ctx.commands.as_ref(),
        SUBJECT,
        format!("{}:{tag}:{attempt}", cmd.command_id),
        serde_json::to_value(&next).unwrap_or_default(),
        Some(now_ms() + ctx.settings.ml_poll_secs as i64 * 1000),
    )
    .await?;
    Ok(())
}

fn failed_event(job: &JobInfo, reason: &str) -> serde_json::Value {
    event(
        "socwire.FineTuneFailed",
        &format!("ml/jobs/{}", job.id),
        &job.id,
        json!({ "jobId": job.id, "commandId": job.tags.get("commandId"), "status": job.status, "reason": reason }),
    )
}

/// A scheduled check of a submitted job: cancel it past the queue deadline; stop once it ended.
async fn watch(
    ctx: &Context,
    cmd: &RunFineTune,
    f: &FollowUp,
) -> Result<InvocationResponse, FunctionError> {
    let mut response = InvocationResponse::default();
    let job_id = f
        .job_id
        .clone()
        .unwrap_or_else(|| job_id_for(&cmd.command_id));
    let Some(job) = ctx.ml.get_job(&job_id).await? else {
        response.log(format!("job {job_id} is gone; watch ends"));
        return Ok(response);
    };
    if f.last {
        response.log(format!("job {job_id} {}; watch ends", job.status));
        return Ok(response);
    }
    if job.is_terminal() {
        // One more round, so the job's own status event is out before nothing is pending.
        follow_up(
            ctx,
            cmd,
            FollowUpKind::JobWatch,
            f.attempt + 1,
            f.started_ms,
            Some(job_id),
            true,
        )
        .await?;
        response.log(format!("job {} {}", job.id, job.status));
        return Ok(response);
    }
    let waited_ms = now_ms() - f.started_ms;
    if WAITING.contains(&job.status.as_str())
        && waited_ms > i64::from(cmd.spec.queue_deadline_minutes) * 60_000
    {
        ctx.ml.cancel_job(&job.id).await?;
        let reason = format!(
            "job stayed {} for more than queueDeadlineMinutes ({}); cancelled",
            job.status, cmd.spec.queue_deadline_minutes
        );
        response.log(format!("job {}: {reason}", job.id));
        response.messages(EVENTS_OUT, vec![failed_event(&job, &reason)]);
        return Ok(response);
    }
    follow_up(
        ctx,
        cmd,
        FollowUpKind::JobWatch,
        f.attempt + 1,
        f.started_ms,
        Some(job_id),
        false,
    )
    .await?;
    response.log(format!(
        "job {} {}; next check scheduled",
        job.id, job.status
    ));
    Ok(response)
}

/// Handles one command or follow-up.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER)?;
    expect_subject(SUBJECT, t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = RunFineTune::parse(&t.body).map_err(refuse)?;
    if let Some(f) = cmd
        .follow_up
        .as_ref()
        .filter(|f| f.kind == FollowUpKind::JobWatch)
    {
        return watch(ctx, &cmd, f).await;
    }
    let key = format!("ml:job:v1:{}", cmd.command_id);
    let mut response = InvocationResponse::default();
    if let Some(job) = ctx.ledger.get(&key).await? {
        response.log(format!(
            "command {} already submitted job {job}",
            cmd.command_id
        ));
        return Ok(response);
    }
    let job_id = job_id_for(&cmd.command_id);
    let cluster = ctx.ml.get_cluster(&cmd.cluster_name).await?.ok_or_else(|| {
        refuse(format!(
            "RunFineTune: cluster {} does not exist; send ProvisionGpuCluster first (or use its pipeline option)",
            cmd.cluster_name
        ))
    })?;
    match cluster.state.as_str() {
        "Succeeded" => {}
        "Failed" => {
            return Err(refuse(format!(
                "RunFineTune: cluster {} is in state Failed ({}); provision it again",
                cluster.name,
                cluster.error.unwrap_or_default()
            )))
        }
        other => {
            // Not ready yet: look again later rather than burn deliveries.
            let attempt = cmd.follow_up.as_ref().map_or(1, |f| f.attempt + 1);
            let started = cmd.follow_up.as_ref().map_or(now_ms(), |f| f.started_ms);
            if now_ms() - started > i64::from(cmd.spec.queue_deadline_minutes) * 60_000 {
                return Err(refuse(format!(
                    "RunFineTune: cluster {} stayed {other} past queueDeadlineMinutes",
                    cluster.name
                )));
            }
            follow_up(
                ctx,
                &cmd,
                FollowUpKind::ClusterWait,
                attempt,
                started,
                None,
                false,
            )
            .await?;
            response.log(format!(
                "cluster {} is {other}; will look again",
                cluster.name
            ));
            return Ok(response);
        }
    }

    let mut lineage = Vec::new();
    let job = match ctx.ml.get_job(&job_id).await? {
        Some(existing) => existing, // submitted before a crash; do not stage or submit again
        None => {
            // The local back end runs jobs itself; Azure ML needs the image holding `socwire`.
            let image = cmd
                .spec
                .image
                .clone()
                .or_else(|| ctx.settings.ml_image.clone())
                .or_else(|| ctx.settings.ml_workspace.is_none().then(|| "local".into()))
                .ok_or_else(|| {
                    refuse(
                        "RunFineTune: no job image: set SOCWIRE_ML_IMAGE to the image built from \
                         infra/job-image/Dockerfile (docs/deploying.md), or give the command an image",
                    )
                })?;
            let work = ctx
                .settings
                .data_dir
                .join("ml")
                .join("staging")
                .join(&job_id);
            let assets_dir = work.join("assets");
            let _ = std::fs::remove_dir_all(&work);
            let limits = Limits {
                max_download_bytes: ctx.settings.ml_max_asset_bytes,
                max_unpacked_bytes: ctx.settings.ml_max_unpacked_bytes,
                max_entries: 100_000,
            };
            for (i, asset) in cmd.spec.assets.iter().enumerate() {
                let staged = staging::stage(
                    ctx.assets.as_ref(),
                    asset,
                    &work.join(format!("dl-{i}")),
                    &assets_dir,
                    limits,
                )
                .await
                .map_err(|e| match e {
                    StageError::Refused(r) => refuse(format!("RunFineTune: assets[{i}]: {r}")),
                    StageError::Transient(r) => FunctionError::Retry(r),
                })?;
                response.log(format!(
                    "staged assets[{i}]: {} bytes, {} file(s), {}",
                    staged.bytes, staged.files, staged.format
                ));
                lineage.push(json!({ "url": socwire_common::text::redact_secrets(&staged.url), "sha256": staged.sha256, "bytes": staged.bytes }));
            }
            let base = match &cmd.spec.base_model {
                Some(b) if assets_dir.join(b).is_file() => b.clone(),
                Some(b) => {
                    return Err(refuse(format!(
                        "RunFineTune: baseModel {b:?} is not in the staged assets"
                    )))
                }
                None => staging::find_safetensors(&assets_dir)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .ok_or_else(|| {
                        refuse(
                            "RunFineTune: no *.safetensors base model in the assets; set baseModel",
                        )
                    })?,
            };
            let uri = ctx
                .ml
                .upload_folder(&assets_dir, &format!("socwire/assets/{job_id}"))
                .await?;
            let _ = std::fs::remove_dir_all(&work);
            let environment_id = ctx.ml.register_environment(ENVIRONMENT, &image).await?;
            let h = &cmd.spec.hyper_parameters;
            let mut tags = BTreeMap::new();
            tags.insert("commandId".into(), cmd.command_id.clone());
            if let Some(p) = &cmd.parent_command_id {
                tags.insert("parentCommandId".into(), p.clone());
            }
            tags.insert("model".into(), cmd.spec.model.clone());
            tags.insert("baseModel".into(), base.clone());
            tags.insert(
                "assets".into(),
                serde_json::to_string(&lineage).unwrap_or_default(),
            );
            tags.insert(
                "hyperParameters".into(),
                serde_json::to_string(h).unwrap_or_default(),
            );
            tags.insert("seed".into(), cmd.spec.seed.to_string());
            tags.insert("autoExport".into(), cmd.spec.auto_export.to_string());
            tags.insert("image".into(), image);
            let submission = JobSubmission {
                id: job_id.clone(),
                experiment: cmd.spec.model.clone(),
                cluster: cluster.name.clone(),
                environment_id,
                command: crate::ml::job::command_line(
                    &job_id,
                    &base,
                    h,
                    cmd.spec.seed,
                    ctx.settings.ml_telemetry_eventhub.as_deref(),
                ),
                inputs: BTreeMap::from([("assets".to_string(), uri)]),
                tags,
            };
            ctx.ml.submit_job(&submission).await?
        }
    };
    follow_up(
        ctx,
        &cmd,
        FollowUpKind::JobWatch,
        1,
        now_ms(),
        Some(job.id.clone()),
        false,
    )
    .await?;
    response.messages(
        EVENTS_OUT,
        vec![event(
            "socwire.FineTuneSubmitted",
            &format!("ml/jobs/{}", job.id),
            &job.id,
            json!({ "jobId": job.id, "commandId": cmd.command_id, "clusterName": job.cluster,
                    "model": cmd.spec.model, "status": job.status, "assets": lineage,
                    "hyperParameters": cmd.spec.hyper_parameters }),
        )],
    );
    ctx.ledger.record(&key, &job.id).await?;
    response.log(format!(
        "submitted job {} on {} ({})",
        job.id, job.cluster, job.status
    ));
    Ok(response)
}
