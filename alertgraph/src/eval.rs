//! How well ranked rows surface labelled chains, measured the way issue #9 states it: a chain
//! is found when one of the top K rows holds at least 60 % of its alerts and the chain is at
//! least 20 % of that row; the analyst reads every alert of the top K rows.

use crate::generate::ChainLabel;
use crate::subgraph::Subgraph;
use crate::{Alert, Engine};
use serde::Serialize;
use std::collections::HashMap;

/// Share of a chain's alerts one row must hold.
pub const CHAIN_SHARE: f64 = 0.6;
/// Share of that row the chain must make up.
pub const ROW_SHARE: f64 = 0.2;

/// Recall and reading effort at K.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Rows read (top K).
    pub k: usize,
    /// Chains found in the top K rows.
    pub found: usize,
    /// Chains labelled.
    pub chains: usize,
    /// found / chains.
    pub recall: f64,
    /// Alerts in the stream (accepted).
    pub alerts: usize,
    /// Alerts in the top K rows: what the analyst reads.
    pub alerts_read: usize,
    /// alerts / alerts_read.
    pub reduction: f64,
    /// Rows formed.
    pub rows: usize,
}

/// Every row `alerts` (a whole stream, in time order) form in `engine`, ranked, and how many
/// of them it accepted.
pub fn rank_stream(engine: &mut Engine, alerts: &[Alert]) -> (Vec<Subgraph>, usize) {
    let views: Vec<_> = alerts.iter().map(Alert::view).collect();
    let ranked = crate::batch::rank_alerts(engine, &views);
    (ranked.rows, ranked.accepted)
}

/// Scores `ranked` (rank order) against `labels`, reading the top `k`.
pub fn evaluate(ranked: &[Subgraph], labels: &[ChainLabel], alerts: usize, k: usize) -> Evaluation {
    let top = &ranked[..k.min(ranked.len())];
    let chain_of: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.alert_ids.iter().map(move |id| (id.as_str(), i)))
        .collect();
    let mut found = vec![false; labels.len()];
    for row in top {
        let mut hits: HashMap<usize, usize> = HashMap::new();
        for id in &row.alert_ids {
            if let Some(&c) = chain_of.get(&**id) {
                *hits.entry(c).or_default() += 1;
            }
        }
        for (c, n) in hits {
            let chain_len = labels[c].alert_ids.len().max(1) as f64;
            if n as f64 >= CHAIN_SHARE * chain_len
                && n as f64 >= ROW_SHARE * f64::from(row.alert_count)
            {
                found[c] = true;
            }
        }
    }
    let found = found.iter().filter(|&&f| f).count();
    let alerts_read: usize = top.iter().map(|r| r.alert_count as usize).sum();
    Evaluation {
        k,
        found,
        chains: labels.len(),
        recall: if labels.is_empty() {
            1.0
        } else {
            found as f64 / labels.len() as f64
        },
        alerts,
        alerts_read,
        reduction: alerts as f64 / alerts_read.max(1) as f64,
        rows: ranked.len(),
    }
}
