//! The Azure ML ARM adapter and the Service Bus REST sender against a local HTTP server that
//! answers with the documented shapes (Azure/azure-rest-api-specs examples for
//! Microsoft.MachineLearningServices 2025-12-01): 201 + Azure-AsyncOperation, 409, quota
//! errors, 429 + Retry-After, 5xx, job status sequences, and an expired token (401 → a fresh
//! token → success).

mod support;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use socwire::azure::{AdapterOptions, AzureMlRest, ServiceBusRest, ML_API_VERSION};
use socwire::ports::{
    ClusterSpec, CommandBus, JobSubmission, MlWorkspace, OperationStatus, OutgoingCommand,
    PortError, Provisioning,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::tokens::Tokens;

const WS: &str = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/testrg123/providers/Microsoft.MachineLearningServices/workspaces/workspaces123";

/// Scripted answers per route, consumed in order; what was asked is recorded.
#[derive(Default)]
struct Arm {
    script: Mutex<std::collections::HashMap<String, VecDeque<Response>>>,
    seen: Mutex<Vec<(String, String, Value)>>,
}

type Shared = Arc<Arm>;

fn script(arm: &Arm, key: &str, answers: Vec<Response>) {
    arm.script
        .lock()
        .unwrap()
        .insert(key.into(), answers.into());
}

fn answer(arm: &Arm, key: &str, auth: &str, body: Value) -> Response {
    arm.seen
        .lock()
        .unwrap()
        .push((key.to_string(), auth.to_string(), body));
    arm.script
        .lock()
        .unwrap()
        .get_mut(key)
        .and_then(VecDeque::pop_front)
        .unwrap_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"code": "ResourceNotFound", "message": "not found"}})),
            )
                .into_response()
        })
}

fn auth(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn server(arm: Shared) -> String {
    let base = "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.MachineLearningServices/workspaces/{w}";
    let app = Router::new()
        .route(
            &format!("{base}/computes/{{name}}"),
            put(
                |State(a): State<Shared>,
                 Path(p): Path<Vec<String>>,
                 h: HeaderMap,
                 Json(b): Json<Value>| async move {
                    answer(&a, &format!("PUT compute {}", p[3]), &auth(&h), b)
                },
            )
            .get(
                |State(a): State<Shared>, Path(p): Path<Vec<String>>, h: HeaderMap| async move {
                    answer(&a, &format!("GET compute {}", p[3]), &auth(&h), Value::Null)
                },
            ),
        )
        .route(
            &format!("{base}/jobs/{{id}}"),
            put(
                |State(a): State<Shared>,
                 Path(p): Path<Vec<String>>,
                 h: HeaderMap,
                 Json(b): Json<Value>| async move {
                    answer(&a, &format!("PUT job {}", p[3]), &auth(&h), b)
                },
            )
            .get(
                |State(a): State<Shared>, Path(p): Path<Vec<String>>, h: HeaderMap| async move {
                    answer(&a, &format!("GET job {}", p[3]), &auth(&h), Value::Null)
                },
            ),
        )
        .route(
            &format!("{base}/jobs/{{id}}/cancel"),
            post(
                |State(a): State<Shared>, Path(p): Path<Vec<String>>, h: HeaderMap| async move {
                    answer(&a, &format!("POST cancel {}", p[3]), &auth(&h), Value::Null)
                },
            ),
        )
        .route(
            "/operations/{id}",
            get(
                |State(a): State<Shared>, Path(id): Path<String>, h: HeaderMap| async move {
                    answer(&a, &format!("GET operation {id}"), &auth(&h), Value::Null)
                },
            ),
        )
        .route(
            "/ml-commands/messages",
            post(
                |State(a): State<Shared>, h: HeaderMap, body: String| async move {
                    let props = h
                        .get("BrokerProperties")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    answer(
                        &a,
                        "SB send",
                        &auth(&h),
                        json!({"props": props, "body": body}),
                    )
                },
            ),
        )
        .with_state(arm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn ok(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn with_headers(status: u16, headers: &[(&'static str, String)], body: Value) -> Response {
    let mut r = ok(status, body);
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

/// `Compute/createOrUpdate/BasicAmlCompute.json`, response 201.
fn creating() -> Value {
    json!({"id": format!("{WS}/computes/compute123"), "type": "Microsoft.MachineLearningServices/workspaces/computes",
           "name": "compute123", "location": "eastus", "properties": {"computeType": "AmlCompute", "provisioningState": "Creating"}})
}

/// `Compute/get/AmlCompute.json`, response 200.
fn succeeded() -> Value {
    json!({"id": format!("{WS}/computes/compute123"), "name": "compute123", "location": "eastus2",
        "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded",
            "properties": {"vmSize": "STANDARD_NC6", "vmPriority": "Dedicated", "scaleSettings": {"maxNodeCount": 1, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT5M"},
                "allocationState": "Resizing", "errors": null, "currentNodeCount": 0, "targetNodeCount": 1}}})
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        name: "compute123".into(),
        vm_size: "Standard_NC6s_v3".into(),
        priority: "Dedicated".into(),
        min_nodes: 0,
        max_nodes: 1,
        idle_seconds: 300,
    }
}

async fn adapter() -> (Shared, AzureMlRest, String, Arc<Tokens>) {
    let arm: Shared = Arc::default();
    let base = server(arm.clone()).await;
    let tokens = Arc::new(Tokens::default());
    let ml = AzureMlRest::new(&base, WS, "eastus", None, tokens.clone()).unwrap();
    (arm, ml, base, tokens)
}

#[tokio::test]
async fn create_answers_201_with_an_async_operation_that_is_polled_to_success() {
    let (arm, ml, base, _) = adapter().await;
    let op = format!("{base}/operations/op-1?api-version={ML_API_VERSION}");
    script(
        &arm,
        "PUT compute compute123",
        vec![with_headers(
            201,
            &[
                ("azure-asyncoperation", op.clone()),
                ("retry-after", "7".into()),
            ],
            creating(),
        )],
    );
    script(
        &arm,
        "GET operation op-1",
        vec![
            with_headers(
                200,
                &[("retry-after", "3".into())],
                json!({"status": "InProgress"}),
            ),
            ok(200, json!({"status": "Succeeded"})),
        ],
    );
    script(&arm, "GET compute compute123", vec![ok(200, succeeded())]);
    let p = ml.create_cluster(&spec()).await.unwrap();
    assert_eq!(
        p,
        Provisioning::InProgress {
            operation: Some(op.clone()),
            retry_after_secs: 7
        }
    );
    let body = arm.seen.lock().unwrap()[0].2.clone();
    assert_eq!(
        body["properties"]["properties"]["scaleSettings"]["nodeIdleTimeBeforeScaleDown"],
        "PT300S"
    );
    assert_eq!(body["properties"]["computeType"], "AmlCompute");
    assert_eq!(
        ml.operation_status(&op).await.unwrap(),
        OperationStatus::InProgress(3)
    );
    assert_eq!(
        ml.operation_status(&op).await.unwrap(),
        OperationStatus::Succeeded
    );
    let c = ml.get_cluster("compute123").await.unwrap().unwrap();
    assert_eq!(
        (
            c.state.as_str(),
            c.vm_size.as_str(),
            c.allocation.as_str(),
            c.max_nodes
        ),
        ("Succeeded", "STANDARD_NC6", "Resizing", 1)
    );
    // An operation URL on another host is never followed.
    assert!(matches!(
        ml.operation_status("https://evil.example/op").await,
        Err(PortError::Permanent(_))
    ));
}

/// With `SOCWIRE_ML_CLUSTER_IDENTITY`, a new cluster gets that user-assigned identity (its jobs
/// send telemetry as it); without it, the body has no identity.
#[tokio::test]
async fn a_cluster_identity_is_given_to_new_clusters() {
    let (arm, ml, _, tokens) = adapter().await;
    let identity = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/socwire-ml-jobs";
    let with = AzureMlRest::new(&server(arm.clone()).await, WS, "eastus", None, tokens)
        .unwrap()
        .with_cluster_identity(Some(identity.into()));
    script(
        &arm,
        "PUT compute compute123",
        vec![ok(200, succeeded()), ok(200, succeeded())],
    );
    ml.create_cluster(&spec()).await.unwrap();
    with.create_cluster(&spec()).await.unwrap();
    let seen = arm.seen.lock().unwrap().clone();
    assert_eq!(seen[0].2.get("identity"), None);
    assert_eq!(
        seen[1].2["identity"],
        json!({ "type": "UserAssigned", "userAssignedIdentities": { identity: {} } })
    );
}

#[tokio::test]
async fn errors_map_to_what_the_caller_must_do() {
    let (arm, ml, _, _) = adapter().await;
    script(
        &arm,
        "PUT compute compute123",
        vec![
            ok(
                400,
                json!({"error": {"code": "BadRequest", "message": "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota. Current Limit: 0"}}),
            ),
            with_headers(
                429,
                &[("retry-after", "17".into())],
                json!({"error": {"code": "TooManyRequests", "message": "throttled"}}),
            ),
            ok(
                503,
                json!({"error": {"code": "ServiceUnavailable", "message": "try later"}}),
            ),
            ok(
                409,
                json!({"error": {"code": "Conflict", "message": "an operation is in progress"}}),
            ),
        ],
    );
    let quota = ml.create_cluster(&spec()).await.unwrap_err();
    assert!(
        matches!(&quota, PortError::Permanent(m) if m.starts_with("quota exceeded") && m.contains("standardNCSv3Family")),
        "{quota}"
    );
    let throttled = ml.create_cluster(&spec()).await.unwrap_err();
    assert!(
        matches!(&throttled, PortError::Transient(m) if m.contains("retry after 17 s")),
        "{throttled}"
    );
    assert!(ml.create_cluster(&spec()).await.unwrap_err().is_transient());
    let conflict = ml.create_cluster(&spec()).await.unwrap_err();
    assert!(matches!(conflict, PortError::Conflict(_)) && conflict.is_transient());
    assert_eq!(ml.get_cluster("missing").await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_token_is_replaced_once() {
    let (arm, ml, _, tokens) = adapter().await;
    script(
        &arm,
        "GET compute compute123",
        vec![
            ok(
                401,
                json!({"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}}),
            ),
            ok(200, succeeded()),
        ],
    );
    assert!(ml.get_cluster("compute123").await.unwrap().is_some());
    let seen = arm.seen.lock().unwrap();
    assert_eq!(seen[0].1, "Bearer token-1");
    assert_eq!(seen[1].1, "Bearer token-2");
    assert_eq!(tokens.asked(), 2);
}

#[tokio::test]
async fn jobs_are_submitted_once_and_followed_through_their_statuses() {
    let (arm, ml, _, _) = adapter().await;
    let job = |status: &str| {
        ok(
            200,
            json!({"name": "job-1", "properties": {"jobType": "Command", "status": status,
        "computeId": format!("{WS}/computes/gpu-a"), "tags": {"commandId": "c-1"}}}),
        )
    };
    script(
        &arm,
        "GET job job-1",
        vec![
            ok(
                404,
                json!({"error": {"code": "UserError", "message": "not found"}}),
            ),
            job("Queued"),
            job("Preparing"),
            job("Running"),
            job("Completed"),
            job("Running"),
        ],
    );
    script(
        &arm,
        "PUT job job-1",
        vec![ok(
            201,
            json!({"name": "job-1", "properties": {"status": "NotStarted", "computeId": format!("{WS}/computes/gpu-a")}}),
        )],
    );
    script(&arm, "POST cancel job-1", vec![ok(202, Value::Null)]);
    let submission = JobSubmission {
        id: "job-1".into(),
        experiment: "ct".into(),
        cluster: "gpu-a".into(),
        environment_id: format!("{WS}/environments/e/versions/1"),
        command: "train".into(),
        inputs: [(
            "assets".to_string(),
            "azureml://datastores/workspaceblobstore/paths/a".to_string(),
        )]
        .into(),
        tags: [("commandId".to_string(), "c-1".to_string())].into(),
    };
    let info = ml.submit_job(&submission).await.unwrap();
    assert_eq!(
        (info.status.as_str(), info.cluster.as_str()),
        ("NotStarted", "gpu-a")
    );
    let put = arm
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.0 == "PUT job job-1")
        .unwrap()
        .2
        .clone();
    assert_eq!(put["properties"]["jobType"], "Command");
    assert_eq!(
        put["properties"]["computeId"],
        format!("{WS}/computes/gpu-a")
    );
    assert_eq!(
        put["properties"]["inputs"]["assets"]["jobInputType"],
        "uri_folder"
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(ml.get_job("job-1").await.unwrap().unwrap().status);
    }
    assert_eq!(statuses, ["Queued", "Preparing", "Running", "Completed"]);
    // A second submission finds the job and puts nothing.
    ml.submit_job(&submission).await.unwrap();
    assert_eq!(
        arm.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0 == "PUT job job-1")
            .count(),
        1
    );
    ml.cancel_job("job-1").await.unwrap();
}

#[tokio::test]
async fn service_bus_sends_carry_subject_message_id_and_schedule() {
    let arm: Shared = Arc::default();
    let base = server(arm.clone()).await;
    // The first send lands; the second meets 503 on every attempt.
    script(
        &arm,
        "SB send",
        vec![
            ok(201, Value::Null),
            ok(503, json!({})),
            ok(503, json!({})),
            ok(503, json!({})),
        ],
    );
    let options = AdapterOptions {
        max_retries: 2,
        base_delay: Duration::from_millis(1),
        ..AdapterOptions::json_api()
    };
    let bus =
        ServiceBusRest::new(&base, "ml-commands", Arc::new(Tokens::default()), options).unwrap();
    let cmd = OutgoingCommand {
        subject: "ProvisionGpuCluster".into(),
        message_id: "c-1:poll:2".into(),
        body: json!({"commandId": "c-1"}),
        not_before_ms: Some(1_780_000_000_000),
    };
    bus.send(&cmd).await.unwrap();
    let seen = arm.seen.lock().unwrap()[0].2.clone();
    let props: Value = serde_json::from_str(seen["props"].as_str().unwrap()).unwrap();
    assert_eq!(props["MessageId"], "c-1:poll:2");
    assert_eq!(props["Label"], "ProvisionGpuCluster");
    assert_eq!(
        props["ScheduledEnqueueTimeUtc"],
        "Thu, 28 May 2026 20:26:40 GMT"
    );
    assert_eq!(seen["body"], r#"{"commandId":"c-1"}"#);
    assert_eq!(arm.seen.lock().unwrap()[0].1, "Bearer token-1");
    let e = bus.send(&cmd).await.unwrap_err();
    assert!(
        e.is_transient() && e.to_string().contains("after 3 attempts"),
        "{e}"
    );
    // Every retry carries the same MessageId, so duplicate detection drops a repeat.
    let seen = arm.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.2["props"] == seen[0].2["props"]));
}
