//! The command-line tools around the handler: `up`, `ml` and `demo-events` here; `send`, `status`
//! and `dlq` in `brokers`.

pub mod alerts;
mod brokers;
pub mod package;
pub mod sentinel;

pub use brokers::{dlq, send, status, DlqAction, SendArgs, SendTarget};

use crate::local::SqliteIncidentStore;
use clap::{Args, Subcommand};
use socwire_host::brokers::SbMessage;
use socwire_host::{Host, UpOptions};
use socwire_trainer::{HyperParameters, JobSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `socwire up` options.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Seed demo incidents and fire their incident-created events.
    #[arg(long)]
    pub demo: bool,
    /// How many demo incidents to seed.
    #[arg(long, default_value_t = 5, requires = "demo")]
    pub incidents: usize,
    /// Seed only the triage demo, not the GPU lifecycle.
    #[arg(long, requires = "demo")]
    pub no_ml_demo: bool,
    /// Do not stream the demo's generated day of IT/OT alerts.
    #[arg(long, requires = "demo")]
    pub no_alert_demo: bool,
    /// Exit when every broker is idle, printing a summary (for scripts and CI).
    #[arg(long)]
    pub exit_when_idle: bool,
    /// The app root (where host.json and function-defs/ are).
    #[arg(long, default_value = ".")]
    pub app_root: PathBuf,
    /// Where state is kept (brokers, local Sentinel, ledger, reports).
    #[arg(long, default_value = ".socwire", env = "SOCWIRE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Port for HTTP triggers, reports and the console.
    #[arg(long, default_value_t = 7071)]
    pub port: u16,
    /// Address to listen on. Loopback by default; on any other address the console asks for
    /// the function key (`?code=` once, then a cookie).
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: std::net::IpAddr,
    /// Serve no console.
    #[arg(long)]
    pub no_console: bool,
    /// Seconds a delivered message stays locked before it can be delivered again (also how
    /// soon a killed run's deliveries come back if they were not released at restart).
    #[arg(long, default_value_t = 300)]
    pub lease_secs: u64,
    /// Print no line per delivery, only the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Make retries that are waiting out a back-off (Event Grid's schedule runs to hours,
    /// queue visibility timeouts) due at once; attempt counts are kept.
    #[arg(long)]
    pub retries_due_now: bool,
}

/// Runs the local host.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let handler = std::env::current_exe()?;
    let mut host = Host::open(UpOptions {
        app_root: args.app_root.clone(),
        data_dir: args.data_dir.clone(),
        http_port: args.port,
        listen: args.listen,
        handler_fallback: handler,
        exit_when_idle: args.exit_when_idle,
        quiet: args.quiet,
        lease: Duration::from_secs(args.lease_secs.max(1)),
        retries_due_now: args.retries_due_now,
    })?;
    let store = if args.demo {
        let store = SqliteIncidentStore::open(&args.data_dir.join("sentinel.sqlite3"))?;
        let events = crate::demo::seed(&store, args.incidents)?;
        crate::demo::seed_workspace(&crate::local::SqliteWorkspace::open(
            &args.data_dir.join("workspace.sqlite3"),
        )?)?;
        let published = host
            .brokers()
            .eg_publish(crate::demo::INCIDENT_TOPIC, events)?;
        println!("demo: seeded {} incident(s), published {published} incident-created event(s) to topic {}", args.incidents, crate::demo::INCIDENT_TOPIC);
        Some(store)
    } else {
        None
    };
    let ml_started = if args.demo && !args.no_ml_demo {
        Some(send_demo_lifecycle(&host, &args.data_dir)?)
    } else {
        None
    };
    if args.demo && !args.no_alert_demo {
        send_demo_alerts(&host, &args.data_dir)?;
    }
    if !args.no_console {
        let console = crate::console::Console::open(
            args.data_dir.clone(),
            host.brokers().clone(),
            host.stats().clone(),
        )?;
        host.mount_console(crate::console::router(console));
    }
    let summary = host.run().await?;
    println!("\n{summary}");
    if args.demo && !args.no_alert_demo {
        print_top_stories(&args.data_dir, 3)?;
    }
    if let Some(t0) = ml_started {
        print_ml_demo(&args.data_dir, t0)?;
    }
    if let Some(store) = store {
        println!("\nincidents after triage:");
        let ledger = crate::local::SqliteLedger::open(&args.data_dir.join("ledger.sqlite3"))?;
        for incident in store.list()? {
            let id = crate::sentinel::IncidentId::parse(&incident.id)?;
            let comments = store.comments(&id)?;
            println!(
                "  #{:<3} {:<13} {:<3} comment(s)  {}",
                incident.properties.incident_number.unwrap_or_default(),
                incident.properties.severity.to_string(),
                comments.len(),
                socwire_common::text::for_log(&incident.properties.title, 70)
            );
            use crate::ports::Ledger as _;
            let decision = ledger
                .get(&crate::functions::triage_incident::decision_key(&id))
                .await?
                .and_then(|t| {
                    serde_json::from_str::<crate::functions::triage_incident::Decision>(&t).ok()
                });
            if let Some(d) = decision {
                println!(
                    "        verdict {}: {} — {}",
                    d.verdict.map(|v| v.msticpy()).unwrap_or("none"),
                    d.action(),
                    socwire_common::text::for_log(&d.reasons.join("; "), 160)
                );
                if let Some(url) = &d.report_url {
                    println!("        report: {url}");
                }
            }
        }
    }
    Ok(())
}

/// Streams the demo's generated IT/OT day into the `alerts` hub and writes the site's asset
/// map for the console (unless one is there).
fn send_demo_alerts(host: &Host, data_dir: &Path) -> anyhow::Result<()> {
    let window_ms = match host
        .config()
        .settings
        .get("SOCWIRE_ALERT_WINDOW")
        .filter(|v| !v.trim().is_empty())
    {
        Some(v) => crate::settings::parse_duration_ms(v)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_ALERT_WINDOW: {e}"))?,
        None => 24 * 3_600_000,
    };
    let began = std::time::Instant::now();
    let day = crate::demo::stream_alert_day(
        host.brokers(),
        window_ms,
        chrono::Utc::now().timestamp_millis(),
    )?;
    println!(
        "demo: sent a generated IT/OT day ({} alerts, {} attack chains) and {} alerts of background after it (one alert window, so the day's stories close) to hub {} in {} events ({:.1} s)",
        day.day_alerts,
        day.chains,
        day.tail_alerts,
        crate::demo::ALERT_HUB,
        day.events,
        began.elapsed().as_secs_f64()
    );
    let zones = data_dir.join(crate::console::ZONES_FILE);
    if !zones.exists() {
        std::fs::write(
            &zones,
            serde_json::to_vec_pretty(&crate::demo::asset_zones())?,
        )?;
    }
    Ok(())
}

/// Prints the `count` best-scored alert stories the run wrote, with their reasons.
fn print_top_stories(data_dir: &Path, count: usize) -> anyhow::Result<()> {
    let tables = crate::local::SqliteTables::open(&data_dir.join("tables.sqlite3"))?;
    let mut rows = tables.rows(crate::functions::alert_stream::SUBGRAPH_STREAM)?;
    let score = |r: &serde_json::Value| r["Score"].as_f64().unwrap_or(f64::MIN);
    rows.sort_by(|a, b| score(b).total_cmp(&score(a)));
    println!(
        "\nalert stories: {} row(s); the top {}:",
        rows.len(),
        count.min(rows.len())
    );
    for (i, r) in rows.iter().take(count).enumerate() {
        println!(
            "  {}. score {:.2}: {} alert(s), {} host(s), longest path {} hop(s){}",
            i + 1,
            score(r),
            r["AlertCount"],
            r["NodeCount"],
            r["LongestPath"],
            if r["CrossesItOt"].as_bool() == Some(true) {
                ", crosses IT→OT"
            } else {
                ""
            }
        );
        for reason in r["Reasons"].as_array().into_iter().flatten().take(4) {
            println!(
                "       - {}",
                socwire_common::text::for_log(reason.as_str().unwrap_or(""), 160)
            );
        }
    }
    Ok(())
}

/// The demo's GPU lifecycle command id (stable: a second `up --demo` changes nothing).
pub const DEMO_ML_COMMAND: &str = "demo-gpu-lifecycle-1";

/// Writes the demo base model and sends ProvisionGpuCluster with the pipeline option.
fn send_demo_lifecycle(
    host: &Host,
    data_dir: &Path,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let (archive, sha) = crate::ml::runner::write_demo_base_model(data_dir)?;
    let body = crate::ml::runner::demo_command(DEMO_ML_COMMAND, &archive, &sha);
    let outcome = host.brokers().sb_send(
        crate::ml::commands::TOPIC,
        SbMessage {
            message_id: DEMO_ML_COMMAND.into(),
            body: body.to_string().into_bytes(),
            subject: Some("ProvisionGpuCluster".into()),
            ..Default::default()
        },
    )?;
    println!(
        "demo: sent ProvisionGpuCluster {DEMO_ML_COMMAND} (pipeline: provision → fine-tune → export) to {}: {outcome:?}",
        crate::ml::commands::TOPIC
    );
    Ok(chrono::Utc::now())
}

fn print_ml_demo(data_dir: &Path, t0: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    let ws = crate::local::LocalWorkspace::open(
        data_dir,
        crate::local::LocalMlOptions {
            provision_ms: 0,
            max_nodes_quota: u32::MAX,
            runner: None,
        },
    )?;
    println!("\nGPU model lifecycle (local compute back end, CPU trainer):");
    for m in ws.models()? {
        let meta: serde_json::Value = std::fs::read(Path::new(&m.folder).join("metadata.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let took = meta["exportedAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                format!(
                    "{:.1} s after this run sent ProvisionGpuCluster",
                    (t.with_timezone(&chrono::Utc) - t0).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        println!(
            "  model {} version {}: AP {:.3} → {:.3}; {took}\n  folder {}",
            m.name,
            m.version,
            meta["averagePrecisionBefore"].as_f64().unwrap_or(f64::NAN),
            meta["averagePrecisionAfter"].as_f64().unwrap_or(f64::NAN),
            m.folder
        );
        // What a scorer that sees only intensity statistics reaches on the same evaluation set.
        let eval = Path::new(&m.folder).join("eval.safetensors");
        if let Ok(set) = socwire_trainer::baselines::read_eval_set(&eval) {
            if let Some(best) = socwire_trainer::baselines::baselines(&set)
                .into_iter()
                .max_by(|a, b| a.average_precision.total_cmp(&b.average_precision))
            {
                println!(
                    "  best intensity-statistic baseline on its evaluation set: {} AP {:.3}",
                    best.scorer, best.average_precision
                );
            }
        }
    }
    for j in ws.jobs()?.iter().filter(|j| j.status != "Completed") {
        println!(
            "  job {} {}: {}",
            j.id,
            j.status,
            j.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// `--data-dir`, for the commands that read or write the local host's state.
#[derive(Args, Debug)]
pub struct DataDir {
    /// Where the local host keeps its state.
    #[arg(
        long,
        global = true,
        default_value = ".socwire",
        env = "SOCWIRE_DATA_DIR"
    )]
    pub data_dir: PathBuf,
}

/// `socwire ml` options.
#[derive(Args, Debug)]
pub struct MlArgs {
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(flatten)]
    pub data: DataDir,
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(subcommand)]
    pub action: MlAction,
}

/// `socwire ml` actions.
#[derive(Subcommand, Debug)]
pub enum MlAction {
    /// Clusters, jobs (with metrics so far) and models of the local compute back end.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one job of the local compute back end (the workspace starts this; not for people).
    RunJob {
        /// Job id.
        #[arg(long)]
        job: String,
    },
    /// Fine-tune a base model: the command an Azure ML job runs (`run-fine-tune` submits it).
    /// Prints one telemetry event per step and evaluation, then the result, as JSON lines.
    FineTune {
        /// The job's name (the `jobId` of its telemetry).
        #[arg(long)]
        job_id: String,
        /// The base model (a safetensors file this trainer wrote).
        #[arg(long)]
        base_model: PathBuf,
        /// Passes over the fine-tuning set.
        #[arg(long, default_value_t = HyperParameters::default().epochs)]
        epochs: u32,
        /// Peak learning rate.
        #[arg(long, default_value_t = HyperParameters::default().learning_rate)]
        learning_rate: f64,
        /// Volumes per step.
        #[arg(long, default_value_t = HyperParameters::default().batch_size)]
        batch_size: usize,
        /// Seeds the data, the evaluation set and the batch order.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder for model.safetensors and eval.safetensors.
        #[arg(long)]
        out: PathBuf,
        /// Also send the telemetry to this Event Hub
        /// (`https://{namespace}.servicebus.windows.net/{hub}`), as the job's managed identity.
        #[arg(long)]
        telemetry_eventhub: Option<String>,
    },
    /// Write the demo's pre-trained base model (a tar.gz in an allow-listed folder) and print a
    /// ProvisionGpuCluster command with the pipeline option that uses it.
    DemoCommand {
        /// The command's commandId.
        #[arg(long, default_value = "demo-1")]
        command_id: String,
    },
}

/// Runs a `socwire ml` action.
pub async fn ml(args: MlArgs) -> anyhow::Result<()> {
    match args.action {
        MlAction::Status { json } => {
            let status = crate::ml::runner::status(&args.data.data_dir).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                for c in status["clusters"].as_array().into_iter().flatten() {
                    println!(
                        "cluster {:<20} {:<20} {:<10} nodes {}",
                        c["name"].as_str().unwrap_or(""),
                        c["vmSize"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or(""),
                        c["nodes"]
                    );
                }
                for j in status["jobs"].as_array().into_iter().flatten() {
                    println!(
                        "job     {:<32} {:<10} step {} loss {} AP {}",
                        j["id"].as_str().unwrap_or(""),
                        j["status"].as_str().unwrap_or(""),
                        j["metrics"]["step"],
                        j["metrics"]["loss"],
                        j["metrics"]["averagePrecision"]
                    );
                }
                for m in status["models"].as_array().into_iter().flatten() {
                    println!(
                        "model   {} v{} {}",
                        m["name"].as_str().unwrap_or(""),
                        m["version"].as_str().unwrap_or(""),
                        m["folder"].as_str().unwrap_or("")
                    );
                }
            }
        }
        MlAction::RunJob { job } => {
            let status = tokio::task::spawn_blocking(move || {
                crate::ml::runner::run_job(&args.data.data_dir, &job)
            })
            .await??;
            println!("job ended {status}");
        }
        MlAction::FineTune {
            job_id,
            base_model,
            epochs,
            learning_rate,
            batch_size,
            seed,
            out,
            telemetry_eventhub,
        } => {
            let hub = match telemetry_eventhub {
                Some(url) => {
                    let options = crate::ml::job::telemetry_options();
                    let credential = crate::azure::job_credential(&options)?;
                    Some(crate::azure::EventHubsRest::new(&url, credential, options)?)
                }
                None => None,
            };
            let spec = JobSpec {
                seed,
                base_model,
                hyper: HyperParameters {
                    epochs,
                    learning_rate,
                    batch_size,
                },
                work_dir: out,
            };
            crate::ml::job::run(job_id, spec, hub).await?;
        }
        MlAction::DemoCommand { command_id } => {
            let (archive, sha) = crate::ml::runner::write_demo_base_model(&args.data.data_dir)?;
            println!(
                "{}",
                crate::ml::runner::demo_command(&command_id, &archive, &sha)
            );
        }
    }
    Ok(())
}

/// Seeds `count` demo incidents into the local Sentinel store under `data_dir` and prints their
/// incident-created events as one Event Grid array on stdout.
pub fn demo_events(data_dir: &Path, count: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = SqliteIncidentStore::open(&data_dir.join("sentinel.sqlite3"))?;
    let events = crate::demo::seed(&store, count)?;
    println!("{}", serde_json::to_string_pretty(&events)?);
    eprintln!(
        "seeded {count} incident(s) in {}",
        data_dir.join("sentinel.sqlite3").display()
    );
    Ok(())
}
