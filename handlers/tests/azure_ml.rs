//! The Azure ML ARM adapter and the Service Bus REST sender against a local HTTP server that
//! answers with the documented shapes (Azure/azure-rest-api-specs examples for
//! Microsoft.MachineLearningServices 2025-12-01): 201 + Azure-AsyncOperation, 409, quota
//! errors, 429 + Retry-After, 5xx, job status sequences, and an expired token (401 → a fresh
//! token → success). Issue #23's REST gaps: a compute read before it is written (a different
//! vmSize refused, the same one PATCHed as `Compute/patch.json` shows), AmlCompute `errors`
//! read as scale errors, a failed job's error from run history, MLflow metric history over
//! pages, and datastore files moved in blocks and listed page by page.

mod support;

use axum::extract::{Path, RawQuery, State};
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
use support::arm::fixture;
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
            )
            .patch(
                |State(a): State<Shared>,
                 Path(p): Path<Vec<String>>,
                 h: HeaderMap,
                 Json(b): Json<Value>| async move {
                    answer(&a, &format!("PATCH compute {}", p[3]), &auth(&h), b)
                },
            ),
        )
        .route(
            &format!("/history/v1.0{base}/runs/{{id}}/details"),
            get(
                |State(a): State<Shared>, Path(p): Path<Vec<String>>, h: HeaderMap| async move {
                    answer(&a, &format!("GET run details {}", p[3]), &auth(&h), Value::Null)
                },
            ),
        )
        .route(
            &format!("/mlflow/v1.0{base}/api/2.0/mlflow/metrics/get-history"),
            get(
                |State(a): State<Shared>, RawQuery(q): RawQuery, h: HeaderMap| async move {
                    answer(&a, "GET metric history", &auth(&h), json!(q))
                },
            ),
        )
        .route(
            "/store",
            get(
                |State(a): State<Shared>, RawQuery(q): RawQuery, h: HeaderMap| async move {
                    answer(&a, "LIST store", &auth(&h), json!(q))
                },
            ),
        )
        .route(
            "/store/{*blob}",
            put(
                |State(a): State<Shared>,
                 Path(blob): Path<String>,
                 RawQuery(q): RawQuery,
                 h: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let kind = h
                        .get("x-ms-blob-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let seen = json!({"query": q, "bytes": body.len(), "blobType": kind,
                                      "text": if body.len() < 4096 { String::from_utf8_lossy(&body).into_owned() } else { String::new() }});
                    // Storage answers 201 Created to Put Blob, Put Block and Put Block List.
                    a.seen
                        .lock()
                        .unwrap()
                        .push((format!("PUT blob {blob}"), auth(&h), seen));
                    StatusCode::CREATED.into_response()
                },
            )
            .get(
                |State(a): State<Shared>, Path(blob): Path<String>, h: HeaderMap| async move {
                    answer(&a, &format!("GET blob {blob}"), &auth(&h), Value::Null)
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
        // Storage takes blocks of up to 4000 MiB; the test sends 4 MiB ones.
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(arm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn not_found() -> Response {
    ok(
        404,
        json!({"error": {"code": "ResourceNotFound", "message": "not found"}}),
    )
}

/// The body of the first request to `key`.
fn seen_body(arm: &Arm, key: &str) -> Value {
    arm.seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.0 == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .2
        .clone()
}

fn count(arm: &Arm, prefix: &str) -> usize {
    arm.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0.starts_with(prefix))
        .count()
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
    fixture("compute-create-201")
}

/// `Compute/get/AmlCompute.json`, response 200.
fn succeeded() -> Value {
    fixture("compute-get-200")
}

/// `Jobs_Get` of job-1, a Command job, with this status.
fn job_with_status(status: &str) -> Value {
    let mut job = fixture("job-get-200");
    job["properties"]["status"] = json!(status);
    job
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
    // The create reads the compute first (absent), the later get finds it.
    script(
        &arm,
        "GET compute compute123",
        vec![not_found(), ok(200, succeeded())],
    );
    let p = ml.create_cluster(&spec()).await.unwrap();
    assert_eq!(
        p,
        Provisioning::InProgress {
            operation: Some(op.clone()),
            retry_after_secs: 7
        }
    );
    let body = seen_body(&arm, "PUT compute compute123");
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
    let seen: Vec<_> = arm
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0.starts_with("PUT"))
        .cloned()
        .collect();
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
    let job = |status: &str| ok(200, job_with_status(status));
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
    script(&arm, "PUT job job-1", vec![ok(201, fixture("job-put-201"))]);
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

/// `Compute/get/AmlCompute.json` with scale settings of our own and, when given, AmlCompute
/// `errors` in the spec's `ErrorResponse` shape (`[{"error": {"code", "message"}}]`).
fn existing(min: u32, max: u32, errors: Value) -> Value {
    let mut v = succeeded();
    v["properties"]["properties"]["scaleSettings"]["minNodeCount"] = json!(min);
    v["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = json!(max);
    v["properties"]["properties"]["errors"] = errors;
    v
}

/// `Compute/patch.json`, response 200: Updating, with an Azure-AsyncOperation to follow.
fn updating(base: &str) -> Response {
    with_headers(
        200,
        &[(
            "azure-asyncoperation",
            format!("{base}/operations/op-2?api-version={ML_API_VERSION}"),
        )],
        fixture("compute-patch-200"),
    )
}

/// The spec warns that PUT overwrites an existing compute: the adapter reads it first, refuses
/// another vmSize without writing anything, and changes only the scale settings (PATCH) of a
/// cluster of the same size.
#[tokio::test]
async fn an_existing_cluster_is_read_first_and_never_replaced() {
    let (arm, ml, base, _) = adapter().await;
    script(
        &arm,
        "GET compute compute123",
        vec![
            ok(200, existing(0, 1, Value::Null)),
            ok(200, existing(0, 1, Value::Null)),
        ],
    );
    script(&arm, "PATCH compute compute123", vec![updating(&base)]);
    let other = ml.create_cluster(&spec()).await.unwrap_err();
    assert!(
        matches!(&other, PortError::Permanent(m) if m.contains("exists with vmSize STANDARD_NC6") && m.contains("another clusterName")),
        "{other}"
    );
    assert_eq!(count(&arm, "PUT"), 0, "nothing was written");
    assert_eq!(count(&arm, "PATCH"), 0);

    let same = ClusterSpec {
        vm_size: "Standard_NC6".into(),
        min_nodes: 1,
        max_nodes: 4,
        ..spec()
    };
    let p = ml.create_cluster(&same).await.unwrap();
    assert!(
        matches!(&p, Provisioning::InProgress { operation: Some(op), .. } if op.contains("op-2")),
        "{p:?}"
    );
    assert_eq!(count(&arm, "PUT"), 0, "never a PUT over a live cluster");
    assert_eq!(
        seen_body(&arm, "PATCH compute compute123"),
        json!({"properties": {"properties": {"scaleSettings": {
            "minNodeCount": 1, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT300S"}}}})
    );
}

/// Quota failures during scale-up appear in AmlCompute's `errors` while provisioningState
/// stays Succeeded; they are read, not mistaken for a healthy cluster.
#[tokio::test]
async fn scale_errors_are_read_from_the_compute() {
    let (arm, ml, _, _) = adapter().await;
    let quota = json!([{"error": {"code": "ClusterCoreQuotaReached",
        "message": "Operation results in exceeding quota limits of Core. Maximum allowed: 0, Current in use: 0, Additional requested: 6."}}]);
    script(
        &arm,
        "GET compute compute123",
        vec![
            ok(200, existing(0, 1, quota)),
            ok(200, existing(0, 1, json!([]))),
        ],
    );
    let c = ml.get_cluster("compute123").await.unwrap().unwrap();
    assert_eq!(c.state, "Succeeded");
    let e = c.scale_error.expect("the scale error");
    assert!(
        e.starts_with("ClusterCoreQuotaReached: Operation results in exceeding quota"),
        "{e}"
    );
    let healthy = ml.get_cluster("compute123").await.unwrap().unwrap();
    assert_eq!(
        healthy.scale_error, None,
        "an empty errors array is no error"
    );
}

/// A pipeline's cluster is scaled back to 0 minimum nodes with a PATCH that keeps its maximum
/// and idle time; a cluster already at 0, or gone, is left alone.
#[tokio::test]
async fn scale_back_sets_the_minimum_to_zero() {
    let (arm, ml, base, _) = adapter().await;
    script(
        &arm,
        "GET compute compute123",
        vec![
            ok(200, existing(2, 4, Value::Null)),
            ok(200, existing(0, 4, Value::Null)),
        ],
    );
    script(&arm, "PATCH compute compute123", vec![updating(&base)]);
    ml.scale_back("compute123").await.unwrap();
    assert_eq!(
        seen_body(&arm, "PATCH compute compute123"),
        json!({"properties": {"properties": {"scaleSettings": {
            "minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT5M"}}}})
    );
    ml.scale_back("compute123").await.unwrap();
    ml.scale_back("gone").await.unwrap();
    assert_eq!(count(&arm, "PATCH"), 1);
}

/// A Failed job's reason is its run-history error (`RunDetails.error.error`), as the Azure ML
/// SDK reads it; when run history cannot answer, the job is still returned, without one.
#[tokio::test]
async fn a_failed_jobs_error_comes_from_run_history() {
    let (arm, ml, base, _) = adapter().await;
    let ml = ml
        .with_tracking_uri(Some(&format!("{base}/mlflow/v1.0{WS}")))
        .unwrap();
    let failed = || ok(200, job_with_status("Failed"));
    script(&arm, "GET job job-1", vec![failed(), failed()]);
    script(
        &arm,
        "GET run details job-1",
        vec![
            ok(200, fixture("run-details-failed")),
            ok(
                503,
                json!({"error": {"code": "ServiceUnavailable", "message": "later"}}),
            ),
        ],
    );
    let job = ml.get_job("job-1").await.unwrap().unwrap();
    let error = job.error.unwrap();
    assert!(
        error.starts_with("UserError: Execution failed. User process")
            && error.ends_with("exited with status code 1: CUDA out of memory"),
        "{error}"
    );
    let again = ml.get_job("job-1").await.unwrap().unwrap();
    assert_eq!((again.status.as_str(), again.error), ("Failed", None));
}

/// MLflow's metric history is read page by page (`next_page_token`); NaN arrives as text and
/// comes back as no value; the points keep the order MLflow gave (the caller sorts by step).
#[tokio::test]
async fn mlflow_metric_history_follows_every_page() {
    let (arm, ml, base, _) = adapter().await;
    let ml = ml
        .with_tracking_uri(Some(&format!("{base}/mlflow/v1.0{WS}")))
        .unwrap();
    script(
        &arm,
        "GET metric history",
        vec![
            ok(
                200,
                json!({"metrics": [
                    {"key": "loss", "value": 0.7, "timestamp": 1000, "step": 2},
                    {"key": "loss", "value": 0.9, "timestamp": 900, "step": 1}],
                    "next_page_token": "page-2"}),
            ),
            ok(
                200,
                json!({"metrics": [{"key": "loss", "value": "NaN", "timestamp": "1100", "step": "5"}]}),
            ),
            ok(
                404,
                json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"}),
            ),
            ok(
                403,
                json!({"error": {"code": "AuthorizationFailed", "message": "no"}}),
            ),
        ],
    );
    let points = ml.metric_history("job-1", "loss").await.unwrap();
    let steps: Vec<(i64, Option<f64>)> = points.iter().map(|p| (p.step, p.value)).collect();
    assert_eq!(steps, [(2, Some(0.7)), (1, Some(0.9)), (5, None)]);
    let queries: Vec<String> = arm
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == "GET metric history")
        .map(|s| s.2.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(queries[0].contains("run_id=job-1") && queries[0].contains("metric_key=loss"));
    assert!(queries[1].contains("page_token=page-2"), "{queries:?}");
    assert!(ml.metric_history("x", "loss").await.unwrap().is_empty());
    assert!(matches!(
        ml.metric_history("job-1", "loss").await,
        Err(PortError::Permanent(_))
    ));
}

fn list_page(names: &[(&str, u64)], next: &str) -> Response {
    let blobs: String = names
        .iter()
        .map(|(n, len)| {
            format!("<Blob><Name>{n}</Name><Properties><Content-Length>{len}</Content-Length></Properties></Blob>")
        })
        .collect();
    let next = if next.is_empty() {
        "<NextMarker />".to_string()
    } else {
        format!("<NextMarker>{next}</NextMarker>")
    };
    (
        StatusCode::OK,
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>{blobs}</Blobs>{next}</EnumerationResults>"),
    )
        .into_response()
}

/// Datastore files move in 4 MiB blocks (Put Block, then Put Block List) or one Put Blob when
/// small; a job's output is listed over every page and read under the export cap.
#[tokio::test]
async fn datastore_files_move_in_blocks_and_listings_follow_next_marker() {
    let arm: Shared = Arc::default();
    let base = server(arm.clone()).await;
    let ml = AzureMlRest::new(
        &base,
        WS,
        "eastus",
        Some(&format!("{base}/store")),
        Arc::new(Tokens::default()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 2 * socwire::azure::ML_BLOCK_BYTES + 1000];
    std::fs::write(dir.path().join("weights.bin"), &big).unwrap();
    std::fs::write(dir.path().join("eval.json"), b"{}").unwrap();
    ml.upload_folder(dir.path(), "socwire/assets/j")
        .await
        .unwrap();
    let seen = arm.seen.lock().unwrap().clone();
    let blocks: Vec<&Value> = seen
        .iter()
        .filter(|s| s.0 == "PUT blob socwire/assets/j/weights.bin")
        .map(|s| &s.2)
        .collect();
    assert_eq!(blocks.len(), 4, "three blocks and the block list");
    let sizes: Vec<u64> = blocks[..3]
        .iter()
        .map(|b| b["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(
        sizes,
        [
            socwire::azure::ML_BLOCK_BYTES as u64,
            socwire::azure::ML_BLOCK_BYTES as u64,
            1000
        ]
    );
    assert!(blocks[0]["query"]
        .as_str()
        .unwrap()
        .starts_with("comp=block&blockid="));
    assert_eq!(blocks[0]["blobType"], "", "a block is not a whole blob");
    assert_eq!(blocks[3]["query"], "comp=blocklist");
    let list = blocks[3]["text"].as_str().unwrap();
    assert_eq!(list.matches("<Latest>").count(), 3, "{list}");
    let small = seen_body(&arm, "PUT blob socwire/assets/j/eval.json");
    assert_eq!(
        (small["blobType"].as_str(), small["bytes"].as_u64()),
        (Some("BlockBlob"), Some(2))
    );

    // The output listing comes in two pages; every blob is read.
    let prefix = "socwire/jobs/job-1/model/";
    script(
        &arm,
        "LIST store",
        vec![
            list_page(&[(&format!("{prefix}model.onnx"), 5)], "marker-2"),
            list_page(&[(&format!("{prefix}sub/eval.json"), 2)], ""),
            list_page(&[(&format!("{prefix}model.onnx"), 5)], "marker-2"),
            list_page(&[(&format!("{prefix}sub/eval.json"), 2)], ""),
        ],
    );
    script(
        &arm,
        &format!("GET blob {prefix}model.onnx"),
        vec![(StatusCode::OK, "onnx!").into_response()],
    );
    script(
        &arm,
        &format!("GET blob {prefix}sub/eval.json"),
        vec![(StatusCode::OK, "{}").into_response()],
    );
    let out = dir.path().join("out");
    ml.download_job_output("job-1", &out, 1000).await.unwrap();
    assert_eq!(std::fs::read(out.join("model.onnx")).unwrap(), b"onnx!");
    assert_eq!(std::fs::read(out.join("sub/eval.json")).unwrap(), b"{}");
    let lists: Vec<String> = arm
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == "LIST store")
        .map(|s| s.2.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(lists[1].contains("marker=marker-2"), "{lists:?}");
    // Over the cap: refused before any blob is read.
    let e = ml
        .download_job_output("job-1", &dir.path().join("out2"), 6)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PortError::Permanent(m) if m.contains("7 bytes")),
        "{e}"
    );
}
