use crate::ports::{PortError, PortResult, ThreatIntel, TiFinding, TiSeverity};
use crate::sentinel::Indicator;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::HashMap;

/// One entry of an offline threat-intelligence list.
#[derive(Debug, Clone, Deserialize)]
pub struct TiEntry {
    /// ipv4, ipv6, url, domain or filehash.
    pub kind: String,
    /// The indicator value.
    pub value: String,
    /// Verdict.
    pub severity: TiSeverity,
    /// Where the entry came from.
    pub source: String,
    /// Short detail for the report.
    #[serde(default)]
    pub details: String,
}

/// Threat intelligence from a local list (JSON array of [`TiEntry`]): the offline provider.
/// The list shipped in `handlers/data/offline-ti.json` uses documentation address ranges and
/// reserved domains only.
pub struct OfflineThreatIntel {
    entries: HashMap<(String, String), Vec<TiEntry>>,
}

/// The list compiled into the binary, used when no `SOCWIRE_TI_FILE` is set.
/// (see [`super::threat_intel_builtin`])
pub const BUILTIN_TI_LIST: &str = include_str!("../../data/offline-ti.json");

impl OfflineThreatIntel {
    /// Parses a JSON list.
    pub fn from_json(text: &str) -> PortResult<Self> {
        let list: Vec<TiEntry> = serde_json::from_str(text)
            .map_err(|e| PortError::Permanent(format!("threat-intel list: {e}")))?;
        let mut entries: HashMap<(String, String), Vec<TiEntry>> = HashMap::new();
        for entry in list {
            let key = (
                entry.kind.to_ascii_lowercase(),
                normalise(&entry.kind, &entry.value),
            );
            entries.entry(key).or_default().push(entry);
        }
        Ok(Self { entries })
    }

    /// Number of distinct indicators known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn normalise(kind: &str, value: &str) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "url" => value.trim().to_string(),
        _ => value.trim().to_ascii_lowercase(),
    }
}

#[async_trait]
impl ThreatIntel for OfflineThreatIntel {
    async fn lookup(&self, indicator: &Indicator) -> PortResult<Vec<TiFinding>> {
        let key = (
            indicator.kind.to_ascii_lowercase(),
            normalise(&indicator.kind, &indicator.value),
        );
        Ok(self
            .entries
            .get(&key)
            .map(|found| {
                found
                    .iter()
                    .map(|e| TiFinding {
                        indicator: indicator.clone(),
                        provider: format!("offline:{}", e.source),
                        severity: e.severity,
                        details: e.details.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builtin_list_parses_and_matches_case_insensitively() {
        let ti = OfflineThreatIntel::from_json(BUILTIN_TI_LIST).unwrap();
        assert!(!ti.is_empty());
        let hit = ti
            .lookup(&Indicator {
                kind: "domain".into(),
                value: "C2.EVIL.EXAMPLE".into(),
            })
            .await
            .unwrap();
        assert_eq!(hit[0].severity, TiSeverity::High);
        let miss = ti
            .lookup(&Indicator {
                kind: "ipv4".into(),
                value: "192.0.2.250".into(),
            })
            .await
            .unwrap();
        assert!(miss.is_empty());
    }
}
