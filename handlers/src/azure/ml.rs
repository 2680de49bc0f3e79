//! Azure Machine Learning over ARM REST (`Microsoft.MachineLearningServices`): AmlCompute
//! clusters (201 + `Azure-AsyncOperation`), environments, Command jobs, model versions; files
//! go to the workspace's blob datastore. A 401 is retried once with a fresh token; 429/5xx
//! are transient (the caller's broker retries, nothing waits here); quota errors are permanent.

use super::{bearer, http_client, send_retrying, transport_error, AdapterOptions};
use crate::ports::{
    ClusterInfo, ClusterSpec, JobInfo, JobSubmission, MlWorkspace, ModelRegistration,
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

/// An Azure ML workspace through ARM.
#[derive(Debug)]
pub struct AzureMlRest {
    endpoint: Url,
    workspace: String,
    location: String,
    datastore: Option<Url>,
    cluster_identity: Option<String>,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
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
        Ok(Self {
            endpoint,
            workspace: workspace.trim_end_matches('/').to_string(),
            location: location.to_string(),
            datastore,
            cluster_identity: None,
            credential,
            http: http_client(),
        })
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

    async fn blob(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> PortResult<(StatusCode, Vec<u8>)> {
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
        if let Some(b) = body {
            r = r.header("x-ms-blob-type", "BlockBlob").body(b);
        }
        let response = r.send().await.map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, e))?
            .to_vec();
        if !status.is_success() {
            return Err(super::status_error(
                &what,
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        Ok((status, bytes))
    }

    fn cluster_info(name: &str, body: &Value) -> ClusterInfo {
        let p = &body["properties"];
        let inner = &p["properties"];
        let n = |v: &Value| v.as_u64().unwrap_or(0) as u32;
        let errors = p["provisioningErrors"]
            .as_array()
            .and_then(|a| a.first())
            .map(arm_error);
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
                let bytes = tokio::fs::read(&p)
                    .await
                    .map_err(|e| PortError::Transient(e.to_string()))?;
                self.blob(
                    Method::PUT,
                    self.blob_url(&format!("{prefix}/{rel}"))?,
                    Some(bytes),
                )
                .await?;
                n += 1;
            }
        }
        Ok(n)
    }
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
                        "nodeIdleTimeBeforeScaleDown": format!("PT{}S", spec.idle_seconds),
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
        let a = self
            .call(
                Method::PUT,
                self.url(&format!("computes/{}", spec.name)),
                Some(&body),
            )
            .await?;
        let info = Self::cluster_info(&spec.name, &a.body);
        match info.state.as_str() {
            "Succeeded" => Ok(Provisioning::Ready(info)),
            "Failed" => Err(PortError::Permanent(format!(
                "cluster {} failed: {}",
                spec.name,
                info.error.unwrap_or_default()
            ))),
            _ => Ok(Provisioning::InProgress {
                operation: a.header("azure-asyncoperation"),
                retry_after_secs: a.retry_after(15),
            }),
        }
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
        Ok(self
            .found(self.url(&format!("jobs/{id}")))
            .await?
            .map(|a| Self::job_info(id, &a.body)))
    }

    async fn cancel_job(&self, id: &str) -> PortResult<()> {
        self.call(Method::POST, self.url(&format!("jobs/{id}/cancel")), None)
            .await
            .map(|_| ())
    }

    async fn download_job_output(&self, id: &str, dest: &Path) -> PortResult<()> {
        let prefix = format!("socwire/jobs/{id}/model/");
        let mut list = self.datastore()?.clone();
        list.set_query(Some(&format!(
            "restype=container&comp=list&prefix={prefix}"
        )));
        let (_, xml) = self.blob(Method::GET, list, None).await?;
        let xml = String::from_utf8_lossy(&xml);
        let names: Vec<&str> = xml
            .split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next())
            .collect();
        if names.is_empty() {
            return Err(PortError::NotFound(format!("job {id} has no model output")));
        }
        for name in names {
            let rel = name.strip_prefix(&prefix).unwrap_or(name);
            if rel.split('/').any(|p| p == ".." || p.is_empty()) {
                return Err(PortError::Permanent(format!(
                    "output blob {name:?} has an unsafe path"
                )));
            }
            let (_, bytes) = self.blob(Method::GET, self.blob_url(name)?, None).await?;
            let target = dest.join(rel);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| PortError::Transient(e.to_string()))?;
            }
            std::fs::write(&target, bytes).map_err(|e| PortError::Transient(e.to_string()))?;
        }
        Ok(())
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
