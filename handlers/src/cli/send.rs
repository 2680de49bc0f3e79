//! `socwire send`: a message or event to a local queue, Service Bus entity, hub or Event Grid
//! topic.

use super::open_brokers;
use clap::{Args, Subcommand};
use socwire_host::brokers::SbMessage;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `socwire send` options.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(subcommand)]
    pub target: SendTarget,
    /// Read the message from this file ("-" or absent: standard input).
    #[arg(long, global = true)]
    pub file: Option<PathBuf>,
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(flatten)]
    pub data: super::DataDir,
    /// The app root, to read host.json's queue message encoding.
    #[arg(long, global = true, default_value = ".")]
    pub app_root: PathBuf,
}

/// Where `socwire send` sends.
#[derive(Subcommand, Debug)]
pub enum SendTarget {
    /// A Storage queue (encoded as host.json `extensions.queues.messageEncoding` says).
    Queue {
        /// Queue name.
        name: String,
        /// Seconds before the message becomes visible.
        #[arg(long, default_value_t = 0)]
        delay_secs: u64,
        /// Send to this Azure Storage account instead of the local broker (a connection string
        /// such as `UseDevelopmentStorage=true` for Azurite under `func start`, or an account
        /// blob URL for managed identity).
        #[arg(long)]
        storage: Option<String>,
    },
    /// A Service Bus queue or topic.
    Servicebus {
        /// Queue or topic name.
        entity: String,
        /// MessageId (duplicate detection key); a random one when absent.
        #[arg(long)]
        message_id: Option<String>,
        /// Subject (topic subscriptions filter on it).
        #[arg(long)]
        subject: Option<String>,
        /// Session id.
        #[arg(long)]
        session_id: Option<String>,
        /// Deliver no earlier than this RFC 3339 time.
        #[arg(long)]
        scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Send each non-empty input line as its own message (with --message-id X, the n-th
        /// line's MessageId is X-n, counting from 1).
        #[arg(long)]
        lines: bool,
    },
    /// An Event Hub (one event per line with --lines).
    Eventhub {
        /// Hub name.
        hub: String,
        /// Partition key.
        #[arg(long)]
        partition_key: Option<String>,
        /// Send each non-empty input line as its own event.
        #[arg(long)]
        lines: bool,
    },
    /// An Event Grid topic (an event object or an array, Event Grid or CloudEvents schema).
    Eventgrid {
        /// Topic name.
        topic: String,
    },
}

/// The non-blank lines of `body`, each as its own message.
fn split_lines(body: &[u8]) -> Vec<Vec<u8>> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

fn read_input(file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    const MAX: u64 = 64 * 1024 * 1024;
    let mut buf = Vec::new();
    match file.as_deref() {
        Some(p) if p != Path::new("-") => {
            std::fs::File::open(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .take(MAX + 1)
                .read_to_end(&mut buf)?;
        }
        _ => {
            std::io::stdin().take(MAX + 1).read_to_end(&mut buf)?;
        }
    }
    anyhow::ensure!(buf.len() as u64 <= MAX, "input is over {MAX} bytes");
    Ok(buf)
}

/// Sends one message or event.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let body = read_input(&args.file)?;
    let brokers = open_brokers(&args.data.data_dir)?;
    // Declare the app's entities first, as a deployment would, so this message is routed.
    let app = socwire_host::config::AppConfig::load(&args.app_root);
    match &app {
        Ok(cfg) => {
            socwire_host::runtime::declare_entities(cfg, &brokers, Duration::from_secs(300))?
        }
        Err(e) => eprintln!(
            "note: no app at {} ({e:#}); sending without declaring its entities",
            args.app_root.display()
        ),
    }
    match args.target {
        SendTarget::Queue {
            name,
            delay_secs,
            storage,
        } => {
            // host.json's queue encoding (base64 when there is no app).
            let base64 = app.as_ref().map_or(true, |c| {
                c.host.queues.message_encoding == socwire_host::config::MessageEncoding::Base64
            });
            send_to_queue(
                &brokers,
                &name,
                body,
                base64,
                delay_secs,
                storage.as_deref(),
            )
            .await?;
        }
        SendTarget::Servicebus {
            entity,
            message_id,
            subject,
            session_id,
            scheduled_at,
            lines,
        } => {
            let bodies = if lines {
                split_lines(&body)
            } else {
                vec![body]
            };
            for (n, body) in bodies.into_iter().enumerate() {
                let message = SbMessage {
                    message_id: line_message_id(message_id.as_deref(), lines, n),
                    body,
                    subject: subject.clone(),
                    session_id: session_id.clone(),
                    scheduled_enqueue_ms: scheduled_at.map(|t| t.timestamp_millis()),
                    ..Default::default()
                };
                let outcome = brokers.service_bus(&entity).send(message)?;
                println!("{entity}: {outcome:?}");
            }
        }
        SendTarget::Eventhub {
            hub,
            partition_key,
            lines,
        } => {
            let events = if lines {
                split_lines(&body)
            } else {
                vec![body]
            };
            for e in &events {
                brokers
                    .hub(&hub)
                    .send(partition_key.as_deref(), e, Default::default())?;
            }
            println!("sent {} event(s) to {hub}", events.len());
        }
        SendTarget::Eventgrid { topic } => {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| anyhow::anyhow!("event is not JSON: {e}"))?;
            let events = match v {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            let n = brokers.topic(&topic).publish(events)?;
            println!("published to {topic}: {n} delivery(ies) scheduled");
        }
    }
    Ok(())
}

/// Puts one message on a storage queue: the local broker's, or with `storage` an Azure
/// Storage account's (Azurite under `func start`).
async fn send_to_queue(
    brokers: &socwire_host::brokers::Brokers,
    name: &str,
    body: Vec<u8>,
    base64: bool,
    delay_secs: u64,
    storage: Option<&str>,
) -> anyhow::Result<()> {
    let wire = if base64 {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(&body)
            .into_bytes()
    } else {
        body
    };
    if let Some(storage) = storage {
        let text = String::from_utf8(wire).map_err(|_| {
            anyhow::anyhow!(
                "an Azure queue message must be UTF-8 text (or set messageEncoding to base64)"
            )
        })?;
        let account = socwire::azure::StorageAccount::parse(storage)?;
        let queue = socwire::azure::AzureQueue::new(&account, name)?;
        queue.create_if_missing().await?;
        let id = queue
            .put(&text, u32::try_from(delay_secs).unwrap_or(u32::MAX))
            .await?;
        println!("queued {id} on {name} at {}", account.queue_endpoint);
        return Ok(());
    }
    let id = brokers.queue(name).put(&wire, (delay_secs * 1000) as i64)?;
    println!("queued {id} on {name}");
    Ok(())
}

/// The MessageId of the `n`th message (from 0): the given id, suffixed `-{n+1}` when one
/// message is sent per line; a new UUID when none is given.
fn line_message_id(given: Option<&str>, lines: bool, n: usize) -> String {
    match (given, lines) {
        (Some(id), true) => format!("{id}-{}", n + 1),
        (Some(id), false) => id.to_string(),
        (None, _) => uuid::Uuid::new_v4().to_string(),
    }
}
