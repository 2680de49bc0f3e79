//! Azure Machine Learning over ARM REST (`Microsoft.MachineLearningServices`): AmlCompute
//! clusters (201 + `Azure-AsyncOperation`), environments, Command jobs, model versions; files
//! go to the workspace's blob datastore. A 401 is retried once with a fresh token; 429/5xx
//! are transient (the caller's broker retries, nothing waits here); quota errors are permanent.
//!
//! A compute is read before it is written: the spec warns that `Compute_CreateOrUpdate`
//! overwrites an existing compute, so an existing cluster of the same VM size gets a
//! `Compute_Update` (PATCH of its scale settings) and one of another VM size is refused. Two
//! data-plane services of the workspace's region fill what ARM does not say: a failed job's
//! error comes from run history (`/history/v1.0/…/runs/{id}/details`, as the Azure ML SDK
//! reads it) and metrics from the workspace's MLflow tracking server
//! (`/api/2.0/mlflow/metrics/get-history`, every page). Datastore files move in 4 MiB blocks
//! (Put Block + Put Block List) and in chunks on the way back, never whole in memory; blob
//! listings follow `NextMarker`.

use super::{bearer, http_client, send_retrying, transport_error, AdapterOptions};
use crate::ports::{
    ClusterInfo, ClusterSpec, JobInfo, JobSubmission, MetricPoint, MlWorkspace, ModelRegistration,
    OperationStatus, PortError, PortResult, Provisioning,
};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use url::Url;

/// The Microsoft.MachineLearningServices API version used (the latest stable in the specs).
pub const ML_API_VERSION: &str = "2025-12-01";
/// Datastore name the paths below live in.
const DATASTORE: &str = "workspaceblobstore";
/// Bytes per staged block of a datastore upload (and the largest file sent in one Put Blob).
pub const BLOCK_BYTES: usize = 4 << 20;
/// Pages of MLflow metric history read at most per call (1000 values each).
const MAX_METRIC_PAGES: usize = 20;

/// An Azure ML workspace through ARM.
#[derive(Debug)]
pub struct AzureMlRest {
    endpoint: Url,
    workspace: String,
    location: String,
    datastore: Option<Url>,
    cluster_identity: Option<String>,
    /// `https://{region}.api.azureml.ms`: run history and MLflow tracking.
    region_api: Url,
    /// The MLflow tracking base (`{region_api}/mlflow/v1.0{workspace}`).
    tracking: Url,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

/// The https form of a workspace's MLflow tracking URI (`azureml://{region}.api.azureml.ms/
/// mlflow/v1.0/subscriptions/…/workspaces/{name}`, as `az ml workspace show` prints it).
fn tracking_url(uri: &str) -> anyhow::Result<Url> {
    let https = match uri.strip_prefix("azureml://") {
        Some(rest) => format!("https://{rest}"),
        None => uri.to_string(),
    };
    let url = Url::parse(&https).map_err(|e| anyhow::anyhow!("SOCWIRE_ML_TRACKING_URI: {e}"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
    anyhow::ensure!(
        (url.scheme() == "https" || loopback) && url.path().contains("/mlflow/"),
        "SOCWIRE_ML_TRACKING_URI must be the workspace's MLflow tracking URI (azureml://<region>.api.azureml.ms/mlflow/v1.0/subscriptions/…)"
    );
    Ok(url)
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
    fn retry_after(&self, default: u64) -> u64 {
        self.header("retry-after")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }
}

/// The error ARM put in a body: `code: message`.
fn arm_error(body: &Value) -> String {
    let e = body.get("error").unwrap_or(body);
    let code = e.get("code").and_then(Value::as_str).unwrap_or("");
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    socwire_common::text::for_log(&format!("{code}: {message}"), 500)
}

fn is_quota(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("quota")
}

impl AzureMlRest {
    /// `endpoint` is ARM (`https://management.azure.com`), `workspace` the workspace's ARM id,
    /// `datastore` the blob container URL behind `workspaceblobstore`.
    pub fn new(
        endpoint: &str,
        workspace: &str,
        location: &str,
        datastore: Option<&str>,
        credential: Arc<dyn TokenCredential>,
    ) -> anyhow::Result<Self> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_ML_ENDPOINT {endpoint:?}: {e}"))?;
        let loopback = matches!(endpoint.host_str(), Some("127.0.0.1" | "localhost"));
        anyhow::ensure!(
            endpoint.scheme() == "https" || loopback,
            "SOCWIRE_ML_ENDPOINT must use https"
        );
        anyhow::ensure!(
            workspace.starts_with("/subscriptions/") && workspace.contains("/workspaces/"),
            "SOCWIRE_ML_WORKSPACE must be the workspace's ARM id (/subscriptions/…/workspaces/NAME)"
        );
        let datastore = datastore
            .map(|d| Url::parse(d).map_err(|e| anyhow::anyhow!("SOCWIRE_ML_DATASTORE_URL: {e}")))
            .transpose()?;
        let workspace = workspace.trim_end_matches('/').to_string();
        let tracking = tracking_url(&format!(
            "azureml://{}.api.azureml.ms/mlflow/v1.0{workspace}",
            location.to_ascii_lowercase().replace(' ', "")
        ))?;
        let mut me = Self {
            endpoint,
            workspace,
            location: location.to_string(),
            datastore,
            cluster_identity: None,
            region_api: tracking.clone(),
            tracking,
            credential,
            http: http_client(),
        };
        me.region_api.set_path("");
        Ok(me)
    }

    /// Uses the workspace's MLflow tracking URI (`SOCWIRE_ML_TRACKING_URI`) instead of the one
    /// derived from the location; run history is read from the same host.
    pub fn with_tracking_uri(mut self, uri: Option<&str>) -> anyhow::Result<Self> {
        if let Some(uri) = uri {
            self.tracking = tracking_url(uri)?;
            self.region_api = self.tracking.clone();
            self.region_api.set_path("");
        }
        Ok(self)
    }

    /// New clusters get the user-assigned identity `resource_id`
    /// (`SOCWIRE_ML_CLUSTER_IDENTITY`): jobs on them send telemetry as it.
    pub fn with_cluster_identity(mut self, resource_id: Option<String>) -> Self {
        self.cluster_identity = resource_id;
        self
    }

    fn url(&self, sub: &str) -> Url {
        let mut url = self.endpoint.clone();
        url.set_path(&format!("{}/{sub}", self.workspace));
        url.set_query(Some(&format!("api-version={ML_API_VERSION}")));
        url
    }

    fn arm_scope(&self) -> String {
        format!("{}/.default", self.endpoint.as_str().trim_end_matches('/'))
    }

    /// One call, not retried here (the caller's broker redelivers), except that a 401 gets
    /// one more try with a fresh token.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        scope: &str,
    ) -> PortResult<Answer> {
        let what = format!("Azure ML {method} {}", url.path());
        let options = AdapterOptions {
            max_retries: 0,
            ..AdapterOptions::default()
        };
        let reply = send_retrying(&options, &what, true, |_| async {
            let token = bearer(self.credential.as_ref(), scope).await?;
            let request = self
                .http
                .request(method.clone(), url.clone())
                .header("authorization", token);
            Ok(match body {
                Some(b) => request.json(b),
                None if method == Method::POST => request.header("content-length", "0"),
                None => request,
            })
        })
        .await?;
        let text = reply.text();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status: reply.status,
            headers: reply.headers,
            body,
        })
    }

    /// A call whose non-2xx answer becomes a port error (404 → None through `found`).
    async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> PortResult<Answer> {
        let what = format!("Azure ML {method} {}", url.path());
        let a = self.send(method, url, body, &self.arm_scope()).await?;
        if a.status.is_success() {
            return Ok(a);
        }
        let reason = arm_error(&a.body);
        let text = format!("{what}: HTTP {}: {reason}", a.status);
        Err(match a.status.as_u16() {
            404 => PortError::NotFound(text),
            409 => PortError::Conflict(text),
            408 | 429 | 500..=599 => {
                PortError::Transient(format!("{text} (retry after {} s)", a.retry_after(30)))
            }
            _ if is_quota(&reason) => PortError::Permanent(format!(
                "quota exceeded: {reason}; request more quota for this VM family or lower maxNodes"
            )),
            _ => PortError::Permanent(text),
        })
    }

    async fn found(&self, url: Url) -> PortResult<Option<Answer>> {
        match self.call(Method::GET, url, None).await {
            Ok(a) => Ok(Some(a)),
            Err(PortError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn datastore(&self) -> PortResult<&Url> {
        self.datastore.as_ref().ok_or_else(|| {
            PortError::Permanent(
                "SOCWIRE_ML_DATASTORE_URL is not set (the workspaceblobstore container URL)".into(),
            )
        })
    }

    fn blob_url(&self, path: &str) -> PortResult<Url> {
        let mut url = self.datastore()?.clone();
        {
            let mut seg = url
                .path_segments_mut()
                .map_err(|_| PortError::Permanent("bad datastore URL".into()))?;
            seg.pop_if_empty();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                seg.push(part);
            }
        }
        Ok(url)
    }

    /// Sends one datastore request; a non-2xx answer becomes a port error.
    async fn blob_send(
        &self,
        method: Method,
        url: Url,
        body: Option<(Vec<u8>, bool)>,
    ) -> PortResult<reqwest::Response> {
        let token = bearer(
            self.credential.as_ref(),
            "https://storage.azure.com/.default",
        )
        .await?;
        let what = format!("datastore {method} {}", url.path());
        let mut r = self
            .http
            .request(method, url)
            .header("authorization", token)
            .header("x-ms-version", "2021-08-06");
        if let Some((bytes, whole_blob)) = body {
            if whole_blob {
                r = r.header("x-ms-blob-type", "BlockBlob");
            }
            r = r.body(bytes);
        }
        let response = r.send().await.map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(super::status_error(
                &what,
                status,
                &socwire_common::text::for_log(&text, 500),
            ));
        }
        Ok(response)
    }

    /// A small answer, read whole (listings).
    async fn blob_text(&self, url: Url) -> PortResult<String> {
        let what = format!("datastore GET {}", url.path());
        let r = self.blob_send(Method::GET, url, None).await?;
        r.text().await.map_err(|e| transport_error(&what, e))
    }

    /// Uploads one file: one Put Blob up to [`BLOCK_BYTES`], else Put Block per
    /// [`BLOCK_BYTES`] read from the file and one Put Block List, so a file of any size
    /// passes through a fixed buffer.
    async fn put_file(&self, file: &Path, blob: &str) -> PortResult<()> {
        use base64::Engine;
        use tokio::io::AsyncReadExt;
        let local = |e: std::io::Error| PortError::Transient(format!("{}: {e}", file.display()));
        let url = self.blob_url(blob)?;
        let len = tokio::fs::metadata(file).await.map_err(local)?.len();
        if len <= BLOCK_BYTES as u64 {
            let bytes = tokio::fs::read(file).await.map_err(local)?;
            self.blob_send(Method::PUT, url, Some((bytes, true)))
                .await?;
            return Ok(());
        }
        let mut f = tokio::fs::File::open(file).await.map_err(local)?;
        let mut ids = Vec::new();
        loop {
            let mut buf = Vec::with_capacity(BLOCK_BYTES);
            (&mut f)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(local)?;
            if buf.is_empty() {
                break;
            }
            // Block ids of one blob must all have the same length before encoding.
            let id = base64::engine::general_purpose::STANDARD.encode(format!("{:08}", ids.len()));
            let mut block = url.clone();
            block
                .query_pairs_mut()
                .append_pair("comp", "block")
                .append_pair("blockid", &id);
            self.blob_send(Method::PUT, block, Some((buf, false)))
                .await?;
            ids.push(id);
        }
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        let mut commit = url;
        commit.query_pairs_mut().append_pair("comp", "blocklist");
        self.blob_send(Method::PUT, commit, Some((list.into_bytes(), false)))
            .await?;
        Ok(())
    }

    /// Downloads one blob to `dest` chunk by chunk, counting against `budget` bytes.
    async fn get_file(&self, blob: &str, dest: &Path, budget: &mut u64) -> PortResult<()> {
        use tokio::io::AsyncWriteExt;
        let local = |e: std::io::Error| PortError::Transient(format!("{}: {e}", dest.display()));
        let what = format!("datastore GET {blob}");
        let mut r = self
            .blob_send(Method::GET, self.blob_url(blob)?, None)
            .await?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(local)?;
        }
        let mut f = tokio::fs::File::create(dest).await.map_err(local)?;
        while let Some(chunk) = r.chunk().await.map_err(|e| transport_error(&what, e))? {
            if chunk.len() as u64 > *budget {
                return Err(PortError::Permanent(format!(
                    "{what}: the job's output is over the export cap"
                )));
            }
            *budget -= chunk.len() as u64;
            f.write_all(&chunk).await.map_err(local)?;
        }
        f.flush().await.map_err(local)
    }

    /// Every blob under `prefix` (List Blobs, following `NextMarker` page by page).
    async fn list_blobs(&self, prefix: &str) -> PortResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut url = self.datastore()?.clone();
            url.query_pairs_mut()
                .append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("prefix", prefix);
            if !marker.is_empty() {
                url.query_pairs_mut().append_pair("marker", &marker);
            }
            let xml = self.blob_text(url).await?;
            for blob in xml.split("<Blob>").skip(1) {
                let name = xml_field(blob, "Name").unwrap_or_default();
                let size = xml_field(blob, "Content-Length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if !name.is_empty() {
                    out.push((name, size));
                }
            }
            match xml_field(&xml, "NextMarker") {
                Some(next) if !next.is_empty() && next != marker => marker = next,
                _ => return Ok(out),
            }
        }
    }

    fn cluster_info(name: &str, body: &Value) -> ClusterInfo {
        let p = &body["properties"];
        let inner = &p["properties"];
        let n = |v: &Value| v.as_u64().unwrap_or(0) as u32;
        let errors = p["provisioningErrors"]
            .as_array()
            .and_then(|a| a.first())
            .map(arm_error);
        // AmlCompute `errors`: ErrorResponse objects from node setup and scaling.
        let scale_error = inner["errors"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.iter()
                    .take(3)
                    .map(arm_error)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        ClusterInfo {
            name: body["name"].as_str().unwrap_or(name).to_string(),
            vm_size: inner["vmSize"].as_str().unwrap_or_default().to_string(),
            state: p["provisioningState"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string(),
            allocation: inner["allocationState"]
                .as_str()
                .unwrap_or("Steady")
                .to_string(),
            nodes: n(&inner["currentNodeCount"]),
            min_nodes: n(&inner["scaleSettings"]["minNodeCount"]),
            max_nodes: n(&inner["scaleSettings"]["maxNodeCount"]),
            error: errors,
            scale_error,
        }
    }

    /// The PATCH body of `Compute_Update`: scale settings only.
    fn scale_body(min: u32, max: u32, idle: &str) -> Value {
        json!({ "properties": { "properties": { "scaleSettings": {
            "minNodeCount": min, "maxNodeCount": max, "nodeIdleTimeBeforeScaleDown": idle } } } })
    }

    /// Where a create or update stands from its answer.
    fn provisioning(name: &str, a: &Answer) -> PortResult<Provisioning> {
        let info = Self::cluster_info(name, &a.body);
        match info.state.as_str() {
            "Succeeded" => Ok(Provisioning::Ready(info)),
            "Failed" => Err(PortError::Permanent(format!(
                "cluster {name} failed: {}",
                info.error.unwrap_or_default()
            ))),
            _ => Ok(Provisioning::InProgress {
                operation: a.header("azure-asyncoperation"),
                retry_after_secs: a.retry_after(15),
            }),
        }
    }

    /// The run-history error of a finished job (`RunDetails.error.error`), if it has one.
    async fn run_error(&self, id: &str) -> Option<String> {
        let mut url = self.region_api.clone();
        url.set_path(&format!(
            "/history/v1.0{}/runs/{id}/details",
            self.workspace
        ));
        match self.send(Method::GET, url, None, &self.arm_scope()).await {
            Ok(a) if a.status.is_success() => {
                let e = &a.body["error"]["error"];
                let message = e["message"].as_str().unwrap_or_default();
                (!message.is_empty()).then(|| {
                    let code = e["code"].as_str().unwrap_or_default();
                    socwire_common::text::for_log(&format!("{code}: {message}"), 1000)
                })
            }
            Ok(a) => {
                tracing::warn!(job = id, status = %a.status, "run history has no details for the job");
                None
            }
            Err(e) => {
                tracing::warn!(job = id, error = %e, "run history not reachable");
                None
            }
        }
    }

    fn job_info(id: &str, body: &Value) -> JobInfo {
        let p = &body["properties"];
        let tags = p["tags"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        JobInfo {
            id: body["name"].as_str().unwrap_or(id).to_string(),
            status: p["status"].as_str().unwrap_or("Unknown").to_string(),
            cluster: p["computeId"]
                .as_str()
                .and_then(|c| c.rsplit('/').next())
                .unwrap_or_default()
                .to_string(),
            tags,
            error: None,
            created_ms: 0,
        }
    }

    async fn upload_files(&self, folder: &Path, prefix: &str) -> PortResult<usize> {
        let mut stack = vec![folder.to_path_buf()];
        let mut n = 0;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)
                .map_err(|e| PortError::Permanent(e.to_string()))?
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p
                    .strip_prefix(folder)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                self.put_file(&p, &format!("{prefix}/{rel}")).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The text of the first `<name>…</name>` in `xml`, entities decoded (`<name />` is empty).
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn store_uri(path: &str) -> String {
    format!(
        "azureml://datastores/{DATASTORE}/paths/{}",
        path.trim_matches('/')
    )
}

#[async_trait]
impl MlWorkspace for AzureMlRest {
    async fn get_cluster(&self, name: &str) -> PortResult<Option<ClusterInfo>> {
        Ok(self
            .found(self.url(&format!("computes/{name}")))
            .await?
            .map(|a| Self::cluster_info(name, &a.body)))
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> PortResult<Provisioning> {
        let url = self.url(&format!("computes/{}", spec.name));
        let idle = format!("PT{}S", spec.idle_seconds);
        if let Some(existing) = self.found(url.clone()).await? {
            let info = Self::cluster_info(&spec.name, &existing.body);
            if !info.vm_size.eq_ignore_ascii_case(&spec.vm_size) {
                return Err(PortError::Permanent(format!(
                    "cluster {} exists with vmSize {}; a cluster's vmSize cannot change (a PUT would replace the cluster): use another clusterName",
                    spec.name, info.vm_size
                )));
            }
            let body = Self::scale_body(spec.min_nodes, spec.max_nodes, &idle);
            let a = self.call(Method::PATCH, url, Some(&body)).await?;
            return Self::provisioning(&spec.name, &a);
        }
        let mut body = json!({
            "location": self.location,
            "properties": {
                "computeType": "AmlCompute",
                "properties": {
                    "vmSize": spec.vm_size,
                    "vmPriority": spec.priority,
                    "scaleSettings": {
                        "minNodeCount": spec.min_nodes,
                        "maxNodeCount": spec.max_nodes,
                        "nodeIdleTimeBeforeScaleDown": idle,
                    }
                }
            }
        });
        if let Some(identity) = &self.cluster_identity {
            body["identity"] = json!({
                "type": "UserAssigned",
                "userAssignedIdentities": { identity.as_str(): {} },
            });
        }
        let a = self.call(Method::PUT, url, Some(&body)).await?;
        Self::provisioning(&spec.name, &a)
    }

    async fn scale_back(&self, name: &str) -> PortResult<()> {
        let url = self.url(&format!("computes/{name}"));
        let Some(existing) = self.found(url.clone()).await? else {
            return Ok(());
        };
        let info = Self::cluster_info(name, &existing.body);
        if info.min_nodes == 0 {
            return Ok(());
        }
        let idle = existing.body["properties"]["properties"]["scaleSettings"]
            ["nodeIdleTimeBeforeScaleDown"]
            .as_str()
            .unwrap_or("PT5M")
            .to_string();
        let body = Self::scale_body(0, info.max_nodes, &idle);
        self.call(Method::PATCH, url, Some(&body)).await.map(|_| ())
    }

    async fn operation_status(&self, operation: &str) -> PortResult<OperationStatus> {
        let url = Url::parse(operation)
            .map_err(|e| PortError::Permanent(format!("operation URL: {e}")))?;
        if url.host_str() != self.endpoint.host_str() {
            return Err(PortError::Permanent(format!(
                "operation URL host {:?} is not the ARM endpoint",
                url.host_str().unwrap_or("")
            )));
        }
        let a = self.call(Method::GET, url, None).await?;
        Ok(match a.body["status"].as_str().unwrap_or("InProgress") {
            "Succeeded" => OperationStatus::Succeeded,
            "Failed" | "Canceled" => OperationStatus::Failed(arm_error(&a.body)),
            _ => OperationStatus::InProgress(a.retry_after(15)),
        })
    }

    async fn upload_folder(&self, folder: &Path, path: &str) -> PortResult<String> {
        let n = self.upload_files(folder, path).await?;
        tracing::info!(files = n, path, "uploaded to the datastore");
        Ok(store_uri(path))
    }

    async fn register_environment(&self, name: &str, image: &str) -> PortResult<String> {
        use sha2::Digest;
        let version: String = sha2::Sha256::digest(image.as_bytes())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sub = format!("environments/{name}/versions/{version}");
        let body = json!({ "properties": { "image": image, "description": "socwire fine-tune environment" } });
        match self.found(self.url(&sub)).await? {
            Some(_) => {}
            None => {
                self.call(Method::PUT, self.url(&sub), Some(&body)).await?;
            }
        }
        Ok(format!("{}/{sub}", self.workspace))
    }

    async fn submit_job(&self, job: &JobSubmission) -> PortResult<JobInfo> {
        let url = self.url(&format!("jobs/{}", job.id));
        if let Some(existing) = self.found(url.clone()).await? {
            return Ok(Self::job_info(&job.id, &existing.body));
        }
        let inputs: serde_json::Map<String, Value> = job
            .inputs
            .iter()
            .map(|(k, uri)| {
                (
                    k.clone(),
                    json!({ "jobInputType": "uri_folder", "uri": uri, "mode": "ReadOnlyMount" }),
                )
            })
            .collect();
        let body = json!({
            "properties": {
                "jobType": "Command",
                "displayName": job.id,
                "experimentName": job.experiment,
                "command": job.command,
                "computeId": format!("{}/computes/{}", self.workspace, job.cluster),
                "environmentId": job.environment_id,
                "inputs": inputs,
                "outputs": { "model": { "jobOutputType": "uri_folder", "mode": "ReadWriteMount",
                    "uri": store_uri(&format!("socwire/jobs/{}/model", job.id)) } },
                "tags": job.tags,
            }
        });
        let a = self.call(Method::PUT, url, Some(&body)).await?;
        Ok(Self::job_info(&job.id, &a.body))
    }

    async fn get_job(&self, id: &str) -> PortResult<Option<JobInfo>> {
        let Some(a) = self.found(self.url(&format!("jobs/{id}"))).await? else {
            return Ok(None);
        };
        let mut job = Self::job_info(id, &a.body);
        if job.status == "Failed" {
            job.error = self.run_error(&job.id).await;
        }
        Ok(Some(job))
    }

    async fn cancel_job(&self, id: &str) -> PortResult<()> {
        self.call(Method::POST, self.url(&format!("jobs/{id}/cancel")), None)
            .await
            .map(|_| ())
    }

    async fn download_job_output(&self, id: &str, dest: &Path, max_bytes: u64) -> PortResult<()> {
        let prefix = format!("socwire/jobs/{id}/model/");
        let blobs = self.list_blobs(&prefix).await?;
        if blobs.is_empty() {
            return Err(PortError::NotFound(format!("job {id} has no model output")));
        }
        let total: u64 = blobs.iter().map(|(_, size)| size).sum();
        if total > max_bytes {
            return Err(PortError::Permanent(format!(
                "job {id}'s model output is {total} bytes; at most {max_bytes} are exported"
            )));
        }
        let mut budget = max_bytes;
        for (name, _) in blobs {
            let rel = name.strip_prefix(&prefix).unwrap_or(&name);
            if rel
                .split('/')
                .any(|p| p == ".." || p == "." || p.is_empty())
                || rel.contains('\\')
            {
                return Err(PortError::Permanent(format!(
                    "output blob {name:?} has an unsafe path"
                )));
            }
            self.get_file(&name, &dest.join(rel), &mut budget).await?;
        }
        Ok(())
    }

    async fn metric_history(&self, id: &str, key: &str) -> PortResult<Vec<MetricPoint>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_METRIC_PAGES {
            let mut url = self.tracking.clone();
            url.set_path(&format!(
                "{}/api/2.0/mlflow/metrics/get-history",
                self.tracking.path().trim_end_matches('/')
            ));
            url.query_pairs_mut()
                .append_pair("run_id", id)
                .append_pair("metric_key", key)
                .append_pair("max_results", "1000");
            if let Some(t) = &token {
                url.query_pairs_mut().append_pair("page_token", t);
            }
            let what = format!("MLflow get-history {key} of {id}");
            let a = self.send(Method::GET, url, None, &self.arm_scope()).await?;
            if a.status.as_u16() == 404 {
                return Ok(out);
            }
            if !a.status.is_success() {
                let text = format!("{what}: HTTP {}: {}", a.status, arm_error(&a.body));
                return Err(match a.status.as_u16() {
                    408 | 429 | 500..=599 => PortError::Transient(text),
                    _ => PortError::Permanent(text),
                });
            }
            for m in a.body["metrics"].as_array().into_iter().flatten() {
                let value = match &m["value"] {
                    Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
                    // MLflow's JSON carries NaN and infinities as text.
                    _ => None,
                };
                let int = |v: &Value| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0)
                };
                out.push(MetricPoint {
                    step: int(&m["step"]),
                    timestamp: int(&m["timestamp"]),
                    value,
                });
            }
            match a.body["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
        tracing::warn!(
            job = id,
            key,
            "metric history longer than {MAX_METRIC_PAGES} pages; the rest is not read"
        );
        Ok(out)
    }

    async fn register_model(&self, model: &ModelRegistration) -> PortResult<String> {
        let path = format!("socwire/models/{}/{}", model.name, model.version);
        self.upload_files(&model.folder, &path).await?;
        let body = json!({ "properties": {
            "modelType": "custom_model",
            "modelUri": store_uri(&path),
            "description": format!("fine-tuned by job {}", model.job_id),
            "tags": model.tags,
        }});
        self.call(
            Method::PUT,
            self.url(&format!("models/{}/versions/{}", model.name, model.version)),
            Some(&body),
        )
        .await?;
        Ok(store_uri(&path))
    }
}
