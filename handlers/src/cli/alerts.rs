//! `socwire alerts`: the alert graph engine in batch mode, and the labelled data generator.

use alertgraph::batch::{rank_alerts, read_input};
use alertgraph::eval::evaluate;
use alertgraph::feedback::{Feedback, Verdict};
use alertgraph::formats::Format;
use alertgraph::generate::{generate, ChainLabel, Family, GenConfig};
use alertgraph::{Config, Engine};
use clap::Subcommand;
use serde_json::Value;
use socwire::settings::parse_duration_ms;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

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
    /// Rank network-communication subgraphs of a file of alerts: every accepted alert ends in
    /// exactly one row, every alert set aside is written to the rejects file with its line and
    /// reason.
    Prioritise(Prioritise),
    /// Record an analyst's verdict on a row: from now on, rows of the same shape (the same
    /// rules and stages; for a campaign, the same source) rank lower (benign) or higher
    /// (true-positive). Rows `socwire up` stored are found in its data directory and the
    /// verdict goes where `alert-stream` reads it; rows of `alerts prioritise` are found in
    /// `--rows` and the verdict goes to `--store`.
    Feedback {
        /// The row's RowKey (its SubgraphId).
        row_key: String,
        /// benign or true-positive.
        #[arg(long)]
        verdict: Verdict,
        /// Rows written by `alerts prioritise` (JSON lines).
        #[arg(long)]
        rows: Option<PathBuf>,
        /// Verdicts file for `alerts prioritise --feedback` (with --rows).
        #[arg(long, default_value = "alert-feedback.json")]
        store: PathBuf,
        /// Data directory of `socwire up` (without --rows).
        #[arg(long, env = "SOCWIRE_DATA_DIR", default_value = ".socwire")]
        data_dir: PathBuf,
    },
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
            writeln!(
                std::io::stdout().lock(),
                "wrote {} alerts to {} and {} chain labels to {}",
                g.alerts.len(),
                output.display(),
                g.labels.len(),
                labels.display()
            )?;
            Ok(())
        }
        AlertsAction::Prioritise(p) => prioritise(p),
        AlertsAction::Feedback {
            row_key,
            verdict,
            rows,
            store,
            data_dir,
        } => record_feedback(&row_key, verdict, rows.as_deref(), &store, &data_dir),
    }
}

/// The Shape of the row keyed `row_key` among `rows`.
fn shape_of<'a>(rows: impl IntoIterator<Item = &'a Value>, row_key: &str) -> Option<String> {
    rows.into_iter()
        .find(|r| r.get("RowKey").and_then(Value::as_str) == Some(row_key))
        .and_then(|r| r.get("Shape").and_then(Value::as_str).map(str::to_string))
}

fn record_feedback(
    row_key: &str,
    verdict: Verdict,
    rows: Option<&Path>,
    store: &Path,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let now = alertgraph::alert::format_time(chrono::Utc::now().timestamp_millis());
    let (shape, saved_to) = match rows {
        Some(rows) => {
            let text = read_text(rows)?;
            let parsed: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let shape = shape_of(&parsed, row_key).ok_or_else(|| {
                anyhow::anyhow!(
                    "no row with RowKey {row_key:?} (and a Shape) in {}",
                    rows.display()
                )
            })?;
            let mut feedback: Feedback = match std::fs::read(store) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", store.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Feedback::default(),
                Err(e) => anyhow::bail!("{}: {e}", store.display()),
            };
            feedback.record(&shape, verdict, &now);
            std::fs::write(store, serde_json::to_vec_pretty(&feedback)?)?;
            (shape, store.display().to_string())
        }
        None => {
            use socwire::ports::StateStore;
            let path = data_dir.join("tables.sqlite3");
            if !path.exists() {
                anyhow::bail!(
                    "{} does not exist: run `socwire up` first, or give the rows of `alerts prioritise` with --rows",
                    path.display()
                );
            }
            let tables = socwire::local::SqliteTables::open(&path)?;
            let stored = tables.rows(socwire::functions::alert_stream::SUBGRAPH_STREAM)?;
            let shape = shape_of(&stored, row_key).ok_or_else(|| {
                anyhow::anyhow!(
                    "no row with RowKey {row_key:?} among the rows in {}",
                    path.display()
                )
            })?;
            let key = socwire::functions::alert_stream::FEEDBACK_KEY;
            let mut feedback: Feedback = match futures::executor::block_on(tables.load(key))? {
                Some(bytes) => serde_json::from_slice(&bytes)?,
                None => Feedback::default(),
            };
            feedback.record(&shape, verdict, &now);
            futures::executor::block_on(tables.save(key, &serde_json::to_vec(&feedback)?))?;
            (shape, format!("{} (state {key})", path.display()))
        }
    };
    writeln!(
        std::io::stdout().lock(),
        "recorded {} on rows of shape {shape} in {saved_to}",
        match verdict {
            Verdict::Benign => "benign",
            Verdict::TruePositive => "true-positive",
        }
    )?;
    Ok(())
}

/// `socwire alerts prioritise` options.
#[derive(clap::Args, Debug)]
pub struct Prioritise {
    /// Alerts: JSON lines, or one JSON document (an array, a `records` wrapper, a Log
    /// Analytics query response); "-" for standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// Input format: auto (detected per alert), alerts (ALERTS.md), suricata (EVE JSON),
    /// sentinel (SecurityAlert rows) or wazuh (alerts JSON).
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Subgraph rows (JSON lines), best first; "-" for standard output (the summary then
    /// goes to standard error).
    #[arg(long, default_value = "subgraphs.jsonl")]
    pub output: PathBuf,
    /// Alerts set aside (JSON lines: Line, Record, AlertId, Reason); default: the output's
    /// name with `.rejects.jsonl` (none written when nothing is set aside).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Write only the top K rows (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    /// Window: alerts older than this before the newest are evicted (e.g. 90m, 24h, 2d).
    #[arg(long, default_value = "24h", value_parser = parse_duration_ms)]
    pub window: i64,
    /// Draw the top subgraphs as SVG files into this directory.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// How many subgraphs to draw with --svg.
    #[arg(long, default_value_t = 10)]
    pub svg_top: usize,
    /// A labels file from `generate`: print recall and alerts read at K = 2 x chains.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Analysts' verdicts (`alerts feedback --rows … --store FILE`): rows of a shape marked
    /// benign rank lower, true positives higher.
    #[arg(long)]
    pub feedback: Option<PathBuf>,
}

fn read_text(input: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if input.as_os_str() == "-" {
        std::io::stdin().lock().read_to_string(&mut text)?;
    } else {
        std::fs::File::open(input)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    }
    Ok(text)
}

fn prioritise(p: Prioritise) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // The whole input is read once and alerts borrow their text from it (no copy per field);
    // it is sorted by time before the engine sees it.
    let text = read_text(&p.input)?;
    let mut read = read_input(&text, p.format);
    read.alerts.sort_by_key(|a| a.time_generated);
    let mut engine = Engine::new(Config {
        window_ms: p.window,
        ..Config::default()
    });
    if let Some(path) = &p.feedback {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        engine.set_feedback(
            serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
    }
    let ranked = rank_alerts(&mut engine, &read.alerts);
    let to_stdout = p.output.as_os_str() == "-";
    // The summary goes where the rows do not.
    let mut say: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    let keep = if p.top == 0 {
        ranked.rows.len()
    } else {
        p.top.min(ranked.rows.len())
    };
    write_rows(&p.output, &ranked.rows[..keep])?;
    let rejects_path = p.rejects.clone().unwrap_or_else(|| {
        if to_stdout {
            PathBuf::from("rejects.jsonl")
        } else {
            p.output.with_extension("rejects.jsonl")
        }
    });
    if !read.rejects.is_empty() {
        write_lines(&rejects_path, &read.rejects)?;
    }
    let refused_lines = read.rejects.len();
    writeln!(
        say,
        "{} alert(s) read: {} set aside while reading{}, {} refused by the engine, {} accepted; {} row(s) hold all accepted alerts; wrote {} row(s) to {} in {:.2} s{}",
        read.alerts.len() + refused_lines,
        refused_lines,
        if refused_lines > 0 {
            format!(" (in {})", rejects_path.display())
        } else {
            String::new()
        },
        ranked.refused.len(),
        ranked.accepted,
        ranked.rows.len(),
        keep,
        if to_stdout { "standard output".to_string() } else { p.output.display().to_string() },
        started.elapsed().as_secs_f64(),
        if ranked.early.times > 0 {
            format!(
                "; the window bound evicted {} alert(s) early ({} time(s))",
                ranked.early.alerts, ranked.early.times
            )
        } else {
            String::new()
        }
    )?;
    say_first_refusals_and_rows(&mut say, &read.rejects, &ranked)?;
    if let Some(dir) = &p.svg {
        draw(&mut say, dir, &ranked.rows, p.svg_top)?;
    }
    if let Some(path) = &p.labels {
        say_recall(&mut say, path, &ranked)?;
    }
    say.flush()?;
    Ok(())
}

/// Writes `rows` as JSON lines to `output` (`-`: standard output).
fn write_rows(output: &Path, rows: &[alertgraph::Subgraph]) -> anyhow::Result<()> {
    let now = alertgraph::alert::format_time(chrono::Utc::now().timestamp_millis());
    let mut out: BufWriter<Box<dyn Write>> = BufWriter::new(if output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(output)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?,
        )
    });
    let mut row = Vec::with_capacity(4096);
    for s in rows {
        row.clear();
        s.write_row(&now, &mut row);
        row.push(b'\n');
        out.write_all(&row)?;
    }
    out.flush()?;
    Ok(())
}

/// Writes `items` to `path` as JSON lines.
fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) -> anyhow::Result<()> {
    let mut out = BufWriter::new(
        std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    );
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The first five lines set aside, alerts refused and rows, for the summary.
fn say_first_refusals_and_rows(
    say: &mut dyn Write,
    rejects: &[alertgraph::batch::RejectLine],
    ranked: &alertgraph::batch::Ranked,
) -> anyhow::Result<()> {
    for r in rejects.iter().take(5) {
        writeln!(
            say,
            "  set aside: line {}{}: {}",
            r.line,
            if r.record > 0 {
                format!(" record {}", r.record)
            } else {
                String::new()
            },
            socwire_common::text::for_log(&r.reason, 200)
        )?;
    }
    for r in ranked.refused.iter().take(5) {
        writeln!(
            say,
            "  refused: alert {}: {}",
            socwire_common::text::for_log(r.alert_id.as_deref().unwrap_or("?"), 64),
            r.reason
        )?;
    }
    for s in ranked.rows.iter().take(5) {
        writeln!(
            say,
            "  #{} score {:.2}, {} alert(s): {}",
            s.rank,
            s.score,
            s.alert_count,
            socwire_common::text::for_log(&s.reasons.join("; "), 600)
        )?;
    }
    Ok(())
}

/// Draws the first `top` rows as SVG files into `dir`.
fn draw(
    say: &mut dyn Write,
    dir: &Path,
    rows: &[alertgraph::Subgraph],
    top: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for s in rows.iter().take(top) {
        std::fs::write(
            dir.join(format!("rank-{:03}-{}.svg", s.rank, s.subgraph_id)),
            alertgraph::svg::render(s),
        )?;
    }
    writeln!(
        say,
        "drew {} subgraph(s) into {}",
        top.min(rows.len()),
        dir.display()
    )?;
    Ok(())
}

/// Recall of the ranked rows against a labels file, as the generator writes it.
fn say_recall(
    say: &mut dyn Write,
    path: &Path,
    ranked: &alertgraph::batch::Ranked,
) -> anyhow::Result<()> {
    let labels: Vec<ChainLabel> = serde_json::from_slice(&std::fs::read(path)?)?;
    let e = evaluate(&ranked.rows, &labels, ranked.accepted, 2 * labels.len());
    writeln!(
        say,
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
    )?;
    Ok(())
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
