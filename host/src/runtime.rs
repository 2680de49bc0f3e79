//! `socwire up`: runs the handler under the embedded brokers. One task per trigger feeds the
//! handler and routes its outputs back into the brokers, reproducing the Functions host's
//! delivery rules (PROTOCOL.md §4, ARCHITECTURE.md "Delivery semantics").

use crate::brokers::{Brokers, SystemClock};
use crate::config::{AppConfig, DataType, FunctionDef, MessageEncoding, OutputTarget, Trigger};
use crate::envelope::{self, encoded, iso, Answer};
use crate::stats::{millis, Outcome, Stats, Summary};
use crate::worker::{Worker, WorkerSpec};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use socwire_common::text::for_log;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How `socwire up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The app root (host.json, function-defs/).
    pub app_root: PathBuf,
    /// State directory (brokers, local adapters).
    pub data_dir: PathBuf,
    /// Port for HTTP triggers and reports (`http://127.0.0.1:{port}/api/...`).
    pub http_port: u16,
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

/// An opened local host: configuration loaded, data directory locked, brokers ready.
pub struct Host {
    cfg: AppConfig,
    brokers: Arc<Brokers>,
    opts: UpOptions,
    _lock: std::fs::File,
}

/// The output binding on which functions set aside inputs that can never succeed; the local
/// host only counts them (the messages go to their queue like any output).
const REJECTS_BINDING: &str = "rejects";

/// State every trigger loop shares.
pub(crate) struct Shared {
    pub(crate) cfg: AppConfig,
    pub(crate) brokers: Arc<Brokers>,
    worker: Arc<Worker>,
    pub(crate) stats: Stats,
    work: Notify,
    inflight: AtomicUsize,
    pub(crate) stopping: AtomicBool,
    pub(crate) opts: UpOptions,
}

impl Host {
    /// Loads the app, takes the data directory's lock (one host per directory), opens the
    /// brokers, creates every entity the functions use and releases what a killed run held.
    pub fn open(opts: UpOptions) -> anyhow::Result<Self> {
        let cfg = AppConfig::load(&opts.app_root)?;
        socwire_common::fs::private_dir(&opts.data_dir)?;
        let lock = std::fs::File::create(opts.data_dir.join("host.lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another `socwire up` is running on {}",
                opts.data_dir.display()
            )
        })?;
        let brokers = Arc::new(Brokers::open(&opts.data_dir, Arc::new(SystemClock))?);
        declare_entities(&cfg, &brokers, opts.lease)?;
        let released = brokers.release_leases()?;
        if released > 0 {
            tracing::info!(released, "released deliveries a previous run held");
        }
        if opts.retries_due_now {
            let n = brokers.retries_due_now()?;
            println!("socwire up: {n} retry(ies) waiting out a back-off made due now");
        }
        Ok(Self {
            cfg,
            brokers,
            opts,
            _lock: lock,
        })
    }

    /// The brokers, for seeding before [`Host::run`].
    pub fn brokers(&self) -> &Arc<Brokers> {
        &self.brokers
    }

    /// The loaded app.
    pub fn config(&self) -> &AppConfig {
        &self.cfg
    }

    /// Starts the handler and every trigger loop; returns when idle (with `exit_when_idle`) or
    /// on Ctrl-C.
    pub async fn run(self) -> anyhow::Result<Summary> {
        let began = Instant::now();
        let data_dir = std::path::absolute(&self.opts.data_dir)?;
        let listener = crate::http::bind(self.opts.http_port).await?;
        let http_addr = listener.local_addr()?;
        let mut env: BTreeMap<String, String> = self.cfg.settings.clone();
        env.insert("SOCWIRE_DATA_DIR".into(), data_dir.display().to_string());
        env.insert(
            "SOCWIRE_REPORTS_BASE_URL".into(),
            format!("http://{http_addr}/reports"),
        );
        let spec = WorkerSpec::from_config(&self.cfg, self.opts.handler_fallback.clone(), env);
        let worker = Worker::start(spec).await?;
        println!(
            "socwire up: handler ready in {:.1} ms; {} function(s); state in {}",
            millis(worker.ready_after),
            self.cfg.functions.len(),
            self.opts.data_dir.display()
        );
        let shared = Arc::new(Shared {
            stats: Stats::new(self.opts.quiet),
            cfg: self.cfg,
            brokers: self.brokers,
            worker,
            work: Notify::new(),
            inflight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            opts: self.opts,
        });
        let mut tasks = tokio::task::JoinSet::new();
        for f in &shared.cfg.functions {
            shared.stats.register(&f.name);
            let s = shared.clone();
            let name = f.name.clone();
            match &f.trigger {
                Trigger::Queue { .. } => {
                    tasks.spawn(queue_loop(s, name));
                }
                Trigger::ServiceBus { .. } => {
                    tasks.spawn(service_bus_loop(s, name));
                }
                Trigger::EventHub { .. } => {
                    for partition in 0..s.cfg.host.event_hubs.partitions {
                        tasks.spawn(event_hub_loop(s.clone(), name.clone(), partition));
                    }
                }
                Trigger::Timer { .. } => {
                    tasks.spawn(crate::timer::timer_loop(s, name));
                }
                Trigger::EventGrid { .. } | Trigger::Http { .. } => {}
            }
        }
        tasks.spawn(event_grid_loop(shared.clone()));
        let http = crate::http::serve(listener, shared.clone()).await?;
        println!("socwire up: HTTP triggers and reports at http://{http}/");

        if shared.opts.exit_when_idle {
            wait_until_idle(&shared).await?;
        } else {
            tokio::signal::ctrl_c().await?;
            println!("socwire up: stopping");
        }
        shared.stopping.store(true, Ordering::SeqCst);
        shared.work.notify_waiters();
        while shared.inflight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.abort_all();
        shared.worker.stop().await;
        Ok(Summary {
            functions: shared.stats.snapshot(),
            handler_ready_ms: millis(shared.worker.ready_after),
            handler_restarts: shared.worker.restarts(),
            elapsed_secs: began.elapsed().as_secs_f64(),
        })
    }
}

/// Creates every queue, subscription, hub and Event Grid subscription the app's functions use
/// (as deploying the app does in Azure), so messages sent before the first `up` are routed.
pub fn declare_entities(cfg: &AppConfig, brokers: &Brokers, lease: Duration) -> anyhow::Result<()> {
    use crate::brokers::{EgSubscriptionOptions, SbEntityOptions, TriggerSource};
    let sb_opts = SbEntityOptions {
        max_delivery_count: cfg.host.service_bus.max_delivery_count,
        lock_duration_ms: lease.as_millis() as i64,
        ..SbEntityOptions::default()
    };
    let topics: Vec<&str> = cfg
        .functions
        .iter()
        .filter_map(|f| match &f.trigger {
            Trigger::ServiceBus { topic: Some(t), .. } => Some(t.as_str()),
            _ => None,
        })
        .collect();
    for f in &cfg.functions {
        match &f.trigger {
            Trigger::ServiceBus {
                entity,
                topic,
                sessions,
                ..
            } => {
                let o = SbEntityOptions {
                    requires_session: *sessions,
                    ..sb_opts.clone()
                };
                match topic {
                    Some(t) => {
                        brokers.sb_ensure_topic(t, o.clone())?;
                        let sub = entity.rsplit('/').next().unwrap_or(entity);
                        // infra/servicebus-subscriptions.json: Subject filter, delivery count.
                        let declared = cfg.servicebus_subscription(t, sub);
                        let o = SbEntityOptions {
                            max_delivery_count: declared
                                .and_then(|d| d.max_delivery_count)
                                .unwrap_or(o.max_delivery_count),
                            ..o
                        };
                        let subjects = declared.and_then(|d| d.subjects.clone());
                        brokers.sb_ensure_subscription(t, sub, subjects, o)?;
                    }
                    None => brokers.sb_ensure_queue(entity, o)?,
                }
            }
            Trigger::EventHub { hub, .. } => {
                brokers.eh_ensure_hub(hub, cfg.host.event_hubs.partitions)?
            }
            Trigger::Queue { queue, .. } => brokers.queue_declare(queue)?,
            _ => {}
        }
        for out in &f.outputs {
            match &out.target {
                OutputTarget::ServiceBus(name) if !topics.contains(&name.as_str()) => {
                    brokers.sb_ensure_queue(name, sb_opts.clone())?
                }
                OutputTarget::EventHub(hub) => {
                    brokers.eh_ensure_hub(hub, cfg.host.event_hubs.partitions)?
                }
                OutputTarget::Queue(q) => brokers.queue_declare(q)?,
                _ => {}
            }
        }
    }
    for f in &cfg.functions {
        let source = match &f.trigger {
            Trigger::Queue { queue, .. } => Some(TriggerSource::Queue(queue.clone())),
            Trigger::ServiceBus { entity, .. } => Some(TriggerSource::ServiceBus(entity.clone())),
            Trigger::EventHub { hub, .. } => Some(TriggerSource::EventHub(hub.clone())),
            Trigger::EventGrid { .. } => cfg
                .eventgrid_subscriptions
                .iter()
                .find(|s| s.function == f.name)
                .map(|s| TriggerSource::EventGrid(s.topic.clone())),
            _ => None,
        };
        if let Some(source) = source {
            brokers.register_trigger(&f.name, &source)?;
        }
    }
    for s in &cfg.eventgrid_subscriptions {
        brokers.eg_subscribe(
            &s.topic,
            &s.function,
            EgSubscriptionOptions {
                max_delivery_attempts: s.max_delivery_attempts,
                event_ttl_ms: i64::from(s.event_time_to_live_minutes) * 60_000,
            },
        )?;
    }
    Ok(())
}

async fn wait_until_idle(shared: &Shared) -> anyhow::Result<()> {
    let mut consumers = crate::brokers::Consumers::default();
    for f in &shared.cfg.functions {
        match &f.trigger {
            Trigger::Queue { queue, .. } => consumers.queues.push(queue.clone()),
            Trigger::ServiceBus { entity, .. } => consumers.service_bus.push(entity.clone()),
            Trigger::EventHub {
                hub,
                consumer_group,
                ..
            } => consumers
                .event_hubs
                .push((hub.clone(), consumer_group.clone())),
            _ => {}
        }
    }
    let mut quiet_ticks = 0;
    let mut announced = None;
    loop {
        // A poll, not a synchronisation: idleness is a property of the brokers' durable state.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pending = shared.brokers.pending_work(&consumers)?;
        let running = shared.inflight.load(Ordering::SeqCst) > 0;
        if !running && pending.ready_now == 0 && pending.waiting > 0 {
            // Only back-offs and leases left: say what we wait for, once per change.
            let now = chrono::Utc::now().timestamp_millis();
            let key = (pending.waiting, pending.next_due_ms);
            if announced != Some(key) && pending.next_due_ms.is_some_and(|t| t - now > 5_000) {
                let secs = (pending.next_due_ms.unwrap_or(now) - now) / 1000;
                println!(
                    "socwire up: waiting for {} delivery(ies) held or backing off; the next is due in {}m{:02}s \
                     (a later `socwire up --retries-due-now` skips the back-off)",
                    pending.waiting,
                    secs / 60,
                    secs % 60
                );
                announced = Some(key);
            }
        }
        let busy = running || pending.ready_now > 0 || pending.waiting > 0;
        quiet_ticks = if busy { 0 } else { quiet_ticks + 1 };
        if quiet_ticks >= 3 {
            return Ok(());
        }
    }
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

    async fn idle_wait(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }

    /// Routes an answer's outputs to the brokers its output bindings name.
    pub(crate) fn route_outputs(&self, f: &FunctionDef, answer: &Answer) -> Result<usize, String> {
        let mut routed = 0;
        for out in &f.outputs {
            let Some(value) = answer.output(&out.name) else {
                continue;
            };
            if out.target == OutputTarget::Http {
                continue;
            }
            for message in envelope::messages(value) {
                let bytes = envelope::message_bytes(message, out.binary)?;
                self.put(&out.target, bytes)?;
                routed += 1;
                if out.name == REJECTS_BINDING {
                    self.stats.set_aside(&f.name, 1);
                }
            }
        }
        if routed > 0 {
            self.work.notify_waiters();
        }
        Ok(routed)
    }

    fn put(&self, target: &OutputTarget, bytes: Vec<u8>) -> Result<(), String> {
        let b = &self.brokers;
        let result = match target {
            OutputTarget::Queue(q) => {
                let wire = match self.cfg.host.queues.message_encoding {
                    MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD
                        .encode(&bytes)
                        .into_bytes(),
                    MessageEncoding::None => bytes,
                };
                b.queue_put(q, &wire, 0).map(|_| ())
            }
            OutputTarget::ServiceBus(entity) => b
                .sb_send(
                    entity,
                    crate::brokers::SbMessage {
                        message_id: uuid::Uuid::new_v4().to_string(),
                        body: bytes,
                        ..Default::default()
                    },
                )
                .map(|_| ()),
            OutputTarget::EventHub(hub) => b.eh_send(hub, None, &bytes, Map::new()).map(|_| ()),
            OutputTarget::EventGrid(topic) => {
                let events = grid_events(&bytes, topic)?;
                b.eg_publish(topic, events).map(|_| ())
            }
            OutputTarget::Blob(path) => {
                return write_blob(&self.opts.data_dir, path, &bytes);
            }
            OutputTarget::Http => Ok(()),
        };
        result.map_err(|e| format!("routing output: {e}"))
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
                    match self.brokers.sb_renew_lock(entity, lock_token) {
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

/// Validates Event Grid output events and stamps the topic, as Event Grid does on publish.
fn grid_events(bytes: &[u8], topic: &str) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Event Grid output is not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|mut e| {
            let obj = e
                .as_object_mut()
                .ok_or("Event Grid output event is not an object")?;
            for field in ["id", "subject", "eventType", "eventTime"] {
                if !obj.get(field).is_some_and(Value::is_string) {
                    return Err(format!(
                        "Event Grid output event lacks string field {field:?}"
                    ));
                }
            }
            obj.insert("topic".into(), json!(format!("local/topics/{topic}")));
            obj.entry("metadataVersion").or_insert(json!("1"));
            obj.entry("dataVersion").or_insert(json!("1.0"));
            Ok(e)
        })
        .collect()
}

fn write_blob(data_dir: &std::path::Path, template: &str, bytes: &[u8]) -> Result<(), String> {
    let path = template.replace("{rand-guid}", &uuid::Uuid::new_v4().to_string());
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == ".." || seg == "." || seg.contains('{'))
    {
        return Err(format!(
            "blob path {path:?} is not a plain container/name path"
        ));
    }
    let file = data_dir.join("blobs").join(&path);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&file, bytes).map_err(|e| format!("writing blob {path}: {e}"))
}

async fn queue_loop(s: Arc<Shared>, name: String) {
    let f = s.function(&name).clone();
    let Trigger::Queue {
        name: binding,
        queue,
    } = &f.trigger
    else {
        return;
    };
    let opts = s.cfg.host.queues.clone();
    let lease_ms = s.opts.lease.as_millis() as i64;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let batch = match s.brokers.queue_receive(queue, opts.batch_size, lease_ms) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "queue receive failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(opts.max_polling_interval.min(Duration::from_millis(200)));
            continue;
        }
        backoff = Duration::from_millis(10);
        let mut set = tokio::task::JoinSet::new();
        for msg in batch {
            let s = s.clone();
            let f = f.clone();
            let binding = binding.clone();
            let queue = queue.clone();
            let opts = opts.clone();
            set.spawn(async move {
                let text = match opts.message_encoding {
                    MessageEncoding::None => String::from_utf8(msg.body.clone()).map_err(|_| "message is not UTF-8 text".to_string()),
                    MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD
                        .decode(&msg.body)
                        .map_err(|_| "message is not base64 (host.json extensions.queues.messageEncoding is base64)".to_string())
                        .and_then(|b| String::from_utf8(b).map_err(|_| "decoded message is not UTF-8 text".to_string())),
                };
                let text = match text {
                    Ok(t) => t,
                    Err(reason) => {
                        // The host cannot even build the invocation: straight to poison, as Functions does.
                        let _ = s.brokers.queue_poison(&queue, &msg.id, &msg.pop_receipt, &reason);
                        s.stats.record(&f.name, Outcome::Poisoned, 1, &reason);
                        return None;
                    }
                };
                let mut data = Map::new();
                data.insert(binding.clone(), encoded(&text));
                let mut meta = Map::new();
                meta.insert("DequeueCount".into(), encoded(msg.dequeue_count));
                meta.insert("Id".into(), encoded(&msg.id));
                meta.insert("PopReceipt".into(), encoded(&msg.pop_receipt));
                meta.insert("InsertionTime".into(), iso(msg.insertion_ms));
                meta.insert("ExpirationTime".into(), iso(msg.expiration_ms));
                meta.insert("NextVisibleTime".into(), iso(msg.next_visible_ms));
                let result = s.deliver(&f, data, meta).await;
                match result {
                    Ok(answer) => {
                        s.stats.record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
                        return Some((msg.id, msg.pop_receipt));
                    }
                    Err(failure) => {
                        let reason = format!("{} (status {:?}, delivery {})", failure.reason, failure.status, msg.dequeue_count);
                        if msg.dequeue_count >= opts.max_dequeue_count {
                            let _ = s.brokers.queue_poison(&queue, &msg.id, &msg.pop_receipt, &reason);
                            s.stats.record(&f.name, Outcome::Poisoned, 1, &for_log(&reason, 300));
                        } else {
                            let _ = s.brokers.queue_release(&queue, &msg.id, &msg.pop_receipt, opts.visibility_timeout.as_millis() as i64);
                            s.stats.record(&f.name, Outcome::Retried, 1, &for_log(&reason, 300));
                        }
                    }
                }
                None
            });
        }
        // Every success of the batch is deleted in one transaction; a kill before it means
        // those messages are delivered again (at least once), never lost.
        let mut done = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(Some(receipt)) = joined {
                done.push(receipt);
            }
        }
        if let Err(e) = s.brokers.queue_delete_many(queue, &done) {
            tracing::error!(queue = %queue, error = %e, "deleting delivered messages failed");
        }
    }
}

async fn service_bus_loop(s: Arc<Shared>, name: String) {
    let f = s.function(&name).clone();
    let Trigger::ServiceBus {
        name: binding,
        entity,
        ..
    } = &f.trigger
    else {
        return;
    };
    let max = s.cfg.host.service_bus.max_concurrent_calls;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let batch = match s.brokers.sb_receive(entity, max) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(entity = %entity, error = %e, "Service Bus receive failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        }
        backoff = Duration::from_millis(10);
        // Messages of one session arrive in order and are handled in order; others in parallel.
        let mut set = tokio::task::JoinSet::new();
        let mut by_session: BTreeMap<Option<String>, Vec<crate::brokers::SbReceived>> =
            BTreeMap::new();
        for m in batch {
            let key = m.message.session_id.clone();
            by_session.entry(key).or_default().push(m);
        }
        for (session, msgs) in by_session {
            let groups: Vec<Vec<crate::brokers::SbReceived>> = match session {
                Some(_) => vec![msgs],
                None => msgs.into_iter().map(|m| vec![m]).collect(),
            };
            for group in groups {
                let s = s.clone();
                let f = f.clone();
                let binding = binding.clone();
                let entity = entity.clone();
                set.spawn(async move {
                    for m in group {
                        let body = String::from_utf8_lossy(&m.message.body).to_string();
                        let mut data = Map::new();
                        data.insert(binding.clone(), encoded(&body));
                        let mut meta = Map::new();
                        meta.insert("DeliveryCount".into(), encoded(m.delivery_count));
                        meta.insert("MessageId".into(), encoded(&m.message.message_id));
                        meta.insert("SequenceNumber".into(), encoded(m.sequence_number));
                        meta.insert("EnqueuedTimeUtc".into(), iso(m.enqueued_ms));
                        meta.insert("LockToken".into(), encoded(&m.lock_token));
                        for (key, value) in [
                            ("Subject", &m.message.subject),
                            ("Label", &m.message.subject),
                            ("SessionId", &m.message.session_id),
                            ("CorrelationId", &m.message.correlation_id),
                            ("ContentType", &m.message.content_type),
                        ] {
                            if let Some(v) = value {
                                meta.insert(key.into(), encoded(v));
                            }
                        }
                        meta.insert(
                            "ApplicationProperties".into(),
                            Value::Object(m.message.application_properties.clone()),
                        );
                        meta.insert(
                            "UserProperties".into(),
                            Value::Object(m.message.application_properties.clone()),
                        );
                        let result = s
                            .deliver_renewing_lock(&f, data, meta, &entity, &m.lock_token)
                            .await;
                        match result {
                            Ok(answer) => {
                                let _ = s.brokers.sb_complete(&entity, &m.lock_token);
                                s.stats.record(
                                    &f.name,
                                    Outcome::Delivered,
                                    1,
                                    &Shared::log_lines(&answer),
                                );
                            }
                            Err(failure) => {
                                let reason = format!(
                                    "{} (status {:?}, delivery {})",
                                    failure.reason, failure.status, m.delivery_count
                                );
                                let dead = matches!(
                                    s.brokers.sb_abandon(&entity, &m.lock_token, &reason),
                                    Ok(true)
                                );
                                let outcome = if dead {
                                    Outcome::DeadLettered
                                } else {
                                    Outcome::Retried
                                };
                                s.stats.record(&f.name, outcome, 1, &for_log(&reason, 300));
                                // Later messages of the session wait for this one's redelivery.
                                break;
                            }
                        }
                    }
                });
            }
        }
        while set.join_next().await.is_some() {}
    }
}

async fn event_hub_loop(s: Arc<Shared>, name: String, partition: u32) {
    let f = s.function(&name).clone();
    let Trigger::EventHub {
        name: binding,
        hub,
        consumer_group,
        many,
        data_type,
    } = &f.trigger
    else {
        return;
    };
    let max = if *many {
        s.cfg.host.event_hubs.max_event_batch_size
    } else {
        1
    };
    let retry = f.retry.clone().or_else(|| s.cfg.host.retry.clone());
    let mut cursor: Option<i64> = None;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let events = match s
            .brokers
            .eh_read(hub, consumer_group, partition, cursor, max)
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(hub = %hub, error = %e, "Event Hubs read failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = events.last().map(|e| e.sequence_number) else {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        };
        backoff = Duration::from_millis(10);
        let bodies: Vec<&[u8]> = events.iter().map(|e| e.body.as_slice()).collect();
        let trigger_value = event_hub_value(&bodies, *many, *data_type);
        let mut data = Map::new();
        let mut meta = Map::new();
        meta.insert(
            "PartitionContext".into(),
            json!({ "EventHubName": hub, "ConsumerGroup": consumer_group, "FullyQualifiedNamespace": "localhost", "PartitionId": partition.to_string() }),
        );
        if let Ok(value) = &trigger_value {
            data.insert(binding.clone(), value.clone());
        }
        if *many {
            meta.insert(
                "SequenceNumberArray".into(),
                encoded(events.iter().map(|e| e.sequence_number).collect::<Vec<_>>()),
            );
            meta.insert(
                "PartitionKeyArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| e.partition_key.clone())
                        .collect::<Vec<_>>(),
                ),
            );
            meta.insert(
                "EnqueuedTimeUtcArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| iso(e.enqueued_ms))
                        .collect::<Vec<_>>(),
                ),
            );
            meta.insert(
                "PropertiesArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| Value::Object(e.properties.clone()))
                        .collect::<Vec<_>>(),
                ),
            );
        } else {
            let e = &events[0];
            meta.insert("SequenceNumber".into(), encoded(e.sequence_number));
            meta.insert("EnqueuedTimeUtc".into(), iso(e.enqueued_ms));
            if let Some(k) = &e.partition_key {
                meta.insert("PartitionKey".into(), encoded(k));
            }
            meta.insert("Properties".into(), Value::Object(e.properties.clone()));
        }
        let count = events.len() as u64;
        let mut attempt: u32 = 0;
        loop {
            if let Some(policy) = &retry {
                meta.insert("RetryContext".into(), json!({ "RetryCount": attempt, "MaxRetryCount": policy.max_retry_count.map(i64::from).unwrap_or(-1) }));
            }
            // The host binds the trigger before it calls the handler: a body it cannot bind
            // fails the attempt without an invocation, like a handler failure.
            let result = match &trigger_value {
                Ok(_) => s.deliver(&f, data.clone(), meta.clone()).await,
                Err(reason) => Err(crate::worker::Failure {
                    status: None,
                    reason: reason.clone(),
                }),
            };
            match result {
                Ok(answer) => {
                    s.stats.record(
                        &f.name,
                        Outcome::Delivered,
                        count,
                        &format!(
                            "partition {partition}, {count} event(s) {}",
                            Shared::log_lines(&answer)
                        ),
                    );
                    break;
                }
                Err(failure) => {
                    let can_retry = retry
                        .as_ref()
                        .is_some_and(|p| p.max_retry_count.is_none_or(|m| attempt < m));
                    let reason = for_log(&failure.reason, 300);
                    if can_retry && !s.stopping.load(Ordering::SeqCst) {
                        s.stats.record(&f.name, Outcome::Retried, count, &reason);
                        let delay = retry.as_ref().map(|p| p.delay(attempt)).unwrap_or_default();
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    if s.stopping.load(Ordering::SeqCst) {
                        return; // not checkpointed: the batch is read again after restart
                    }
                    s.stats.record(
                        &f.name,
                        Outcome::Lost,
                        count,
                        &format!("retry policy spent; checkpoint moves on: {reason}"),
                    );
                    break;
                }
            }
        }
        if let Err(e) = s
            .brokers
            .eh_checkpoint(hub, consumer_group, partition, last)
        {
            tracing::error!(hub = %hub, error = %e, "checkpoint failed");
        }
        cursor = Some(last);
    }
}

/// The trigger value the Functions host hands a custom handler for Event Hubs bodies: it binds
/// `string`, `byte[]` (base64 for a custom handler) or, with no `dataType`, `object` (each body
/// read as JSON), as an array for `cardinality: many`; arrays and strings reach the handler
/// JSON-encoded in a string (`GetHttpScriptInvocationContextValue`). A body that cannot be
/// bound fails the whole batch before the handler sees it.
pub(crate) fn event_hub_value(
    bodies: &[&[u8]],
    many: bool,
    data_type: DataType,
) -> Result<Value, String> {
    let one = |(i, body): (usize, &&[u8])| -> Result<Value, String> {
        Ok(match data_type {
            DataType::String => Value::String(String::from_utf8_lossy(body).into_owned()),
            DataType::Binary => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            DataType::Unspecified => serde_json::from_slice(body).map_err(|e| {
                format!("event {i} of the batch is not JSON and the trigger has no dataType, so the host cannot bind it: {e}")
            })?,
        })
    };
    let values = bodies
        .iter()
        .enumerate()
        .map(one)
        .collect::<Result<Vec<_>, _>>()?;
    if many {
        return Ok(encoded(values));
    }
    let value = values.into_iter().next().unwrap_or(Value::Null);
    Ok(match (data_type, value) {
        // byte[] passes through and serialises as one base64 string; a JSON object stays one.
        (DataType::Binary, v) | (_, v @ Value::Object(_)) => v,
        (_, other) => encoded(other),
    })
}

/// What the Functions host's Event Grid webhook answers when the invocation failed.
const HOST_FAILURE_STATUS: u16 = 500;

async fn event_grid_loop(s: Arc<Shared>) {
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let due = match s.brokers.eg_due(32) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Event Grid read failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        }
        backoff = Duration::from_millis(10);
        let mut set = tokio::task::JoinSet::new();
        for d in due {
            let s = s.clone();
            set.spawn(async move {
                let Some(f) = s.cfg.function(&d.subscriber).cloned() else {
                    let _ = s.brokers.eg_failed(
                        d.id,
                        Some(404),
                        "subscribed function is not in this app",
                    );
                    return None;
                };
                let mut data = Map::new();
                data.insert(f.trigger.binding_name().to_string(), d.event.clone());
                let result = s.deliver(&f, data, Map::new()).await;
                match result {
                    Ok(answer) => {
                        s.stats
                            .record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
                        return Some(d.id);
                    }
                    Err(failure) => {
                        let reason = for_log(&failure.reason, 300);
                        // The Functions host answers Event Grid's push with 500 for any failed
                        // invocation, whatever the handler's status was: Event Grid retries it
                        // on its schedule, then dead-letters (docs/decisions/0010).
                        let detail =
                            format!("{} (handler status {:?})", failure.reason, failure.status);
                        let dead = matches!(
                            s.brokers
                                .eg_failed(d.id, Some(HOST_FAILURE_STATUS), &detail),
                            Ok(true)
                        );
                        let outcome = if dead {
                            Outcome::DeadLettered
                        } else {
                            Outcome::Retried
                        };
                        s.stats.record(
                            &f.name,
                            outcome,
                            1,
                            &format!("attempt {}: {reason}", d.attempt),
                        );
                    }
                }
                None
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(Some(id)) = joined {
                done.push(id);
            }
        }
        if let Err(e) = s.brokers.eg_succeeded_many(&done) {
            tracing::error!(error = %e, "recording Event Grid deliveries failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hub_bodies_reach_the_handler_as_the_real_host_binds_them() {
        let bodies: [&[u8]; 2] = [br#"{"a":1}"#, b"plain text"];
        let strings = event_hub_value(&bodies, true, DataType::String).unwrap();
        assert_eq!(strings, json!(r#"["{\"a\":1}","plain text"]"#));
        let err = event_hub_value(&bodies, true, DataType::Unspecified).unwrap_err();
        assert!(err.contains("event 1 of the batch is not JSON"), "{err}");
        let objects = event_hub_value(&bodies[..1], true, DataType::Unspecified).unwrap();
        assert_eq!(objects, json!(r#"[{"a":1}]"#));
        let binary = event_hub_value(&bodies[1..], true, DataType::Binary).unwrap();
        assert_eq!(binary, json!(r#"["cGxhaW4gdGV4dA=="]"#));
        assert_eq!(
            event_hub_value(&bodies[..1], false, DataType::Unspecified).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            event_hub_value(&bodies[1..], false, DataType::String).unwrap(),
            json!("\"plain text\"")
        );
        assert_eq!(
            event_hub_value(&bodies[1..], false, DataType::Binary).unwrap(),
            json!("cGxhaW4gdGV4dA==")
        );
    }
}
