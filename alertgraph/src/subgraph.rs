//! A ranked subgraph and the row `AlertSubgraphs_CL` holds (see `ALERTS.md`), with byte bounds
//! on every field so that a row always fits a Logs Ingestion call.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest row written (Logs Ingestion takes 1 MB per call; a row stays well under).
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// Most AlertIds listed in a row; the rest are counted in `AlertIdsOmitted`.
pub const MAX_ROW_ALERT_IDS: usize = 500;
/// Bytes of AlertIds text listed in a row.
const MAX_ALERT_ID_BYTES: usize = 24 * 1024;
/// Bytes of node and edge descriptions in a row (each).
const MAX_LIST_BYTES: usize = 12 * 1024;
/// Reasons listed, and characters per reason.
const MAX_REASONS: usize = 8;
const MAX_REASON_CHARS: usize = 300;

/// A node of a subgraph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubgraphNode {
    /// Address.
    pub ip: String,
    /// Host name, when an alert named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `IT`, `OT` or `IT/OT` (seen in both kinds of alert).
    pub domain: String,
}

/// A communication pair of a subgraph, with the alerts on it folded together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubgraphEdge {
    /// Source address.
    pub src: String,
    /// Destination address (the source again for host-only alerts).
    pub dst: String,
    /// First alert time (RFC 3339).
    pub first_seen: String,
    /// Alerts on this pair.
    pub alerts: u32,
    /// Protocols seen (at most 8).
    pub protocols: Vec<String>,
    /// Tactics seen (at most 8).
    pub tactics: Vec<String>,
}

/// A scored subgraph: a final row of the alert graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subgraph {
    /// Stable id: the same set of alerts always gives the same id.
    pub subgraph_id: String,
    /// 1 = look first.
    pub rank: u32,
    /// Higher = look first.
    pub score: f64,
    /// Oldest alert time (unix ms).
    #[serde(skip)]
    pub first_seen: i64,
    /// Newest alert time (unix ms).
    #[serde(skip)]
    pub last_seen: i64,
    /// Nodes.
    pub node_count: u32,
    /// Distinct communication pairs.
    pub edge_count: u32,
    /// Alerts.
    pub alert_count: u32,
    /// Hops of the longest time-respecting path.
    pub longest_path: u32,
    /// An IT host reached into the OT network.
    pub crosses_it_ot: bool,
    /// Nodes (the first 100 by first contact).
    pub nodes: Vec<SubgraphNode>,
    /// Pairs (the busiest 100).
    pub edges: Vec<SubgraphEdge>,
    /// Alert ids in id order, at most [`MAX_ROW_ALERT_IDS`] (`alert_count` is exact; a chain
    /// can only be "found" in a row at most five times its size, so evaluation needs no more).
    pub alert_ids: Vec<String>,
    /// Short human-readable reasons for the score.
    pub reasons: Vec<String>,
}

/// Writes a JSON array of the longest prefix of `items` (at most `max_items`) that fits
/// `budget` bytes; returns how many were left out.
fn write_fitting<T: Serialize>(
    out: &mut Vec<u8>,
    items: &[T],
    max_items: usize,
    budget: usize,
) -> usize {
    let start = out.len();
    out.push(b'[');
    let mut written = 0;
    for x in items.iter().take(max_items) {
        let before = out.len();
        if written > 0 {
            out.push(b',');
        }
        if serde_json::to_writer(&mut *out, x).is_err() || out.len() - start + 1 > budget {
            out.truncate(before);
            break;
        }
        written += 1;
    }
    out.push(b']');
    items.len() - written
}

impl Subgraph {
    /// Appends the row for `AlertSubgraphs_CL` (one JSON object, `RowKey` = `SubgraphId`),
    /// stamped with `time_generated` (RFC 3339). Lists are cut to byte budgets (counts stay
    /// exact; `Truncated` says a list or reason was cut and `AlertIdsOmitted` how many ids are
    /// not listed), so the row is at most [`MAX_ROW_BYTES`] whatever the alerts held.
    pub fn write_row(&self, time_generated: &str, out: &mut Vec<u8>) {
        let start = out.len();
        let text = |out: &mut Vec<u8>, s: &str| {
            let _ = serde_json::to_writer(&mut *out, s);
        };
        out.extend_from_slice(b"{\"TimeGenerated\":");
        text(out, time_generated);
        out.extend_from_slice(b",\"RowKey\":");
        text(out, &self.subgraph_id);
        out.extend_from_slice(b",\"SubgraphId\":");
        text(out, &self.subgraph_id);
        let score = (self.score * 1000.0).round() / 1000.0;
        let head = format!(
            ",\"Rank\":{},\"Score\":{},\"FirstSeen\":\"{}\",\"LastSeen\":\"{}\",\"NodeCount\":{},\"EdgeCount\":{},\"AlertCount\":{},\"LongestPath\":{},\"CrossesItOt\":{}",
            self.rank,
            if score.is_finite() { score } else { 0.0 },
            crate::alert::format_time(self.first_seen),
            crate::alert::format_time(self.last_seen),
            self.node_count,
            self.edge_count,
            self.alert_count,
            self.longest_path,
            self.crosses_it_ot
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b",\"Nodes\":");
        let nodes_omitted = write_fitting(out, &self.nodes, usize::MAX, MAX_LIST_BYTES);
        out.extend_from_slice(b",\"Edges\":");
        let edges_omitted = write_fitting(out, &self.edges, usize::MAX, MAX_LIST_BYTES);
        out.extend_from_slice(b",\"AlertIds\":");
        let ids_listed = self.alert_ids.len()
            - write_fitting(out, &self.alert_ids, MAX_ROW_ALERT_IDS, MAX_ALERT_ID_BYTES);
        let ids_omitted = (self.alert_count as usize).saturating_sub(ids_listed);
        out.extend_from_slice(b",\"Reasons\":[");
        let mut reasons_cut = self.reasons.len() > MAX_REASONS;
        for (i, r) in self.reasons.iter().take(MAX_REASONS).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let clipped: String = r.chars().take(MAX_REASON_CHARS).collect();
            reasons_cut |= clipped.len() < r.len();
            text(out, &clipped);
        }
        out.push(b']');
        let truncated = ids_omitted > 0
            || nodes_omitted > 0
            || edges_omitted > 0
            || reasons_cut
            || self.nodes.len() < self.node_count as usize
            || self.edges.len() < self.edge_count as usize;
        let tail = format!(",\"AlertIdsOmitted\":{ids_omitted},\"Truncated\":{truncated}}}");
        out.extend_from_slice(tail.as_bytes());
        debug_assert!(out.len() - start <= MAX_ROW_BYTES);
    }

    /// [`Subgraph::write_row`] as a JSON value.
    pub fn to_row(&self, time_generated: &str) -> Value {
        let mut out = Vec::with_capacity(1024);
        self.write_row(time_generated, &mut out);
        serde_json::from_slice(&out).unwrap_or_default()
    }
}
