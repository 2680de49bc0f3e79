//! `socwire alerts`: the alert graph engine in batch mode, and the labelled data generator.

use alertgraph::eval::evaluate;
use alertgraph::generate::{generate, ChainLabel, Family, GenConfig};
use alertgraph::{rank, AlertView, Config, Engine};
use clap::Subcommand;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

/// `socwire alerts` actions.
#[derive(Subcommand, Debug)]
pub enum AlertsAction {
    /// Generate IT/OT background alerts with labelled attack chains (labels in a separate file).
    Generate {
        /// Generator family: a (one flat site) or b (three plants, noisy lateral rules, busy
        /// day; written from a separate spec to check that the engine generalises).
        #[arg(long, default_value = "a")]
        family: Family,
        /// Total alerts.
        #[arg(long, default_value_t = 100_000)]
        alerts: usize,
        /// Injected attack chains.
        #[arg(long, default_value_t = 20)]
        chains: usize,
        /// Seed (same seed, same data).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Hours the stream spans.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Start time (RFC 3339); default 2026-11-21T00:00:00Z.
        #[arg(long)]
        start: Option<chrono::DateTime<chrono::Utc>>,
        /// Alerts file (JSON lines).
        #[arg(long, default_value = "alerts.jsonl")]
        output: PathBuf,
        /// Labels file (JSON); default: the output name with `.labels.json`.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Rank network-communication subgraphs of a file of alerts (JSON lines, ALERTS.md shape):
    /// every accepted alert ends in exactly one row.
    Prioritise {
        /// Alerts (JSON lines; "-" for standard input).
        #[arg(long)]
        input: PathBuf,
        /// Subgraph rows (JSON lines), best first.
        #[arg(long, default_value = "subgraphs.jsonl")]
        output: PathBuf,
        /// Write only the top K rows (0 = all).
        #[arg(long, default_value_t = 0)]
        top: usize,
        /// Window: alerts older than this before the newest are evicted (e.g. 90m, 24h, 2d).
        #[arg(long, default_value = "24h", value_parser = parse_duration_ms)]
        window: i64,
        /// Draw the top subgraphs as SVG files into this directory.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// How many subgraphs to draw with --svg.
        #[arg(long, default_value_t = 10)]
        svg_top: usize,
        /// A labels file from `generate`: print recall and alerts read at K = 2 x chains.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
}

/// Parses `90s`, `15m`, `24h`, `2d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90m, 24h or 2d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: use a unit s, m, h or d")),
    };
    if n <= 0 {
        return Err("the window must be positive".into());
    }
    Ok(n * ms)
}

/// Runs an `alerts` action.
pub fn run(action: AlertsAction) -> anyhow::Result<()> {
    match action {
        AlertsAction::Generate {
            family,
            alerts,
            chains,
            seed,
            hours,
            start,
            output,
            labels,
        } => {
            let start_ms = start.map_or(GenConfig::default().start_ms, |t| t.timestamp_millis());
            let g = generate(GenConfig {
                alerts,
                chains,
                seed,
                start_ms,
                span_ms: i64::from(hours.max(1)) * 3_600_000,
                family,
            });
            let mut out = BufWriter::new(
                std::fs::File::create(&output)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?,
            );
            for a in &g.alerts {
                serde_json::to_writer(&mut out, a)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            let labels = labels.unwrap_or_else(|| output.with_extension("labels.json"));
            std::fs::write(&labels, serde_json::to_vec_pretty(&g.labels)?)?;
            println!(
                "wrote {} alerts to {} and {} chain labels to {}",
                g.alerts.len(),
                output.display(),
                g.labels.len(),
                labels.display()
            );
            Ok(())
        }
        AlertsAction::Prioritise {
            input,
            output,
            top,
            window,
            svg,
            svg_top,
            labels,
        } => {
            // The whole input is read once and alerts borrow their text from it (no copy per
            // field); it is sorted by time before the engine sees it anyway.
            let started = std::time::Instant::now();
            let mut text = String::new();
            if input.as_os_str() == "-" {
                std::io::stdin().lock().read_to_string(&mut text)?;
            } else {
                std::fs::File::open(&input)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
            }
            let mut alerts = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
            let mut rejected = 0usize;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                if line.len() > 64 * 1024 {
                    rejected += 1;
                    eprintln!("line {}: longer than 64 KiB, skipped", n + 1);
                    continue;
                }
                match AlertView::parse(line, None) {
                    Ok(a) => alerts.push(a),
                    Err(r) => {
                        rejected += 1;
                        if rejected <= 20 {
                            eprintln!(
                                "line {}: {}",
                                n + 1,
                                socwire_common::text::for_log(&r.reason, 200)
                            );
                        }
                    }
                }
            }
            alerts.sort_by_key(|a| a.time_generated);
            let mut engine = Engine::new(Config {
                window_ms: window,
                ..Config::default()
            });
            let mut all = Vec::new();
            let mut refused = 0usize;
            for a in &alerts {
                if let Err(e) = engine.ingest_view(a) {
                    refused += 1;
                    if refused <= 20 {
                        eprintln!(
                            "alert {}: {}",
                            socwire_common::text::for_log(&a.alert_id, 64),
                            e.reason
                        );
                    }
                }
                all.extend(engine.evict());
            }
            all.extend(engine.finish());
            rank(&mut all);
            let now = alertgraph::alert::format_time(chrono::Utc::now().timestamp_millis());
            let mut out = BufWriter::new(
                std::fs::File::create(&output)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?,
            );
            let keep = if top == 0 {
                all.len()
            } else {
                top.min(all.len())
            };
            let mut row = Vec::with_capacity(4096);
            for s in &all[..keep] {
                row.clear();
                s.write_row(&now, &mut row);
                row.push(b'\n');
                out.write_all(&row)?;
            }
            out.flush()?;
            let secs = started.elapsed().as_secs_f64();
            let accepted = alerts.len() - refused;
            let early = engine.early_evictions();
            println!(
                "{} alert(s) read, {} rejected, {} refused by the engine, {} accepted; {} row(s) hold all accepted alerts; wrote {} row(s) to {} in {:.2} s{}",
                alerts.len() + rejected,
                rejected,
                refused,
                accepted,
                all.len(),
                keep,
                output.display(),
                secs,
                if early.times > 0 {
                    format!(
                        "; the window bound evicted {} alert(s) early ({} time(s))",
                        early.alerts, early.times
                    )
                } else {
                    String::new()
                }
            );
            for s in all.iter().take(5) {
                println!(
                    "  #{} score {:.2}, {} alert(s): {}",
                    s.rank,
                    s.score,
                    s.alert_count,
                    s.reasons.join("; ")
                );
            }
            if let Some(dir) = svg {
                std::fs::create_dir_all(&dir)?;
                for s in all.iter().take(svg_top) {
                    std::fs::write(
                        dir.join(format!("rank-{:03}-{}.svg", s.rank, s.subgraph_id)),
                        alertgraph::svg::render(s),
                    )?;
                }
                println!(
                    "drew {} subgraph(s) into {}",
                    svg_top.min(all.len()),
                    dir.display()
                );
            }
            if let Some(path) = labels {
                let labels: Vec<ChainLabel> = serde_json::from_slice(&std::fs::read(&path)?)?;
                let e = evaluate(&all, &labels, accepted, 2 * labels.len());
                println!(
                    "against {}: recall@{} {:.3} ({} of {} chains; a chain counts when one row holds >= 60 % of it and it is >= 20 % of that row); {} alerts to read in the top {} rows, {:.0}x fewer than the {} accepted",
                    path.display(),
                    e.k,
                    e.recall,
                    e.found,
                    e.chains,
                    e.alerts_read,
                    e.k,
                    e.reduction,
                    e.alerts
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert!(parse_duration_ms("5 weeks").is_err());
        assert!(parse_duration_ms("0h").is_err());
    }
}
