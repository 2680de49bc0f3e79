//! Batch mode: a file of alerts in any supported format read whole, line by line (JSON lines)
//! or as one JSON document (an array, a `records` wrapper, a query response), every alert
//! either accepted or set aside with its line, record and reason; then ranked.

use crate::alert::{AlertView, Rejected};
use crate::formats::{alerts_of_line, alerts_of_value, Format, Item};
use crate::{rank, EarlyEvictions, Engine, Subgraph};
use serde::Serialize;

/// An alert set aside while reading, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RejectLine {
    /// Line of the input (from 1).
    pub line: usize,
    /// Position within a wrapper or array on that line (0 for a lone object).
    pub record: usize,
    /// The AlertId, when one could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// What reading an input gave.
#[derive(Debug, Default)]
pub struct ReadInput<'a> {
    /// Alerts accepted by the contract, in input order.
    pub alerts: Vec<AlertView<'a>>,
    /// Everything set aside.
    pub rejects: Vec<RejectLine>,
}

impl<'a> ReadInput<'a> {
    fn take(&mut self, line: usize, items: Vec<Item<AlertView<'a>>>) {
        for item in items {
            match item.result {
                Ok(a) => self.alerts.push(a),
                Err(Rejected { alert_id, reason }) => self.rejects.push(RejectLine {
                    line,
                    record: item.record,
                    alert_id,
                    reason,
                }),
            }
        }
    }
}

/// Reads `text` in `format`: JSON lines, or, when its first line is not a JSON value of its
/// own and the whole text is one, that one document.
pub fn read_input(text: &str, format: Format) -> ReadInput<'_> {
    let mut out = ReadInput::default();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if serde_json::from_str::<serde::de::IgnoredAny>(first).is_err() {
        if let Ok(document) = serde_json::from_str::<serde_json::Value>(text) {
            let items = alerts_of_value(&document, format, None)
                .into_iter()
                .map(|i| Item {
                    record: i.record,
                    result: i.result.map(AlertView::from),
                })
                .collect();
            out.take(1, items);
            return out;
        }
    }
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.take(n + 1, alerts_of_line(line, format, None));
    }
    out
}

/// Rows of a whole stream and what the engine made of it.
#[derive(Debug, Default)]
pub struct Ranked {
    /// Every final row, ranked (rank 1 first).
    pub rows: Vec<Subgraph>,
    /// Alerts the engine accepted (each is in exactly one row).
    pub accepted: usize,
    /// Alerts the engine refused (a duplicate AlertId, older than the window), with reasons.
    pub refused: Vec<Rejected>,
    /// Alerts the count or byte bound moved out of the window early.
    pub early: EarlyEvictions,
}

/// Feeds `alerts` (in time order) through `engine`, evicting as it goes, finishes and ranks.
pub fn rank_alerts<'a>(
    engine: &mut Engine,
    alerts: impl IntoIterator<Item = &'a AlertView<'a>>,
) -> Ranked {
    let mut ranked = Ranked::default();
    for a in alerts {
        match engine.ingest_view(a) {
            Ok(()) => ranked.accepted += 1,
            Err(r) => ranked.refused.push(r),
        }
        ranked.rows.extend(engine.evict());
    }
    ranked.rows.extend(engine.finish());
    ranked.early = engine.early_evictions();
    rank(&mut ranked.rows);
    ranked
}
