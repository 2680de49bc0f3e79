//! What every trigger loop shares: the options `socwire up` runs under, the loaded app, the
//! brokers, the handler and the counters; each delivery goes through [`Shared::deliver`].

use crate::brokers::{BrokerResult, Brokers};
use crate::config::{AppConfig, FunctionDef};
use crate::envelope::{self, Answer};
use crate::stats::Stats;
use crate::worker::Worker;
use serde_json::{Map, Value};
use socwire_common::text::for_log;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Logs a settlement (complete, release, poison, a failed attempt) the brokers could not
/// record. Nothing is lost: the delivery stays leased and comes back when its lease ends, so
/// the handler sees it again; the log says why. Gives the recorded answer, if any.
pub(super) fn log_unsettled<T>(what: &str, entity: &str, result: BrokerResult<T>) -> Option<T> {
    result
        .inspect_err(|e| {
            tracing::error!(entity = %entity, error = %e, "{what} could not be recorded; the delivery comes back after its lease");
        })
        .ok()
}

/// How `socwire up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The app root (host.json, function-defs/).
    pub app_root: PathBuf,
    /// State directory (brokers, local adapters).
    pub data_dir: PathBuf,
    /// Port for HTTP triggers, reports and the console (`http://127.0.0.1:{port}/api/...`).
    pub http_port: u16,
    /// Address to listen on: loopback by default; any other address makes the console ask for
    /// the function key.
    pub listen: std::net::IpAddr,
    /// The handler binary to use when host.json's `defaultExecutablePath` is not in the app root.
    pub handler_fallback: PathBuf,
    /// Stop when every broker is idle and print the summary.
    pub exit_when_idle: bool,
    /// No line per delivery.
    pub quiet: bool,
    /// How long a delivered message stays locked before another delivery may take it.
    pub lease: Duration,
    /// At start, make retries that are waiting out a back-off due now (attempt counts kept).
    pub retries_due_now: bool,
}

/// State every trigger loop shares.
pub(crate) struct Shared {
    pub(crate) cfg: AppConfig,
    pub(crate) brokers: Arc<Brokers>,
    pub(super) worker: Arc<Worker>,
    pub(crate) stats: Arc<Stats>,
    pub(super) work: Notify,
    pub(super) inflight: AtomicUsize,
    pub(crate) stopping: AtomicBool,
    pub(crate) opts: UpOptions,
}

struct InFlight<'a>(&'a AtomicUsize);
impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(crate) fn function(&self, name: &str) -> &FunctionDef {
        self.cfg
            .function(name)
            .expect("loops run only for loaded functions")
    }

    pub(super) async fn idle_wait(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }

    /// One trigger delivery: stamps `sys` into the metadata, invokes `f` and routes its
    /// outputs to the brokers. A routing failure fails the delivery like a handler failure.
    pub(crate) async fn deliver(
        &self,
        f: &FunctionDef,
        data: Map<String, Value>,
        mut meta: Map<String, Value>,
    ) -> Result<Answer, crate::worker::Failure> {
        meta.insert(
            "sys".into(),
            envelope::sys(&f.name, chrono::Utc::now().timestamp_millis()),
        );
        let answer = self.invoke(&f.name, &envelope::request(data, meta)).await?;
        self.route_outputs(f, &answer)
            .map_err(|reason| crate::worker::Failure {
                status: None,
                reason,
            })?;
        Ok(answer)
    }

    /// [`Shared::deliver`] for a Service Bus message, renewing its lock every half lock
    /// duration while the invocation runs, for at most `maxAutoLockRenewalDuration`, as the
    /// Service Bus extension's message pump does; a long invocation therefore never sees its
    /// message redelivered to a second, overlapping run before that limit.
    pub(crate) async fn deliver_renewing_lock(
        &self,
        f: &FunctionDef,
        data: Map<String, Value>,
        meta: Map<String, Value>,
        entity: &str,
        lock_token: &str,
    ) -> Result<Answer, crate::worker::Failure> {
        let renew_every = (self.opts.lease / 2).max(Duration::from_millis(50));
        let renew_until = Instant::now() + self.cfg.host.service_bus.max_auto_lock_renewal;
        let delivery = self.deliver(f, data, meta);
        tokio::pin!(delivery);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        loop {
            tokio::select! {
                result = &mut delivery => return result,
                _ = ticker.tick(), if Instant::now() < renew_until => {
                    match self.brokers.service_bus(entity).renew_lock(lock_token) {
                        Ok(Some(_)) => {}
                        Ok(None) => tracing::warn!(entity = %entity, "message lock lost during the invocation"),
                        Err(e) => tracing::error!(entity = %entity, error = %e, "lock renewal failed"),
                    }
                }
            }
        }
    }

    /// Invokes `function` with `request`, tracking in-flight work.
    pub(crate) async fn invoke(
        &self,
        function: &str,
        request: &Value,
    ) -> Result<Answer, crate::worker::Failure> {
        let _guard = InFlight::enter(&self.inflight);
        self.worker.invoke(function, request).await
    }

    pub(crate) fn log_lines(answer: &Answer) -> String {
        answer
            .logs
            .iter()
            .map(|l| for_log(l, 200))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}
