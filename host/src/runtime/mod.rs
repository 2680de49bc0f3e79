//! `socwire up`: runs the handler under the embedded brokers. One task per trigger feeds the
//! handler and routes its outputs back into the brokers, reproducing the Functions host's
//! delivery rules (PROTOCOL.md §4, ARCHITECTURE.md "Delivery semantics").

mod eventgrid;
mod eventhub;
mod http;
mod outputs;
mod queue;
mod servicebus;
mod shared;
mod timer;

pub use shared::UpOptions;
pub use timer::parse_schedule;

use crate::brokers::{Brokers, SystemClock};
use crate::config::{AppConfig, OutputTarget, Trigger};
use crate::stats::{millis, Stats, Summary};
use crate::worker::{Worker, WorkerSpec};
use shared::Shared;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// An opened local host: configuration loaded, data directory locked, brokers ready.
pub struct Host {
    cfg: AppConfig,
    brokers: Arc<Brokers>,
    stats: Arc<Stats>,
    console: Option<axum::Router>,
    opts: UpOptions,
    _lock: std::fs::File,
}

impl Host {
    /// Loads the app, takes the data directory's lock (one host per directory), opens the
    /// brokers, creates every entity the functions use and releases what a killed run held.
    pub fn open(opts: UpOptions) -> anyhow::Result<Self> {
        let cfg = AppConfig::load(&opts.app_root)?;
        // Core Tools prints these as `func start` begins; same words, so scripts match both.
        for line in &cfg.setting_warnings {
            println!("{line}");
        }
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
            stats: Arc::new(Stats::new(opts.quiet)),
            console: None,
            opts,
            _lock: lock,
        })
    }

    /// The brokers, for seeding before [`Host::run`].
    pub fn brokers(&self) -> &Arc<Brokers> {
        &self.brokers
    }

    /// The per-function counters the run keeps (live while it runs).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Serves `router` beside the HTTP triggers (its routes must not start with `/api/` or
    /// `/reports/`). On a non-loopback `listen` address every request to it (and to the
    /// reports) must carry the function key; on loopback, requests naming another host are
    /// refused (DNS rebinding).
    pub fn mount_console(&mut self, router: axum::Router) {
        self.console = Some(router);
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
        let listener = http::bind(self.opts.listen, self.opts.http_port).await?;
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
            stats: self.stats,
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
            if shared.cfg.is_disabled(&f.name) {
                // Core Tools' line (StartHostAction.DisplayDisabledFunctions): no trigger
                // listens, the HTTP route is gone, Event Grid deliveries find no function.
                println!("Function {} is disabled.", f.name);
                continue;
            }
            shared.stats.register(&f.name);
            let s = shared.clone();
            let name = f.name.clone();
            match &f.trigger {
                Trigger::Queue { .. } => {
                    tasks.spawn(queue::queue_loop(s, name));
                }
                Trigger::ServiceBus { .. } => {
                    tasks.spawn(servicebus::service_bus_loop(s, name));
                }
                Trigger::EventHub { .. } => {
                    for partition in 0..s.cfg.host.event_hubs.partitions {
                        tasks.spawn(eventhub::event_hub_loop(s.clone(), name.clone(), partition));
                    }
                }
                Trigger::Timer { .. } => {
                    tasks.spawn(timer::timer_loop(s, name));
                }
                Trigger::EventGrid { .. } | Trigger::Http { .. } => {}
            }
        }
        tasks.spawn(eventgrid::event_grid_loop(shared.clone()));
        tasks.spawn(expire_events_loop(shared.clone()));
        let console = self.console.is_some();
        let http = http::serve(listener, shared.clone(), self.console).await?;
        println!("socwire up: HTTP triggers and reports at http://{http}/");
        if console {
            println!("socwire up: console at http://{http}/");
        }

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

/// The Event Hubs the app's functions read or write.
fn event_hubs(cfg: &AppConfig) -> Vec<String> {
    let mut hubs: Vec<String> = cfg
        .functions
        .iter()
        .flat_map(|f| {
            let trigger = match &f.trigger {
                Trigger::EventHub { hub, .. } => Some(hub.clone()),
                _ => None,
            };
            let outputs = f.outputs.iter().filter_map(|o| match &o.target {
                OutputTarget::EventHub(hub) => Some(hub.clone()),
                _ => None,
            });
            trigger.into_iter().chain(outputs).collect::<Vec<_>>()
        })
        .collect();
    hubs.sort();
    hubs.dedup();
    hubs
}

/// Drops events past each hub's retention, as Event Hubs does: at start and every minute.
pub fn expire_events(cfg: &AppConfig, brokers: &Brokers) -> anyhow::Result<usize> {
    let mut deleted = 0;
    for hub in event_hubs(cfg) {
        let retention = cfg.event_hub_retention(&hub);
        deleted += brokers.hub(&hub).expire(retention.as_millis() as i64)?;
    }
    Ok(deleted)
}

async fn expire_events_loop(s: Arc<Shared>) {
    while !s.stopping.load(Ordering::SeqCst) {
        if let Err(e) = expire_events(&s.cfg, &s.brokers) {
            tracing::error!(error = %e, "Event Hubs retention sweep failed");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
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
                    Some(t) => declare_subscription(cfg, brokers, t, entity, o)?,
                    None => brokers.service_bus(entity).ensure_queue(o)?,
                }
            }
            Trigger::EventHub { hub, .. } => {
                brokers.hub(hub).ensure(cfg.host.event_hubs.partitions)?
            }
            Trigger::Queue { queue, .. } => brokers.queue(queue).declare()?,
            _ => {}
        }
        for out in &f.outputs {
            match &out.target {
                OutputTarget::ServiceBus(name) if !topics.contains(&name.as_str()) => {
                    brokers.service_bus(name).ensure_queue(sb_opts.clone())?
                }
                OutputTarget::EventHub(hub) => {
                    brokers.hub(hub).ensure(cfg.host.event_hubs.partitions)?
                }
                OutputTarget::Queue(q) => brokers.queue(q).declare()?,
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
        brokers.topic(&s.topic).subscribe(
            &s.function,
            EgSubscriptionOptions {
                max_delivery_attempts: s.max_delivery_attempts,
                event_ttl_ms: i64::from(s.event_time_to_live_minutes) * 60_000,
            },
        )?;
    }
    Ok(())
}

/// A Service Bus topic and one subscription of it (`entity` is `topic/subscriptions/sub`),
/// with the filter and delivery count `infra/servicebus-subscriptions.json` declares.
fn declare_subscription(
    cfg: &AppConfig,
    brokers: &Brokers,
    t: &str,
    entity: &str,
    o: crate::brokers::SbEntityOptions,
) -> anyhow::Result<()> {
    brokers.service_bus(t).ensure_topic(o.clone())?;
    let sub = entity.rsplit('/').next().unwrap_or(entity);
    // infra/servicebus-subscriptions.json: Subject filter, delivery count.
    let declared = cfg.servicebus_subscription(t, sub);
    let o = crate::brokers::SbEntityOptions {
        max_delivery_count: declared
            .and_then(|d| d.max_delivery_count)
            .unwrap_or(o.max_delivery_count),
        ..o
    };
    // The rule Bicep deploys: the declared SQL filter, else
    // `sys.Label IN (subjects)`, else none (every message).
    let filter = declared.and_then(|d| {
        d.sql_filter.clone().or_else(|| {
            d.subjects
                .as_deref()
                .map(crate::brokers::SqlFilter::subjects_in)
        })
    });
    brokers
        .service_bus(t)
        .ensure_subscription(sub, filter.as_deref(), o)?;
    Ok(())
}

async fn wait_until_idle(shared: &Shared) -> anyhow::Result<()> {
    let mut consumers = crate::brokers::Consumers::default();
    for f in &shared.cfg.functions {
        if shared.cfg.is_disabled(&f.name) {
            continue; // nothing takes its messages: they wait for a run that enables it
        }
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
        // Only back-offs and leases left, the next more than 5 s away: say what we wait for,
        // once per change.
        let only_waiting = !running && pending.ready_now == 0 && pending.waiting > 0;
        if let Some(due) = pending.next_due_ms.filter(|_| only_waiting) {
            let left_ms = due - chrono::Utc::now().timestamp_millis();
            let key = (pending.waiting, due);
            if left_ms > 5_000 && announced != Some(key) {
                let secs = left_ms / 1000;
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
