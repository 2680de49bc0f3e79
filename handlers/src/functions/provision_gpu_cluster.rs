//! `provision-gpu-cluster` (Service Bus trigger, `ml-commands` subscription filtered on
//! Subject `ProvisionGpuCluster`): creates or reuses an AmlCompute cluster. It never waits: while
//! the cluster is Creating it schedules its own follow-up (a scheduled message honouring
//! Retry-After) and returns. Ready → `socwire.ClusterReady` (and, with `pipeline`, a
//! `RunFineTune` command); failed, quota or deadline → `socwire.ClusterFailed` and the command
//! set aside with the reason. One commandId never makes a second cluster: the ledger records
//! the outcome, and a create on an existing name only updates its scale settings.

use super::refuse;
use super::reject::RejectRecord;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{
    expect_subject, FollowUp, FollowUpKind, ProvisionGpuCluster, RunFineTune, SCHEMA_VERSION,
};
use crate::ml::{event, now_ms, send_command};
use crate::ports::{ClusterInfo, ClusterSpec, OperationStatus, Provisioning};
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};
use serde_json::json;

/// Function name.
pub const NAME: &str = "provision-gpu-cluster";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "command",
    kind: "serviceBusTrigger",
};
const EVENTS_OUT: &str = "events";
/// The Subject it takes.
pub const SUBJECT: &str = "ProvisionGpuCluster";

/// Where the cluster stands after this delivery.
enum Outcome {
    Ready(ClusterInfo),
    Wait(Option<String>, u64),
    Failed(String),
}

/// Handles one command or follow-up: parse, ask Azure ML where the cluster stands, then act
/// on it (schedule a follow-up, announce it ready, or set the command aside).
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER.binding)?;
    expect_subject(SUBJECT, t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = ProvisionGpuCluster::parse(&t.body).map_err(refuse)?;
    let key = format!("ml:cluster:v1:{}", cmd.command_id);
    let mut response = InvocationResponse::default();
    if let Some(done) = ctx.ledger.get(&key).await? {
        response.log(format!(
            "command {} already handled: {done}",
            cmd.command_id
        ));
        return Ok(response);
    }
    let now = now_ms();
    let spec = ClusterSpec {
        name: cmd.cluster_name.clone(),
        vm_size: cmd.vm_size.clone(),
        priority: format!("{:?}", cmd.priority),
        min_nodes: cmd.min_nodes,
        max_nodes: cmd.max_nodes,
        idle_seconds: cmd.idle_seconds_before_scale_down,
    };
    let outcome = match &cmd.follow_up {
        None => create(ctx, &spec).await?,
        Some(f) => follow_up(ctx, &spec, f).await?,
    };
    let started = cmd.follow_up.as_ref().map_or(now, |f| f.started_ms);
    let deadline_ms = i64::from(cmd.deadline_minutes) * 60_000;
    let outcome = match outcome {
        Outcome::Wait(..) if now - started > deadline_ms => Outcome::Failed(format!(
            "cluster {} did not finish provisioning within deadlineMinutes ({})",
            spec.name, cmd.deadline_minutes
        )),
        other => other,
    };
    match outcome {
        Outcome::Wait(operation, secs) => {
            let attempt = schedule_poll(ctx, &cmd, operation, started, now, secs).await?;
            response.log(format!(
                "cluster {} is provisioning; follow-up {attempt} scheduled in {secs} s",
                spec.name
            ));
            Ok(response)
        }
        Outcome::Ready(info) => {
            if let Some(next) = start_pipeline(ctx, &cmd, &info).await? {
                response.log(format!("pipeline: sent RunFineTune {next}"));
            }
            ctx.ledger
                .record(&key, &format!("cluster {} ready", info.name))
                .await?;
            response.log(format!(
                "cluster {} ready ({}, {} node(s))",
                info.name, info.vm_size, info.nodes
            ));
            response.messages(EVENTS_OUT, vec![cluster_ready(&cmd, &info)]);
            Ok(response)
        }
        Outcome::Failed(reason) => {
            // Set aside with the reason (replayable once fixed), and tell subscribers.
            let mut rejected =
                RejectRecord::new(NAME, TRIGGER.binding, &reason, &req).into_response();
            rejected.messages(
                EVENTS_OUT,
                vec![event(
                    "socwire.ClusterFailed",
                    &format!("ml/clusters/{}", spec.name),
                    &cmd.command_id,
                    json!({ "commandId": cmd.command_id, "clusterName": spec.name, "vmSize": spec.vm_size, "reason": reason }),
                )],
            );
            Ok(rejected)
        }
    }
}

/// A first delivery: create the cluster (or update the one of that name).
async fn create(ctx: &Context, spec: &ClusterSpec) -> Result<Outcome, FunctionError> {
    Ok(match ctx.ml.create_cluster(spec).await {
        Ok(Provisioning::Ready(info)) => Outcome::Ready(info),
        Ok(Provisioning::InProgress {
            operation,
            retry_after_secs,
        }) => Outcome::Wait(operation, retry_after_secs),
        Err(e) => match e.permanent_reason() {
            Some(reason) => Outcome::Failed(reason),
            None => return Err(e.into()),
        },
    })
}

/// A follow-up: read the create operation (or, without one, the cluster's own state).
async fn follow_up(
    ctx: &Context,
    spec: &ClusterSpec,
    f: &FollowUp,
) -> Result<Outcome, FunctionError> {
    let status = match &f.operation {
        Some(op) => ctx.ml.operation_status(op).await?,
        None => match ctx.ml.get_cluster(&spec.name).await? {
            Some(c) if c.state == "Succeeded" => OperationStatus::Succeeded,
            Some(c) if c.state == "Failed" => OperationStatus::Failed(c.error.unwrap_or_default()),
            Some(_) => OperationStatus::InProgress(ctx.settings.ml.poll_secs),
            None => OperationStatus::Failed(format!(
                "cluster {} disappeared while being created",
                spec.name
            )),
        },
    };
    Ok(match status {
        OperationStatus::Succeeded => match ctx.ml.get_cluster(&spec.name).await? {
            Some(info) => Outcome::Ready(info),
            None => Outcome::Failed(format!("cluster {} is gone", spec.name)),
        },
        OperationStatus::InProgress(secs) => Outcome::Wait(f.operation.clone(), secs),
        OperationStatus::Failed(reason) => Outcome::Failed(reason),
    })
}

/// Sends this command to itself again, `secs` from now, as the next follow-up; gives its number.
async fn schedule_poll(
    ctx: &Context,
    cmd: &ProvisionGpuCluster,
    operation: Option<String>,
    started_ms: i64,
    now: i64,
    secs: u64,
) -> Result<u32, FunctionError> {
    let attempt = cmd.follow_up.as_ref().map_or(1, |f| f.attempt + 1);
    let mut next = cmd.clone();
    next.follow_up = Some(FollowUp {
        kind: FollowUpKind::ProvisionPoll,
        attempt,
        operation,
        started_ms,
        job_id: None,
        last: false,
    });
    let at = now + secs.max(1) as i64 * 1000;
    send_command(
        ctx.commands.as_ref(),
        SUBJECT,
        format!("{}:poll:{attempt}", cmd.command_id),
        serde_json::to_value(&next).unwrap_or_default(),
        Some(at),
    )
    .await?;
    Ok(attempt)
}

/// With a `pipeline`, sends the `RunFineTune` command on the ready cluster; gives its id.
async fn start_pipeline(
    ctx: &Context,
    cmd: &ProvisionGpuCluster,
    info: &ClusterInfo,
) -> Result<Option<String>, FunctionError> {
    let Some(pipeline) = &cmd.pipeline else {
        return Ok(None);
    };
    let next = RunFineTune {
        command_id: format!("{}:fine-tune", cmd.command_id),
        schema_version: SCHEMA_VERSION,
        cluster_name: info.name.clone(),
        spec: pipeline.clone(),
        parent_command_id: Some(cmd.command_id.clone()),
        follow_up: None,
    };
    send_command(
        ctx.commands.as_ref(),
        "RunFineTune",
        next.command_id.clone(),
        serde_json::to_value(&next).unwrap_or_default(),
        None,
    )
    .await?;
    Ok(Some(next.command_id))
}

/// The `socwire.ClusterReady` event.
fn cluster_ready(cmd: &ProvisionGpuCluster, info: &ClusterInfo) -> serde_json::Value {
    event(
        "socwire.ClusterReady",
        &format!("ml/clusters/{}", info.name),
        &cmd.command_id,
        json!({ "commandId": cmd.command_id, "clusterName": info.name, "vmSize": info.vm_size,
                "state": info.state, "nodes": info.nodes, "minNodes": info.min_nodes, "maxNodes": info.max_nodes }),
    )
}
