//! The `socwire` command: the custom handler (`serve`), the local Functions host (`up`), and
//! tools for its brokers and the alert graph engine.

// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use clap::{Parser, Subcommand};
use socwire::{serve, settings::Settings};
use std::process::ExitCode;

mod cli;

/// mimalloc instead of the C library's allocator: the alert engine builds and frees many small
/// strings and vectors per row, and with glibc's malloc allocation was about 30 % of its time
/// (decision 0005: streaming ingest 178k → 602k alerts/s at 1M alerts).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "socwire",
    version,
    about = "Security operations and GPU ML functions for Azure, and a local host to run them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the custom handler (what host.json starts; listens on FUNCTIONS_CUSTOMHANDLER_PORT).
    Serve,
    /// Run the function set locally: the handler under an embedded host with durable brokers.
    Up(cli::up::UpArgs),
    /// Send a message or event to a local queue, Service Bus entity, hub or Event Grid topic.
    Send(cli::send::SendArgs),
    /// Show message counts per queue, subscription, hub and topic.
    Status {
        #[command(flatten)]
        data: cli::DataDir,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Seed demo incidents into the local Sentinel store and print their incident-created
    /// events (an Event Grid array), e.g. to post to `func start`'s Event Grid webhook.
    DemoEvents {
        #[command(flatten)]
        data: cli::DataDir,
        /// How many incidents.
        #[arg(long, default_value_t = 3)]
        incidents: usize,
    },
    /// Build the deployable zip: the handler binary, host.json and one folder per function.
    Package(cli::package::PackageArgs),
    /// Alert graph engine: generate labelled IT/OT alerts, rank subgraphs of a file of alerts.
    Alerts {
        #[command(subcommand)]
        action: cli::alerts::AlertsAction,
    },
    /// Local Sentinel: import incidents (JSONL) and export them with what triage did.
    Sentinel {
        #[command(flatten)]
        data: cli::DataDir,
        #[command(subcommand)]
        action: cli::sentinel::SentinelAction,
    },
    /// The GPU model lifecycle: status of the local compute back end, its job runner.
    Ml(cli::ml::MlArgs),
    /// Inspect and replay poison queues, dead-letter queues and Event Grid dead letters.
    Dlq {
        #[command(flatten)]
        data: cli::DataDir,
        #[command(subcommand)]
        action: cli::dlq::DlqAction,
    },
}

/// Logs go to stderr: JSON lines in Azure (`WEBSITE_INSTANCE_ID` is set there, and Application
/// Insights reads the host's copy of the worker's output) or with `SOCWIRE_LOG_FORMAT=json`;
/// otherwise text, coloured only when stderr is a terminal.
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOCWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match std::env::var("SOCWIRE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => std::env::var_os("WEBSITE_INSTANCE_ID").is_some(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().with_ansi(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// True when `e` comes from writing into a pipe whose reader has closed it.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => {
                let settings = Settings::from_env().map_err(anyhow::Error::msg)?;
                serve::run_from_settings(settings).await
            }
            Command::Up(args) => cli::up::run(args).await,
            Command::Send(args) => cli::send::run(args).await,
            Command::Status { data, json } => cli::status::run(&data.data_dir, json),
            Command::Dlq { data, action } => cli::dlq::run(&data.data_dir, action),
            Command::Sentinel { data, action } => cli::sentinel::run(&data.data_dir, action).await,
            Command::Ml(args) => cli::ml::run(args).await,
            Command::Alerts { action } => cli::alerts::run(action),
            Command::Package(args) => cli::package::run(args),
            Command::DemoEvents { data, incidents } => {
                cli::demo_events::run(&data.data_dir, incidents)
            }
        }
    });
    // Do not wait for blocking tasks (the stdin watch of `serve` never ends by itself): a
    // handler that failed, say on a port another process took, must exit so the host sees it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`… | head -1`): what it wanted, it has.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
