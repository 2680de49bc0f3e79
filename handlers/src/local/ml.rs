//! The local Azure ML stand-in: AmlCompute clusters with Azure ML's state machine (Creating →
//! Succeeded after a provisioning delay; Resizing while nodes change), a node quota that bites
//! at scale-up as Azure's core quota does (the cluster reads Succeeded, its `errors` say why no
//! node came, the job stays Queued), a datastore folder, environments, jobs run as separate
//! `socwire ml run-job` processes, MLflow metrics read from each job's MLflow file store, and
//! a model registry of folders under `<data-dir>/models/<name>/<version>/`. Commands go to the
//! local broker.

use super::SqlitePool;
use crate::ports::{
    ClusterInfo, ClusterSpec, CommandBus, JobInfo, JobSubmission, MetricPoint, MlWorkspace,
    ModelRegistration, OperationStatus, OutgoingCommand, PortError, PortResult, Provisioning,
};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Local workspace settings.
#[derive(Debug, Clone)]
pub struct LocalMlOptions {
    /// How long a new cluster stays Creating.
    pub provision_ms: i64,
    /// Nodes the workspace may run at once (the local "core quota"): a cluster whose
    /// `minNodes` exceed it is refused at creation; a job that would need a node beyond it is
    /// held Queued and its cluster reports a scale error, as Azure ML does at scale-up.
    pub max_nodes_quota: u32,
    /// The executable that runs jobs (`socwire`); None = jobs are queued but not started
    /// (unit tests drive [`crate::ml::runner`] themselves).
    pub runner: Option<PathBuf>,
}

/// The local workspace: `<data-dir>/ml/workspace.sqlite3` plus folders.
pub struct LocalWorkspace {
    pool: SqlitePool,
    data_dir: PathBuf,
    opts: LocalMlOptions,
}

/// A model version as `socwire ml status` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalModel {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Folder.
    pub folder: String,
    /// Producing job.
    pub job_id: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl LocalWorkspace {
    /// Opens (or creates) the workspace under `data_dir`.
    pub fn open(data_dir: &Path, opts: LocalMlOptions) -> PortResult<Self> {
        let pool = SqlitePool::open(
            &data_dir.join("ml").join("workspace.sqlite3"),
            "CREATE TABLE IF NOT EXISTS clusters (
                 name TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,
                 ready_ms INTEGER NOT NULL, error TEXT);
             CREATE TABLE IF NOT EXISTS environments (name TEXT PRIMARY KEY, image TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
                 cancel_requested INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS models (
                 name TEXT NOT NULL, version TEXT NOT NULL, folder TEXT NOT NULL,
                 job_id TEXT NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (name, version));",
            1,
        )?;
        Ok(Self {
            pool,
            data_dir: data_dir.to_path_buf(),
            opts,
        })
    }

    /// The datastore folder.
    pub fn datastore(&self) -> PathBuf {
        self.data_dir.join("ml").join("datastore")
    }

    /// A job's folder (`outputs/model/`, `job.log`).
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("ml").join("jobs").join(id)
    }

    /// The submission of a job.
    pub fn job_spec(&self, id: &str) -> PortResult<Option<JobSubmission>> {
        let spec: Option<String> = self
            .pool
            .lock()
            .query_row("SELECT spec FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(PortError::sqlite)?;
        spec.map(|s| serde_json::from_str(&s).map_err(|e| PortError::Permanent(e.to_string())))
            .transpose()
    }

    /// Sets a job's status (and error); the runner reports through this.
    pub fn set_job_status(&self, id: &str, status: &str, error: Option<&str>) -> PortResult<()> {
        self.pool.lock()
            .execute(
                "UPDATE jobs SET status = ?2, error = COALESCE(?3, error), updated_ms = ?4 WHERE id = ?1",
                params![id, status, error, now_ms()],
            )
            .map(|_| ())
            .map_err(PortError::sqlite)
    }

    /// True once someone asked the job to stop.
    pub fn cancel_requested(&self, id: &str) -> PortResult<bool> {
        self.pool
            .lock()
            .query_row(
                "SELECT cancel_requested FROM jobs WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(false))
            .map_err(PortError::sqlite)
    }

    /// Every cluster (state brought up to date).
    pub fn clusters(&self) -> PortResult<Vec<ClusterInfo>> {
        let mut out = Vec::new();
        for name in self.first_column("SELECT name FROM clusters ORDER BY name")? {
            out.extend(self.cluster(&name)?);
        }
        Ok(out)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> PortResult<Vec<JobInfo>> {
        let mut out = Vec::new();
        for id in self.first_column("SELECT id FROM jobs ORDER BY created_ms, id")? {
            out.extend(self.job(&id)?);
        }
        Ok(out)
    }

    /// The first column of a query's rows, as text.
    fn first_column(&self, sql: &str) -> PortResult<Vec<String>> {
        let conn = self.pool.lock();
        let mut stmt = conn.prepare(sql).map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(PortError::sqlite)?;
        rows.collect::<Result<_, _>>().map_err(PortError::sqlite)
    }

    /// Every registered model version.
    pub fn models(&self) -> PortResult<Vec<LocalModel>> {
        let conn = self.pool.lock();
        let mut stmt = conn
            .prepare("SELECT name, version, folder, job_id FROM models ORDER BY name, created_ms")
            .map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LocalModel {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    folder: r.get(2)?,
                    job_id: r.get(3)?,
                })
            })
            .map_err(PortError::sqlite)?;
        rows.collect::<Result<_, _>>().map_err(PortError::sqlite)
    }

    fn cluster(&self, name: &str) -> PortResult<Option<ClusterInfo>> {
        let conn = self.pool.lock();
        let row: Option<(String, String, i64, Option<String>)> = conn
            .query_row(
                "SELECT spec, state, ready_ms, error FROM clusters WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(PortError::sqlite)?;
        let Some((spec, mut state, ready_ms, error)) = row else {
            return Ok(None);
        };
        let spec: ClusterSpec =
            serde_json::from_str(&spec).map_err(|e| PortError::Permanent(e.to_string()))?;
        if state == "Creating" && now_ms() >= ready_ms {
            state = "Succeeded".into();
            conn.execute(
                "UPDATE clusters SET state = ?2 WHERE name = ?1",
                params![name, state],
            )
            .map_err(PortError::sqlite)?;
        }
        let (running, queued): (u32, u32) = conn
            .query_row(
                "SELECT COALESCE(SUM(status IN ('Preparing', 'Running', 'Finalizing')), 0), COALESCE(SUM(status = 'Queued'), 0)
                 FROM jobs WHERE json_extract(spec, '$.cluster') = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(PortError::sqlite)?;
        let target = running.clamp(spec.min_nodes, spec.max_nodes);
        let nodes = if state == "Succeeded" { target } else { 0 };
        let wanted = (running + queued).clamp(spec.min_nodes, spec.max_nodes);
        let scale_error = (state == "Succeeded" && wanted > self.opts.max_nodes_quota).then(|| {
            format!(
                "ClusterCoreQuotaReached: scaling {} to {wanted} node(s) of {} exceeds this workspace's quota of {} node(s); \
                 request more quota for the VM family, lower maxNodes, or wait for running jobs",
                spec.name, spec.vm_size, self.opts.max_nodes_quota
            )
        });
        Ok(Some(ClusterInfo {
            name: spec.name,
            vm_size: spec.vm_size,
            allocation: if state == "Creating" && target > 0 {
                "Resizing".into()
            } else {
                "Steady".into()
            },
            state,
            nodes,
            min_nodes: spec.min_nodes,
            max_nodes: spec.max_nodes,
            error,
            scale_error,
        }))
    }

    fn job(&self, id: &str) -> PortResult<Option<JobInfo>> {
        let row: Option<(String, String, Option<String>, i64)> = self
            .pool
            .lock()
            .query_row(
                "SELECT spec, status, error, created_ms FROM jobs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(PortError::sqlite)?;
        let Some((spec, status, error, created_ms)) = row else {
            return Ok(None);
        };
        let spec: JobSubmission =
            serde_json::from_str(&spec).map_err(|e| PortError::Permanent(e.to_string()))?;
        Ok(Some(JobInfo {
            id: spec.id,
            status,
            cluster: spec.cluster,
            tags: spec.tags,
            error,
            created_ms,
        }))
    }

    /// Nodes running jobs on `cluster` now.
    fn busy_nodes(&self, cluster: &str) -> PortResult<u32> {
        self.pool
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE json_extract(spec, '$.cluster') = ?1 AND status IN ('Preparing', 'Running', 'Finalizing')",
                [cluster],
                |r| r.get(0),
            )
            .map_err(PortError::sqlite)
    }

    /// Sets a cluster's scale settings.
    fn set_scale(&self, name: &str, spec: &ClusterSpec) -> PortResult<()> {
        let text = serde_json::to_string(spec).unwrap_or_default();
        self.pool
            .lock()
            .execute(
                "UPDATE clusters SET spec = ?2 WHERE name = ?1",
                params![name, text],
            )
            .map(|_| ())
            .map_err(PortError::sqlite)
    }

    fn cluster_spec(&self, name: &str) -> PortResult<Option<ClusterSpec>> {
        let spec: Option<String> = self
            .pool
            .lock()
            .query_row("SELECT spec FROM clusters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(PortError::sqlite)?;
        spec.map(|s| serde_json::from_str(&s).map_err(|e| PortError::Permanent(e.to_string())))
            .transpose()
    }

    fn spawn_runner(&self, id: &str) -> PortResult<()> {
        let Some(exe) = &self.opts.runner else {
            return Ok(());
        };
        let dir = self.job_dir(id);
        let log_file = |e| PortError::file(format!("job {id}'s log"), e);
        std::fs::create_dir_all(&dir).map_err(log_file)?;
        let log = std::fs::File::create(dir.join("job.log")).map_err(log_file)?;
        let err = log.try_clone().map_err(log_file)?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("ml")
            .arg("run-job")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--job")
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| PortError::file(format!("starting job {id}"), e))?;
        // Reap it when it ends; the invocation does not wait.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ty = e.file_type()?;
        if ty.is_dir() {
            total += dir_size(&e.path())?;
        } else if ty.is_file() {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

/// The MLflow tracking URI a local job gets: a file store in its folder.
pub fn mlflow_store(job_dir: &Path) -> PathBuf {
    job_dir.join("mlruns")
}

/// Reads metric `key` from an MLflow file store (`<root>/<experiment>/<run>/metrics/<key>`,
/// one `timestamp value step` line per logged value, as MLflow's `FileStore` writes them),
/// every run under the store. A line that does not parse is skipped; NaN and infinities
/// come back as `None`.
pub fn read_mlflow_file_store(root: &Path, key: &str) -> std::io::Result<Vec<MetricPoint>> {
    let mut out = Vec::new();
    if key.contains(['/', '\\']) || key.starts_with('.') || !root.is_dir() {
        return Ok(out);
    }
    for experiment in std::fs::read_dir(root)?.flatten() {
        if !experiment.file_type()?.is_dir() {
            continue;
        }
        for run in std::fs::read_dir(experiment.path())?.flatten() {
            let file = run.path().join("metrics").join(key);
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(ts), Some(value)) = (f.next(), f.next()) else {
                    continue;
                };
                let (Ok(timestamp), Ok(value)) = (ts.parse::<i64>(), value.parse::<f64>()) else {
                    continue;
                };
                let step = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                out.push(MetricPoint {
                    step,
                    timestamp,
                    value: value.is_finite().then_some(value),
                });
            }
        }
    }
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

#[async_trait]
impl MlWorkspace for LocalWorkspace {
    async fn get_cluster(&self, name: &str) -> PortResult<Option<ClusterInfo>> {
        self.cluster(name)
    }

    async fn create_cluster(&self, spec: &ClusterSpec) -> PortResult<Provisioning> {
        if spec.min_nodes > self.opts.max_nodes_quota {
            return Err(PortError::Permanent(format!(
                "QuotaExceeded: minNodes {} of {} exceed the {}-node quota of this workspace; lower minNodes or request more quota",
                spec.min_nodes, spec.vm_size, self.opts.max_nodes_quota
            )));
        }
        if let Some(existing) = self.cluster(&spec.name)? {
            if !existing.vm_size.eq_ignore_ascii_case(&spec.vm_size) {
                return Err(PortError::Permanent(format!(
                    "cluster {} exists with vmSize {}; a cluster's vmSize cannot change (use another clusterName)",
                    spec.name, existing.vm_size
                )));
            }
            // Update the scale settings only, as the Azure adapter's PATCH does.
            self.set_scale(&spec.name, spec)?;
            if existing.state == "Succeeded" {
                return Ok(Provisioning::Ready(
                    self.cluster(&spec.name)?.unwrap_or(existing),
                ));
            }
        } else {
            let text = serde_json::to_string(spec).unwrap_or_default();
            self.pool.lock()
                .execute(
                    "INSERT OR IGNORE INTO clusters (name, spec, state, ready_ms) VALUES (?1, ?2, 'Creating', ?3)",
                    params![spec.name, text, now_ms() + self.opts.provision_ms],
                )
                .map_err(PortError::sqlite)?;
        }
        Ok(Provisioning::InProgress {
            operation: Some(format!("local:{}", spec.name)),
            retry_after_secs: (self.opts.provision_ms as u64).div_ceil(1000).max(1),
        })
    }

    async fn scale_back(&self, name: &str) -> PortResult<()> {
        match self.cluster_spec(name)? {
            Some(mut spec) if spec.min_nodes > 0 => {
                spec.min_nodes = 0;
                self.set_scale(name, &spec)
            }
            _ => Ok(()),
        }
    }

    async fn operation_status(&self, operation: &str) -> PortResult<OperationStatus> {
        let name = operation.strip_prefix("local:").unwrap_or(operation);
        match self.cluster(name)? {
            None => Err(PortError::NotFound(format!("operation {operation}"))),
            Some(c) if c.state == "Succeeded" => Ok(OperationStatus::Succeeded),
            Some(c) if c.state == "Failed" => {
                Ok(OperationStatus::Failed(c.error.unwrap_or_default()))
            }
            Some(_) => Ok(OperationStatus::InProgress(1)),
        }
    }

    async fn upload_folder(&self, folder: &Path, path: &str) -> PortResult<String> {
        let dest = self.datastore().join(path);
        if dest != folder {
            let _ = std::fs::remove_dir_all(&dest);
            copy_dir(folder, &dest)
                .map_err(|e| PortError::file(format!("datastore {}", dest.display()), e))?;
        }
        Ok(format!(
            "azureml://datastores/workspaceblobstore/paths/{path}"
        ))
    }

    async fn register_environment(&self, name: &str, image: &str) -> PortResult<String> {
        self.pool.lock()
            .execute(
                "INSERT INTO environments (name, image) VALUES (?1, ?2) ON CONFLICT DO UPDATE SET image = ?2",
                params![name, image],
            )
            .map_err(PortError::sqlite)?;
        Ok(format!("azureml:{name}:1"))
    }

    async fn submit_job(&self, job: &JobSubmission) -> PortResult<JobInfo> {
        let text = serde_json::to_string(job).unwrap_or_default();
        let now = now_ms();
        let inserted = self
            .pool
            .lock()
            .execute(
                "INSERT OR IGNORE INTO jobs (id, spec, status, created_ms, updated_ms) VALUES (?1, ?2, 'Queued', ?3, ?3)",
                params![job.id, text, now],
            )
            .map_err(PortError::sqlite)?;
        // A job starts only when a node fits the quota; otherwise it stays Queued and the
        // cluster reports the scale error, as Azure ML does.
        if inserted == 1 && self.busy_nodes(&job.cluster)? < self.opts.max_nodes_quota {
            self.spawn_runner(&job.id)?;
        }
        self.job(&job.id)?
            .ok_or_else(|| PortError::Transient(format!("job {} vanished", job.id)))
    }

    async fn get_job(&self, id: &str) -> PortResult<Option<JobInfo>> {
        self.job(id)
    }

    async fn cancel_job(&self, id: &str) -> PortResult<()> {
        // A job whose process never started (held for nodes) has nobody to finish it: it ends
        // Canceled at once. Otherwise its process sees the request before its next step.
        let never_started =
            self.opts.runner.is_some() && !self.job_dir(id).join("job.log").exists();
        let n = self
            .pool
            .lock()
            .execute(
                "UPDATE jobs SET cancel_requested = 1, status = CASE WHEN status IN ('Completed','Failed','Canceled') THEN status
                 WHEN ?2 AND status = 'Queued' THEN 'Canceled' ELSE 'CancelRequested' END WHERE id = ?1",
                params![id, never_started],
            )
            .map_err(PortError::sqlite)?;
        if n == 0 {
            return Err(PortError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    async fn download_job_output(&self, id: &str, dest: &Path, max_bytes: u64) -> PortResult<()> {
        let src = self.job_dir(id).join("outputs").join("model");
        if !src.is_dir() {
            return Err(PortError::NotFound(format!("job {id} has no model output")));
        }
        let output = |e| PortError::file(format!("job {id}'s model output"), e);
        let size = dir_size(&src).map_err(output)?;
        if size > max_bytes {
            return Err(PortError::Permanent(format!(
                "job {id}'s model output is {size} bytes; at most {max_bytes} are exported"
            )));
        }
        copy_dir(&src, dest).map_err(output)
    }

    async fn metric_history(&self, id: &str, key: &str) -> PortResult<Vec<MetricPoint>> {
        read_mlflow_file_store(&self.job_dir(id).join("mlruns"), key)
            .map_err(|e| PortError::file(format!("job {id} MLflow metrics"), e))
    }

    async fn register_model(&self, model: &ModelRegistration) -> PortResult<String> {
        let dest = self
            .data_dir
            .join("models")
            .join(&model.name)
            .join(&model.version);
        if dest != model.folder {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| PortError::file(format!("model folder {}", dest.display()), e))?;
            }
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&model.folder, &dest)
                .or_else(|_| copy_dir(&model.folder, &dest))
                .map_err(|e| PortError::file(format!("model folder {}", dest.display()), e))?;
        }
        let folder = std::path::absolute(&dest)
            .unwrap_or(dest)
            .display()
            .to_string();
        self.pool.lock()
            .execute(
                "INSERT OR IGNORE INTO models (name, version, folder, job_id, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![model.name, model.version, folder, model.job_id, now_ms()],
            )
            .map_err(PortError::sqlite)?;
        Ok(folder)
    }
}

/// Commands into the local broker (`<data-dir>/brokers.sqlite3`), with Subject, MessageId and
/// a scheduled enqueue time, as the Service Bus REST adapter sends them in Azure.
pub struct LocalCommandBus {
    brokers: Arc<socwire_host::brokers::Brokers>,
    topic: String,
}

impl LocalCommandBus {
    /// Opens the broker database under `data_dir`.
    pub fn open(data_dir: &Path, topic: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let brokers = socwire_host::brokers::Brokers::open(
            data_dir,
            Arc::new(socwire_host::brokers::SystemClock),
        )?;
        Ok(Self {
            brokers: Arc::new(brokers),
            topic: topic.to_string(),
        })
    }
}

#[async_trait]
impl CommandBus for LocalCommandBus {
    async fn send(&self, c: &OutgoingCommand) -> PortResult<()> {
        let message = socwire_host::brokers::SbMessage {
            message_id: c.message_id.clone(),
            body: c.body.to_string().into_bytes(),
            subject: Some(c.subject.clone()),
            content_type: Some("application/json".into()),
            scheduled_enqueue_ms: c.not_before_ms,
            ..Default::default()
        };
        self.brokers
            .service_bus(&self.topic)
            .send(message)
            .map(|_| ())
            .map_err(|e| {
                PortError::Transient(format!("sending {} to {}: {e}", c.subject, self.topic))
            })
    }
}
