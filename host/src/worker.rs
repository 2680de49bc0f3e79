//! The handler process: started exactly as the Functions host starts a custom handler (the
//! executable and arguments from host.json, `FUNCTIONS_CUSTOMHANDLER_PORT` set to a free port,
//! app settings as environment), polled on `GET /` until it answers, restarted if it dies.

use crate::config::AppConfig;
use crate::envelope::Answer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::RwLock;

/// How a failed invocation failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The handler's status, or None when no answer came (connection lost, timeout).
    pub status: Option<u16>,
    /// The reason: the handler's `error` text, or the transport error.
    pub reason: String,
}

/// What the local host needs to start the handler.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Executable.
    pub program: PathBuf,
    /// Arguments (host.json `arguments`, `%VAR%` expanded).
    pub args: Vec<String>,
    /// Environment for the child.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub dir: PathBuf,
    /// Invocation timeout (functionTimeout + 1 min, as the host sets it).
    pub timeout: Duration,
}

impl WorkerSpec {
    /// Resolves the handler from host.json: `defaultExecutablePath` relative to the app root if
    /// that file exists, else `fallback` (the running `socwire` binary, which is the handler).
    pub fn from_config(cfg: &AppConfig, fallback: PathBuf, env: BTreeMap<String, String>) -> Self {
        let candidate = cfg.root.join(&cfg.host.executable);
        let program = if candidate.is_file() {
            candidate
        } else {
            fallback
        };
        let args = cfg
            .host
            .arguments
            .iter()
            .map(|a| expand_vars(a, &env))
            .collect();
        Self {
            program,
            args,
            env,
            dir: cfg.root.clone(),
            timeout: cfg.host.function_timeout + Duration::from_secs(60),
        }
    }
}

/// Expands `%NAME%` from `env` (unknown names are left as they are).
pub fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

struct Running {
    base_url: String,
    child: Child,
}

/// A supervised handler process.
pub struct Worker {
    spec: WorkerSpec,
    client: reqwest::Client,
    running: RwLock<Running>,
    /// How long the first start took to answer `GET /`.
    pub ready_after: Duration,
    restarts: std::sync::atomic::AtomicU64,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the handler on a free port and waits for it, trying another port when the handler
/// exits during start-up (another process can take a port between our probe and its bind).
async fn start(spec: &WorkerSpec, client: &reqwest::Client) -> anyhow::Result<(Running, Duration)> {
    const ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match start_once(spec, client).await? {
            Ok(ready) => return Ok(ready),
            Err(status) if attempt < ATTEMPTS => {
                tracing::warn!(%status, attempt, "handler exited during start-up; trying another port");
                attempt += 1;
            }
            Err(status) => {
                anyhow::bail!("handler exited during start-up with {status}, {ATTEMPTS} times")
            }
        }
    }
}

/// One start: the running handler once it answers with its worker id, or the exit status of a
/// handler that exited before it answered.
async fn start_once(
    spec: &WorkerSpec,
    client: &reqwest::Client,
) -> anyhow::Result<Result<(Running, Duration), std::process::ExitStatus>> {
    let port = free_port()?;
    let worker_id = uuid::Uuid::new_v4().to_string();
    let began = Instant::now();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.dir)
        .envs(&spec.env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
        .env("FUNCTIONS_APP_ROOT_PATH", &spec.dir)
        // The handler exits when this pipe closes, so a killed host leaves no orphan behind.
        .env("SOCWIRE_EXIT_ON_STDIN_EOF", "1")
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start handler {}: {e}", spec.program.display()))?;
    let base_url = format!("http://127.0.0.1:{port}");
    let deadline = began + Duration::from_secs(30);
    loop {
        // Only our own handler counts: it answers with the worker id it was given.
        if let Ok(answer) = client.get(&base_url).send().await {
            if answer.text().await.is_ok_and(|t| t.contains(&worker_id)) {
                break;
            }
        }
        if let Some(status) = child.try_wait()? {
            return Ok(Err(status));
        }
        if Instant::now() > deadline {
            anyhow::bail!("handler did not answer GET / on port {port} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Ok((Running { base_url, child }, began.elapsed())))
}

impl Worker {
    /// Starts the handler and waits until it is ready.
    pub async fn start(spec: WorkerSpec) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(spec.timeout)
            .pool_max_idle_per_host(64)
            .build()?;
        let (running, ready_after) = start(&spec, &client).await?;
        Ok(Arc::new(Self {
            spec,
            client,
            running: RwLock::new(running),
            ready_after,
            restarts: Default::default(),
        }))
    }

    /// How many times the handler had to be restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// POSTs an invocation to `/{function}`. Any non-2xx answer, or no answer, is a failure.
    pub async fn invoke(
        &self,
        function: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, Failure> {
        let base = self.running.read().await.base_url.clone();
        let sent = self
            .client
            .post(format!("{base}/{function}"))
            .header(
                "X-Azure-Functions-InvocationId",
                uuid::Uuid::new_v4().to_string(),
            )
            .header(
                "User-Agent",
                concat!("socwire-host/", env!("CARGO_PKG_VERSION")),
            )
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.ensure_running().await;
                return Err(Failure {
                    status: None,
                    reason: format!("handler unreachable: {e}"),
                });
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Failure {
            status: Some(status),
            reason: format!("reading answer: {e}"),
        })?;
        if !(200..300).contains(&status) {
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(500).collect());
            return Err(Failure {
                status: Some(status),
                reason,
            });
        }
        Answer::parse(&bytes).map_err(|reason| Failure {
            status: Some(status),
            reason,
        })
    }

    /// Restarts the handler if its process has exited.
    async fn ensure_running(&self) {
        let mut running = self.running.write().await;
        if let Ok(None) = running.child.try_wait() {
            return;
        }
        tracing::warn!("handler process exited; restarting it");
        match start(&self.spec, &self.client).await {
            Ok((fresh, _)) => {
                *running = fresh;
                self.restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "handler restart failed"),
        }
    }

    /// Stops the handler.
    pub async fn stop(&self) {
        let mut running = self.running.write().await;
        let _ = running.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_vars_expand_from_settings() {
        let mut env = BTreeMap::new();
        env.insert("MODE".to_string(), "fast".to_string());
        assert_eq!(expand_vars("--mode=%MODE%", &env), "--mode=fast");
        assert_eq!(expand_vars("100%", &env), "100%");
        assert_eq!(expand_vars("%NOPE%x", &env), "%NOPE%x");
    }
}
