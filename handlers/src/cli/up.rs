//! `socwire up`: the function set under the local host, with `--demo`.

use clap::Args;
use socwire::local::SqliteIncidentStore;
use socwire_host::brokers::SbMessage;
use socwire_host::{Host, UpOptions};
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
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
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
        let events = socwire::demo::seed(&store, args.incidents)?;
        socwire::demo::seed_workspace(&socwire::local::SqliteWorkspace::open(
            &args.data_dir.join("workspace.sqlite3"),
        )?)?;
        let published = host
            .brokers()
            .topic(socwire::demo::INCIDENT_TOPIC)
            .publish(events)?;
        println!("demo: seeded {} incident(s), published {published} incident-created event(s) to topic {}", args.incidents, socwire::demo::INCIDENT_TOPIC);
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
        let console = socwire::console::Console::open(
            args.data_dir.clone(),
            host.brokers().clone(),
            host.stats().clone(),
        )?;
        host.mount_console(socwire::console::router(console));
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
        let ledger = socwire::local::SqliteLedger::open(&args.data_dir.join("ledger.sqlite3"))?;
        for incident in store.list()? {
            let id = socwire::sentinel::IncidentId::parse(&incident.id)?;
            let comments = store.comments(&id)?;
            println!(
                "  #{:<3} {:<13} {:<3} comment(s)  {}",
                incident.properties.incident_number.unwrap_or_default(),
                incident.properties.severity.to_string(),
                comments.len(),
                socwire_common::text::for_log(&incident.properties.title, 70)
            );
            let decision =
                socwire::functions::triage_incident::recorded_decision(&ledger, &id).await?;
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
        Some(v) => socwire::settings::parse_duration_ms(v)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_ALERT_WINDOW: {e}"))?,
        None => 24 * 3_600_000,
    };
    let began = std::time::Instant::now();
    let day = socwire::demo::stream_alert_day(
        host.brokers(),
        window_ms,
        chrono::Utc::now().timestamp_millis(),
    )?;
    println!(
        "demo: sent a generated IT/OT day ({} alerts, {} attack chains) and {} alerts of background after it (one alert window, so the day's stories close) to hub {} in {} events ({:.1} s)",
        day.day_alerts,
        day.chains,
        day.tail_alerts,
        socwire::demo::ALERT_HUB,
        day.events,
        began.elapsed().as_secs_f64()
    );
    let zones = data_dir.join(socwire::console::ZONES_FILE);
    if !zones.exists() {
        std::fs::write(
            &zones,
            serde_json::to_vec_pretty(&socwire::demo::asset_zones())?,
        )?;
    }
    Ok(())
}

/// Prints the `count` best-scored alert stories the run wrote, with their reasons.
fn print_top_stories(data_dir: &Path, count: usize) -> anyhow::Result<()> {
    let tables = socwire::local::SqliteTables::open(&data_dir.join("tables.sqlite3"))?;
    let mut rows = tables.rows(socwire::functions::alert_stream::SUBGRAPH_STREAM)?;
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
    let (archive, sha) = socwire::ml::runner::write_demo_base_model(data_dir)?;
    let body = socwire::ml::runner::demo_command(DEMO_ML_COMMAND, &archive, &sha);
    let outcome = host
        .brokers()
        .service_bus(socwire::ml::commands::TOPIC)
        .send(SbMessage {
            message_id: DEMO_ML_COMMAND.into(),
            body: body.to_string().into_bytes(),
            subject: Some("ProvisionGpuCluster".into()),
            ..Default::default()
        })?;
    println!(
        "demo: sent ProvisionGpuCluster {DEMO_ML_COMMAND} (pipeline: provision → fine-tune → export) to {}: {outcome:?}",
        socwire::ml::commands::TOPIC
    );
    Ok(chrono::Utc::now())
}

fn print_ml_demo(data_dir: &Path, t0: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    let ws = socwire::local::LocalWorkspace::open(
        data_dir,
        socwire::local::LocalMlOptions {
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
