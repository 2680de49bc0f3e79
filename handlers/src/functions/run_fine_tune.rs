//! `run-fine-tune` (Service Bus trigger, Subject `RunFineTune`): stages the NGC assets (allow-
//! listed hosts, size caps, sha-256 or `allowUnverified`, safe unpacking) into the workspace
//! datastore, registers the environment, submits a Command job — socwire's trainer, or with
//! `trainer: "container"` the container's own command — and emits `socwire.FineTuneSubmitted`.
//! The job id is derived from the commandId, so a redelivered command finds its job instead of
//! making a second. It then watches the job with scheduled follow-ups: a job still waiting
//! past `queueDeadlineMinutes`, or whose cluster cannot add nodes (a scale error such as a core
//! quota), is cancelled and reported as `socwire.FineTuneFailed` (and `socwire.ClusterFailed`);
//! a container job's MLflow metrics are folded into its telemetry, so a diverging run is
//! cancelled as the socwire trainer's is. A pipeline's cluster is scaled back after a refusal
//! or failure.

use super::refuse;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{
    expect_subject, socwire_trainer_refusal, FollowUp, FollowUpKind, RunFineTune, Trainer,
};
use crate::ml::container::{self, ContainerCommand};
use crate::ml::staging::{self, Limits, StageError};
use crate::ml::telemetry::{fold, metrics_key, JobMetrics, Point};
use crate::ml::{event, job_id_for, now_ms, scale_back_pipeline, send_command};
use crate::ports::{ClusterInfo, JobInfo, JobSubmission, MetricPoint};
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};
use serde_json::json;
use std::collections::BTreeMap;

/// Function name.
pub const NAME: &str = "run-fine-tune";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "command",
    kind: "serviceBusTrigger",
};
const EVENTS_OUT: &str = "events";
/// The Subject it takes.
pub const SUBJECT: &str = "RunFineTune";
/// Environment name registered for fine-tunes with socwire's trainer.
pub const ENVIRONMENT: &str = "socwire-fine-tune";
/// Environment name registered for `trainer: "container"` fine-tunes.
pub const CONTAINER_ENVIRONMENT: &str = "socwire-container";
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
        Some(now_ms() + ctx.settings.ml.poll_secs as i64 * 1000),
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

fn cluster_failed_event(cmd: &RunFineTune, cluster: &str, reason: &str) -> serde_json::Value {
    event(
        "socwire.ClusterFailed",
        &format!("ml/clusters/{cluster}"),
        &format!("{}:{cluster}:scale", cmd.command_id),
        json!({ "commandId": cmd.parent_command_id.as_deref().unwrap_or(&cmd.command_id),
                "clusterName": cluster, "reason": reason }),
    )
}

/// MLflow metric histories as telemetry points: `loss` per step, and `eval_loss` (with
/// `average_precision` when logged at the same step) per evaluation. Values are sorted by step
/// (MLflow returns them in logging order, which a restarted job can break); a step logged twice
/// keeps its latest value; steps may have gaps. An `average_precision` with no `eval_loss` at its
/// step makes no point: the divergence rule reads evaluation losses, and none is invented.
pub fn mlflow_points(
    loss: &[MetricPoint],
    eval_loss: &[MetricPoint],
    ap: &[MetricPoint],
) -> Vec<Point> {
    fn latest(points: &[MetricPoint]) -> BTreeMap<u64, Option<f64>> {
        let mut sorted: Vec<&MetricPoint> = points.iter().filter(|p| p.step >= 0).collect();
        sorted.sort_by_key(|p| (p.step, p.timestamp));
        sorted
            .into_iter()
            .map(|p| (p.step as u64, p.value))
            .collect()
    }
    let aps = latest(ap);
    let steps = latest(loss).into_iter().map(|(step, loss)| Point {
        kind: "step".into(),
        step,
        loss,
        average_precision: None,
        learning_rate: None,
    });
    let evals = latest(eval_loss).into_iter().map(|(step, loss)| Point {
        kind: "eval".into(),
        step,
        loss,
        average_precision: aps.get(&step).copied().flatten(),
        learning_rate: None,
    });
    steps.chain(evals).collect()
}

/// Folds a container job's MLflow metrics into its telemetry record and sends one CancelJob
/// when they diverge. Metrics that cannot be read now are logged and tried at the next watch.
async fn sync_mlflow_metrics(
    ctx: &Context,
    job: &JobInfo,
) -> Result<Option<String>, FunctionError> {
    let mut histories = Vec::new();
    for key in [
        container::MLFLOW_LOSS,
        container::MLFLOW_EVAL_LOSS,
        container::MLFLOW_AP,
    ] {
        match ctx.ml.metric_history(&job.id, key).await {
            Ok(h) => histories.push(h),
            Err(e) => {
                return Ok(Some(format!(
                    "job {}: MLflow metrics not read now: {e}",
                    job.id
                )))
            }
        }
    }
    let points = mlflow_points(&histories[0], &histories[1], &histories[2]);
    if points.is_empty() {
        return Ok(None);
    }
    let key = metrics_key(&job.id);
    let mut m: JobMetrics = match ctx.state.load(&key).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => JobMetrics::default(),
    };
    let added = fold(&mut m, points, ctx.settings.ml.divergence_evals);
    let mut log = format!("job {}: {added} new MLflow metric point(s)", job.id);
    if let (Some(reason), false) = (m.diverged.clone(), m.cancel_sent) {
        if !job.is_terminal() {
            crate::ml::cancel_diverged(ctx.commands.as_ref(), &job.id, &reason).await?;
            log.push_str(&format!("; diverged ({reason}): sent CancelJob"));
        }
        m.cancel_sent = true;
    }
    ctx.state
        .save(&key, &serde_json::to_vec(&m).unwrap_or_default())
        .await?;
    Ok(Some(log))
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
    if job.tags.get("trainer").is_some_and(|t| t == "container") {
        if let Some(line) = sync_mlflow_metrics(ctx, &job).await? {
            response.log(line);
        }
    }
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
    if let Some((reason, events)) = why_cancel(ctx, cmd, f, &job).await? {
        ctx.ml.cancel_job(&job.id).await?;
        response.log(format!("job {}: {reason}", job.id));
        response.messages(EVENTS_OUT, events);
        if let Some(line) = scale_back_pipeline(
            ctx.ml.as_ref(),
            cmd.parent_command_id.as_deref(),
            &job.cluster,
        )
        .await
        {
            response.log(line);
        }
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

/// Why a job still waiting for a node should be cancelled now, with the events that say so:
/// its cluster cannot add nodes, or it has waited past `queueDeadlineMinutes`.
async fn why_cancel(
    ctx: &Context,
    cmd: &RunFineTune,
    f: &FollowUp,
    job: &JobInfo,
) -> Result<Option<(String, Vec<serde_json::Value>)>, FunctionError> {
    if !WAITING.contains(&job.status.as_str()) {
        return Ok(None);
    }
    // A cluster that cannot add the node the job waits for says so in its errors while it
    // still reads Succeeded: waiting out the queue deadline would only burn the time.
    let scale_error = ctx
        .ml
        .get_cluster(&job.cluster)
        .await?
        .and_then(|c| c.scale_error);
    if let Some(cluster_reason) = scale_error {
        let reason = format!(
            "cluster {} cannot add nodes ({cluster_reason}); job {} cancelled",
            job.cluster, job.id
        );
        let events = vec![
            cluster_failed_event(cmd, &job.cluster, &cluster_reason),
            failed_event(job, &reason),
        ];
        return Ok(Some((reason, events)));
    }
    let waited_ms = now_ms() - f.started_ms;
    if waited_ms > i64::from(cmd.spec.queue_deadline_minutes) * 60_000 {
        let reason = format!(
            "job stayed {} for more than queueDeadlineMinutes ({}); cancelled",
            job.status, cmd.spec.queue_deadline_minutes
        );
        let events = vec![failed_event(job, &reason)];
        return Ok(Some((reason, events)));
    }
    Ok(None)
}

/// Handles one command or follow-up. A refused fine-tune of a pipeline scales its cluster back
/// before it is set aside.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER.binding)?;
    expect_subject(SUBJECT, t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = RunFineTune::parse(&t.body).map_err(refuse)?;
    match submit(ctx, &cmd).await {
        Err(FunctionError::BadInput(reason)) => {
            if let Some(line) = scale_back_pipeline(
                ctx.ml.as_ref(),
                cmd.parent_command_id.as_deref(),
                &cmd.cluster_name,
            )
            .await
            {
                tracing::info!(command = %cmd.command_id, "{line}");
            }
            Err(FunctionError::BadInput(reason))
        }
        other => other,
    }
}

/// Submits the command's job once: on a ready cluster, its assets staged and uploaded, then
/// watched. A command seen before answers with the job it submitted.
async fn submit(ctx: &Context, cmd: &RunFineTune) -> Result<InvocationResponse, FunctionError> {
    let cmd = cmd.clone();
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
    let Some(cluster) = ready_cluster(ctx, &cmd, &mut response).await? else {
        return Ok(response);
    };
    let job_id = job_id_for(&cmd.command_id);
    let mut lineage = Vec::new();
    let job = match ctx.ml.get_job(&job_id).await? {
        Some(existing) => existing, // submitted before a crash; do not stage or submit again
        None => {
            let submission =
                prepare_job(ctx, &cmd, &cluster, &job_id, &mut response, &mut lineage).await?;
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
                    "allowUnverified": cmd.spec.allow_unverified, "trainer": cmd.spec.trainer,
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

/// The command's cluster when it is ready. One that is not ready yet is looked at again later
/// (None, the follow-up sent), until `queueDeadlineMinutes`; a missing or failed cluster, or
/// one socwire's trainer cannot use, refuses the command.
async fn ready_cluster(
    ctx: &Context,
    cmd: &RunFineTune,
    response: &mut InvocationResponse,
) -> Result<Option<ClusterInfo>, FunctionError> {
    let cluster = ctx.ml.get_cluster(&cmd.cluster_name).await?.ok_or_else(|| {
        refuse(format!(
            "RunFineTune: cluster {} does not exist; send ProvisionGpuCluster first (or use its pipeline option)",
            cmd.cluster_name
        ))
    })?;
    if cmd.spec.trainer == Trainer::Socwire {
        if let Some(reason) = socwire_trainer_refusal(&cluster.vm_size) {
            return Err(refuse(format!("RunFineTune: {reason}")));
        }
    }
    match cluster.state.as_str() {
        "Succeeded" => Ok(Some(cluster)),
        "Failed" => Err(refuse(format!(
            "RunFineTune: cluster {} is in state Failed ({}); provision it again",
            cluster.name,
            cluster.error.unwrap_or_default()
        ))),
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
                cmd,
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
            Ok(None)
        }
    }
}

/// Stages and uploads the assets (their lineage into `lineage`), registers the environment
/// and builds the job: command line and tags.
async fn prepare_job(
    ctx: &Context,
    cmd: &RunFineTune,
    cluster: &ClusterInfo,
    job_id: &str,
    response: &mut InvocationResponse,
    lineage: &mut Vec<serde_json::Value>,
) -> Result<JobSubmission, FunctionError> {
    let image = job_image(ctx, cmd)?;
    let work = ctx
        .settings
        .data_dir
        .join("ml")
        .join("staging")
        .join(job_id);
    let assets_dir = work.join("assets");
    let _ = std::fs::remove_dir_all(&work);
    stage_assets(ctx, cmd, &work, &assets_dir, response, lineage).await?;
    let base = base_model(cmd, &assets_dir)?;
    let uri = ctx
        .ml
        .upload_folder(&assets_dir, &format!("socwire/assets/{job_id}"))
        .await?;
    let _ = std::fs::remove_dir_all(&work);
    let environment = match cmd.spec.trainer {
        Trainer::Socwire => ENVIRONMENT,
        Trainer::Container => CONTAINER_ENVIRONMENT,
    };
    let environment_id = ctx.ml.register_environment(environment, &image).await?;
    let mut tags = job_tags(cmd, base.as_deref(), lineage, image);
    let h = &cmd.spec.hyper_parameters;
    let command = match (cmd.spec.trainer, cmd.spec.command.as_deref()) {
        (Trainer::Container, Some(template)) => {
            tags.insert("containerCommand".into(), template.to_string());
            tags.insert("evaluation".into(), cmd.spec.evaluation.as_str().into());
            ContainerCommand::parse(template)
                .map_err(refuse)?
                .azure_line(base.as_deref(), h, cmd.spec.seed)
        }
        _ => crate::ml::job::command_line(
            job_id,
            base.as_deref().unwrap_or_default(),
            h,
            cmd.spec.seed,
            ctx.settings.ml.telemetry_eventhub.as_deref(),
        ),
    };
    Ok(JobSubmission {
        id: job_id.to_string(),
        experiment: cmd.spec.model.clone(),
        cluster: cluster.name.clone(),
        environment_id,
        command,
        inputs: BTreeMap::from([("assets".to_string(), uri)]),
        tags,
    })
}

/// The job's image. The local back end runs jobs itself; Azure ML needs the image holding
/// `socwire` (a container job always names its own image).
fn job_image(ctx: &Context, cmd: &RunFineTune) -> Result<String, FunctionError> {
    cmd.spec
        .image
        .clone()
        .or_else(|| {
            (cmd.spec.trainer == Trainer::Socwire)
                .then(|| ctx.settings.ml.image.clone())
                .flatten()
        })
        .or_else(|| ctx.settings.ml.workspace.is_none().then(|| "local".into()))
        .ok_or_else(|| {
            refuse(
                "RunFineTune: no job image: set SOCWIRE_ML_IMAGE to the image built from \
                 infra/job-image/Dockerfile (docs/deploying.md), or give the command an image",
            )
        })
}

/// Downloads, checks and unpacks every asset into `assets_dir`, within the size limits; each
/// one's lineage (URL without secrets, sha256, bytes, verified) goes into `lineage`.
async fn stage_assets(
    ctx: &Context,
    cmd: &RunFineTune,
    work: &std::path::Path,
    assets_dir: &std::path::Path,
    response: &mut InvocationResponse,
    lineage: &mut Vec<serde_json::Value>,
) -> Result<(), FunctionError> {
    let limits = Limits {
        max_download_bytes: ctx.settings.ml.max_asset_bytes,
        max_unpacked_bytes: ctx.settings.ml.max_unpacked_bytes,
        max_entries: 100_000,
    };
    for (i, asset) in cmd.spec.assets.iter().enumerate() {
        let staged = staging::stage(
            ctx.assets.as_ref(),
            asset,
            &work.join(format!("dl-{i}")),
            assets_dir,
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
        let verified = asset.sha256.is_some();
        if !verified {
            response.log(format!(
                "assets[{i}] staged UNVERIFIED (no sha256; allowUnverified): sha256 of the download is {}",
                staged.sha256
            ));
        }
        lineage.push(json!({ "url": socwire_common::text::redact_secrets(&staged.url), "sha256": staged.sha256,
                             "bytes": staged.bytes, "verified": verified }));
    }
    Ok(())
}

/// The base model among the staged assets: the one named, or for socwire's trainer the first
/// `*.safetensors` file; a container job may have none.
fn base_model(
    cmd: &RunFineTune,
    assets_dir: &std::path::Path,
) -> Result<Option<String>, FunctionError> {
    match (&cmd.spec.base_model, cmd.spec.trainer) {
        (Some(b), _) if assets_dir.join(b).exists() => Ok(Some(b.clone())),
        (Some(b), _) => Err(refuse(format!(
            "RunFineTune: baseModel {b:?} is not in the staged assets"
        ))),
        (None, Trainer::Container) => Ok(None),
        (None, Trainer::Socwire) => staging::find_safetensors(assets_dir)
            .map(|p| Some(p.to_string_lossy().replace('\\', "/")))
            .ok_or_else(|| {
                refuse(
                    "RunFineTune: no *.safetensors base model in the assets (socwire's trainer fine-tunes \
                     its own models); set baseModel, or run the NGC model's own training with \
                     \"trainer\": \"container\"",
                )
            }),
    }
}

/// The job's tags: where it came from, what it trains and on what (export and the status
/// functions read them back).
fn job_tags(
    cmd: &RunFineTune,
    base: Option<&str>,
    lineage: &[serde_json::Value],
    image: String,
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert("commandId".into(), cmd.command_id.clone());
    if let Some(p) = &cmd.parent_command_id {
        tags.insert("parentCommandId".into(), p.clone());
    }
    tags.insert("model".into(), cmd.spec.model.clone());
    if let Some(b) = base {
        tags.insert("baseModel".into(), b.to_string());
    }
    tags.insert("trainer".into(), cmd.spec.trainer.as_str().into());
    if cmd.spec.allow_unverified {
        tags.insert("allowUnverified".into(), "true".into());
    }
    tags.insert(
        "assets".into(),
        serde_json::to_string(lineage).unwrap_or_default(),
    );
    tags.insert(
        "hyperParameters".into(),
        serde_json::to_string(&cmd.spec.hyper_parameters).unwrap_or_default(),
    );
    tags.insert("seed".into(), cmd.spec.seed.to_string());
    tags.insert("autoExport".into(), cmd.spec.auto_export.to_string());
    tags.insert("image".into(), image);
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(step: i64, timestamp: i64, value: Option<f64>) -> MetricPoint {
        MetricPoint {
            step,
            timestamp,
            value,
        }
    }

    #[test]
    fn mlflow_points_are_sorted_keep_the_latest_repeat_and_invent_nothing() {
        let loss = [
            p(5, 50, Some(0.4)),
            p(1, 10, Some(0.9)),
            p(3, 30, Some(0.7)),
            p(3, 31, None),
        ];
        let eval_loss = [p(4, 40, Some(0.6)), p(2, 20, Some(0.65))];
        let ap = [p(4, 41, Some(0.8)), p(6, 60, Some(0.9))];
        let points = mlflow_points(&loss, &eval_loss, &ap);
        let got: Vec<(&str, u64, Option<f64>, Option<f64>)> = points
            .iter()
            .map(|q| (q.kind.as_str(), q.step, q.loss, q.average_precision))
            .collect();
        assert_eq!(
            got,
            [
                ("step", 1, Some(0.9), None),
                ("step", 3, None, None),
                ("step", 5, Some(0.4), None),
                ("eval", 2, Some(0.65), None),
                ("eval", 4, Some(0.6), Some(0.8)),
            ]
        );
    }
}
