//! A ranked subgraph: the row `AlertSubgraphs_CL` holds (see `ALERTS.md`).

use serde::{Deserialize, Serialize};

/// Longest lists a row carries; counts stay exact, the lists are cut (a star of thousands of
/// scanner alerts does not need every id in one row, and a row must stay well under 1 MB).
pub const MAX_ROW_ALERT_IDS: usize = 2000;
/// See [`MAX_ROW_ALERT_IDS`].
pub const MAX_ROW_NODES: usize = 200;
/// See [`MAX_ROW_ALERT_IDS`].
pub const MAX_ROW_EDGES: usize = 300;

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
    /// Protocols seen.
    pub protocols: Vec<String>,
    /// Tactics seen.
    pub tactics: Vec<String>,
}

/// A scored subgraph.
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
    /// Nodes (cut at [`MAX_ROW_NODES`]).
    pub nodes: Vec<SubgraphNode>,
    /// Pairs (cut at [`MAX_ROW_EDGES`], busiest first).
    pub edges: Vec<SubgraphEdge>,
    /// Every alert id (rows cut it at [`MAX_ROW_ALERT_IDS`]).
    pub alert_ids: Vec<String>,
    /// Short human-readable reasons for the score.
    pub reasons: Vec<String>,
}

impl Subgraph {
    /// The row for `AlertSubgraphs_CL`, stamped with `time_generated` (RFC 3339).
    pub fn to_row(&self, time_generated: &str) -> serde_json::Value {
        let mut row = self.clone();
        row.alert_ids.truncate(MAX_ROW_ALERT_IDS);
        row.score = (row.score * 1000.0).round() / 1000.0;
        let mut v = serde_json::to_value(&row).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("TimeGenerated".into(), time_generated.into());
            obj.insert(
                "FirstSeen".into(),
                crate::alert::format_time(self.first_seen).into(),
            );
            obj.insert(
                "LastSeen".into(),
                crate::alert::format_time(self.last_seen).into(),
            );
        }
        v
    }
}
