//! A ranked subgraph and the row `AlertSubgraphs_CL` holds (see `ALERTS.md`), with byte bounds
//! on every field so that a row always fits a Logs Ingestion call.

use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;

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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubgraphNode {
    /// Address.
    pub ip: Arc<str>,
    /// Host name, when an alert named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Arc<str>>,
    /// `IT`, `OT` or `IT/OT` (seen in both kinds of alert).
    pub domain: &'static str,
}

/// A communication pair of a subgraph, with the alerts on it folded together.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubgraphEdge {
    /// Source address.
    pub src: Arc<str>,
    /// Destination address (the source again for host-only alerts).
    pub dst: Arc<str>,
    /// First alert time (RFC 3339).
    pub first_seen: String,
    /// Alerts on this pair.
    pub alerts: u32,
    /// Protocols seen (at most 8).
    pub protocols: Vec<Arc<str>>,
    /// Tactics seen (at most 8).
    pub tactics: Vec<Arc<str>>,
}

/// A compromise-evidence alert of a row, described.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EvidenceItem {
    /// The alert.
    pub alert_id: Arc<str>,
    /// Its time (RFC 3339).
    pub time: String,
    /// Its rule.
    pub name: Arc<str>,
    /// The stage it shows.
    pub stage: &'static str,
    /// The host it is about.
    pub host: Arc<str>,
    /// The other end (the attacker, the controller), for a network alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Arc<str>>,
}

/// A scored subgraph: a final row of the alert graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The time-ordered path of `longest_path` hops, when the row claims one (two hops or more).
    pub path: Vec<Arc<str>>,
    /// Nodes (the first 100 by first contact).
    pub nodes: Vec<SubgraphNode>,
    /// Pairs (the busiest 100).
    pub edges: Vec<SubgraphEdge>,
    /// Alert ids in id order, at most [`MAX_ROW_ALERT_IDS`] unless the engine lists them all
    /// (`Config::list_all_alert_ids`, for evaluation); `alert_count` is exact.
    pub alert_ids: Vec<Arc<str>>,
    /// Short human-readable reasons for the score.
    pub reasons: Vec<String>,
    /// The compromise-evidence alerts (the first ten), described.
    pub evidence: Vec<EvidenceItem>,
    /// What the row looks like without its times (see [`crate::feedback`]): the key analysts'
    /// verdicts are kept under.
    pub shape: String,
}

/// The JSON text of a row item, written straight into the row (the same text serde_json writes
/// for it, without its per-call machinery: a row is written for every subgraph).
trait RowJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// Appends `s` as a JSON string: printable ASCII without quote or backslash as it is, anything
/// else through serde_json's escaping.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

impl RowJson for Arc<str> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl RowJson for SubgraphNode {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Ip\":");
        write_str(out, &self.ip);
        if let Some(host) = &self.host {
            out.extend_from_slice(b",\"Host\":");
            write_str(out, host);
        }
        out.extend_from_slice(b",\"Domain\":");
        write_str(out, self.domain);
        out.push(b'}');
    }
}

impl RowJson for EvidenceItem {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"AlertId\":");
        write_str(out, &self.alert_id);
        out.extend_from_slice(b",\"Time\":");
        write_str(out, &self.time);
        out.extend_from_slice(b",\"Name\":");
        write_str(out, &self.name);
        out.extend_from_slice(b",\"Stage\":");
        write_str(out, self.stage);
        out.extend_from_slice(b",\"Host\":");
        write_str(out, &self.host);
        if let Some(peer) = &self.peer {
            out.extend_from_slice(b",\"Peer\":");
            write_str(out, peer);
        }
        out.push(b'}');
    }
}

impl RowJson for SubgraphEdge {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Src\":");
        write_str(out, &self.src);
        out.extend_from_slice(b",\"Dst\":");
        write_str(out, &self.dst);
        out.extend_from_slice(b",\"FirstSeen\":");
        write_str(out, &self.first_seen);
        let _ = write!(out, ",\"Alerts\":{},\"Protocols\":", self.alerts);
        // Tags are few and short (at most 8 of 64 characters): no budget to fit.
        write_fitting(out, &self.protocols, usize::MAX, usize::MAX);
        out.extend_from_slice(b",\"Tactics\":");
        write_fitting(out, &self.tactics, usize::MAX, usize::MAX);
        out.push(b'}');
    }
}

/// Writes a JSON array of the longest prefix of `items` (at most `max_items`) that fits
/// `budget` bytes; returns how many were left out.
fn write_fitting<T: RowJson>(
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
        x.write_json(out);
        if out.len() - start + 1 > budget {
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
        out.extend_from_slice(b"{\"TimeGenerated\":");
        write_str(out, time_generated);
        out.extend_from_slice(b",\"RowKey\":");
        write_str(out, &self.subgraph_id);
        out.extend_from_slice(b",\"SubgraphId\":");
        write_str(out, &self.subgraph_id);
        let score = (self.score * 1000.0).round() / 1000.0;
        let _ = write!(
            out,
            ",\"Rank\":{},\"Score\":{},\"FirstSeen\":\"{}\",\"LastSeen\":\"{}\",\"NodeCount\":{},\"EdgeCount\":{},\"AlertCount\":{},\"LongestPath\":{},\"CrossesItOt\":{}",
            self.rank,
            if score.is_finite() { score } else { 0.0 },
            crate::alert::TimeText(self.first_seen),
            crate::alert::TimeText(self.last_seen),
            self.node_count,
            self.edge_count,
            self.alert_count,
            self.longest_path,
            self.crosses_it_ot
        );
        if !self.path.is_empty() {
            out.extend_from_slice(b",\"Path\":");
            write_fitting(out, &self.path, 32, 4096);
        }
        out.extend_from_slice(b",\"Shape\":");
        write_str(out, &self.shape);
        out.extend_from_slice(b",\"Nodes\":");
        let nodes_omitted = write_fitting(out, &self.nodes, usize::MAX, MAX_LIST_BYTES);
        out.extend_from_slice(b",\"Edges\":");
        let edges_omitted = write_fitting(out, &self.edges, usize::MAX, MAX_LIST_BYTES);
        out.extend_from_slice(b",\"AlertIds\":");
        let ids_listed = self.alert_ids.len()
            - write_fitting(out, &self.alert_ids, MAX_ROW_ALERT_IDS, MAX_ALERT_ID_BYTES);
        let ids_omitted = (self.alert_count as usize).saturating_sub(ids_listed);
        if !self.evidence.is_empty() {
            out.extend_from_slice(b",\"Evidence\":");
            write_fitting(out, &self.evidence, usize::MAX, MAX_LIST_BYTES / 2);
        }
        out.extend_from_slice(b",\"Reasons\":[");
        let mut reasons_cut = self.reasons.len() > MAX_REASONS;
        for (i, r) in self.reasons.iter().take(MAX_REASONS).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let clipped = r
                .char_indices()
                .nth(MAX_REASON_CHARS)
                .map_or(r.as_str(), |(end, _)| &r[..end]);
            reasons_cut |= clipped.len() < r.len();
            write_str(out, clipped);
        }
        out.push(b']');
        let truncated = ids_omitted > 0
            || nodes_omitted > 0
            || edges_omitted > 0
            || reasons_cut
            || self.nodes.len() < self.node_count as usize
            || self.edges.len() < self.edge_count as usize;
        let _ = write!(
            out,
            ",\"AlertIdsOmitted\":{ids_omitted},\"Truncated\":{truncated}}}"
        );
        debug_assert!(out.len() - start <= MAX_ROW_BYTES);
    }

    /// [`Subgraph::write_row`] as a JSON value.
    pub fn to_row(&self, time_generated: &str) -> Value {
        let mut out = Vec::with_capacity(1024);
        self.write_row(time_generated, &mut out);
        serde_json::from_slice(&out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row items are written as serde_json writes them, whatever their text holds.
    #[test]
    fn row_items_are_the_json_serde_writes() {
        let odd = [
            "10.0.0.5",
            "",
            "quote \" and \\ backslash",
            "tab\t newline\n nul\u{0} del\u{7f}",
            "é ✓ \u{2028}",
        ];
        for text in odd {
            let node = SubgraphNode {
                ip: text.into(),
                host: (!text.is_empty()).then(|| text.into()),
                domain: "IT/OT",
            };
            let edge = SubgraphEdge {
                src: text.into(),
                dst: "::1".into(),
                first_seen: "2026-11-20T10:00:00.000Z".into(),
                alerts: 7,
                protocols: vec![text.into(), "SMB".into()],
                tactics: vec![],
            };
            let written = |x: &dyn RowJson| {
                let mut out = Vec::new();
                x.write_json(&mut out);
                String::from_utf8(out).unwrap()
            };
            let shared: Arc<str> = text.into();
            assert_eq!(written(&shared), serde_json::to_string(text).unwrap());
            assert_eq!(written(&node), serde_json::to_string(&node).unwrap());
            assert_eq!(written(&edge), serde_json::to_string(&edge).unwrap());
        }
    }
}
