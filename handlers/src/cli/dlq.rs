//! `socwire dlq`: what was set aside, shown and replayed.

use super::open_brokers;
use clap::Subcommand;
use socwire_host::brokers::DeadLetterKind;
use std::path::Path;

/// `socwire dlq` actions.
#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List what was set aside: function rejects, poison queues, Service Bus dead-letter
    /// queues, Event Grid dead letters.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its body.
    Show {
        /// Id from `dlq list`.
        id: String,
    },
    /// Put dead letters back where they came from, with fresh delivery counts.
    Replay {
        /// Ids from `dlq list`.
        #[arg(required_unless_present = "reason")]
        ids: Vec<String>,
        /// Also every dead letter whose reason contains this text (say
        /// `MaxDeliveryCountExceeded`, after a crash loop).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Lists, shows or replays dead letters.
pub fn run(data_dir: &Path, action: DlqAction) -> anyhow::Result<()> {
    let brokers = open_brokers(data_dir)?;
    match action {
        DlqAction::List { json } => {
            let letters = brokers.dead_letters(None::<DeadLetterKind>)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                for d in letters {
                    println!(
                        "{:<10} {:<32} attempts {:<3} {}",
                        d.id,
                        socwire_common::text::for_log(&d.source, 32),
                        d.attempts,
                        socwire_common::text::for_log(&d.reason, 120)
                    );
                }
            }
        }
        DlqAction::Show { id } => {
            let d = brokers
                .dead_letter(&id)?
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id:?}"))?;
            println!("{}", serde_json::to_string_pretty(&d)?);
        }
        DlqAction::Replay { mut ids, reason } => {
            if let Some(reason) = reason {
                ids.extend(
                    brokers
                        .dead_letters(None::<DeadLetterKind>)?
                        .into_iter()
                        .filter(|d| d.reason.contains(&reason))
                        .map(|d| d.id),
                );
            }
            ids.sort();
            ids.dedup();
            for id in ids {
                brokers.replay(&id)?;
                println!("replayed {id}");
            }
        }
    }
    Ok(())
}
