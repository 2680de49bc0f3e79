use crate::ports::{PortError, PortResult, ThreatIntel, TiAnswer, TiFinding, TiSeverity};
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
        Self::from_entries(list)
    }

    /// Parses a feed in any supported format: our JSON list (`[…]`), a STIX 2.1 bundle
    /// (`{"type": "bundle", …}`) or CSV (`kind,value,severity,source,details` header).
    pub fn from_feed(text: &str) -> PortResult<Self> {
        let t = text.trim_start_matches('\u{feff}').trim_start();
        if t.starts_with('[') {
            Self::from_json(t)
        } else if t.starts_with('{') {
            Self::from_entries(stix_entries(t)?)
        } else {
            Self::from_entries(csv_entries(t)?)
        }
    }

    fn from_entries(list: Vec<TiEntry>) -> PortResult<Self> {
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

/// The comparisons of a STIX pattern this feed reads: `[type:path = 'value']`, joined by OR.
fn stix_pattern(pattern: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in pattern.split(" OR ") {
        let part = part
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim();
        let Some((path, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('\'').replace("\\'", "'");
        let kind = match path.trim() {
            "ipv4-addr:value" => "ipv4",
            "ipv6-addr:value" => "ipv6",
            "domain-name:value" => "domain",
            "url:value" => "url",
            p if p.starts_with("file:hashes") => "filehash",
            _ => continue,
        };
        out.push((kind.to_string(), value));
    }
    out
}

/// Indicators of a STIX 2.1 bundle: active `indicator` objects with `stix` patterns;
/// confidence ≥ 80 → High, otherwise Warning (the grading MSTICPy's Sentinel TI provider gives by confidence).
fn stix_entries(text: &str) -> PortResult<Vec<TiEntry>> {
    let bundle: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| PortError::Permanent(format!("STIX bundle: {e}")))?;
    if bundle.get("type").and_then(|t| t.as_str()) != Some("bundle") {
        return Err(PortError::Permanent("STIX: not a bundle".into()));
    }
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for o in bundle
        .get("objects")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
    {
        let field = |n: &str| o.get(n).and_then(|v| v.as_str()).unwrap_or("");
        if field("type") != "indicator" || o.get("revoked").and_then(|r| r.as_bool()) == Some(true)
        {
            continue;
        }
        if !matches!(field("pattern_type"), "" | "stix") {
            continue;
        }
        let expired =
            chrono::DateTime::parse_from_rfc3339(field("valid_until")).is_ok_and(|t| t < now);
        if expired {
            continue;
        }
        let confidence = o.get("confidence").and_then(|c| c.as_i64()).unwrap_or(50);
        let severity = if confidence >= 80 {
            TiSeverity::High
        } else {
            TiSeverity::Warning
        };
        for (kind, value) in stix_pattern(field("pattern")) {
            out.push(TiEntry {
                kind,
                value,
                severity,
                source: "stix".into(),
                details: format!(
                    "{} (confidence {confidence})",
                    field("name").chars().take(120).collect::<String>()
                ),
            });
        }
    }
    Ok(out)
}

/// Indicators of a CSV feed with a `kind,value,severity,source,details` header (quoted fields
/// are not supported: a `details` column may hold commas, it is the last one).
fn csv_entries(text: &str) -> PortResult<Vec<TiEntry>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("").trim().to_ascii_lowercase();
    if !header.starts_with("kind,value,severity") {
        return Err(PortError::Permanent(
            "CSV feed: the header must be kind,value,severity,source,details".into(),
        ));
    }
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.splitn(5, ',').map(str::trim).collect();
        let severity = match cols.get(2).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("high") => TiSeverity::High,
            Some("warning") => TiSeverity::Warning,
            Some("information") => TiSeverity::Information,
            Some("benign") => TiSeverity::Benign,
            other => {
                return Err(PortError::Permanent(format!(
                "CSV feed line {}: severity {other:?} is not high, warning, information or benign",
                n + 2
            )))
            }
        };
        out.push(TiEntry {
            kind: cols[0].to_ascii_lowercase(),
            value: cols.get(1).copied().unwrap_or("").to_string(),
            severity,
            source: cols.get(3).copied().unwrap_or("csv").to_string(),
            details: cols.get(4).copied().unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

fn normalise(kind: &str, value: &str) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "url" => value.trim().to_string(),
        _ => value.trim().to_ascii_lowercase(),
    }
}

#[async_trait]
impl ThreatIntel for OfflineThreatIntel {
    async fn lookup(&self, indicator: &Indicator) -> PortResult<TiAnswer> {
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
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stix_bundles_and_csv_feeds_load() {
        let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[
          {"type":"indicator","spec_version":"2.1","id":"indicator--a","name":"C2 <b>","pattern":"[ipv4-addr:value = '203.0.113.5'] OR [domain-name:value = 'Bad.Example']","pattern_type":"stix","confidence":90,"valid_from":"2026-01-01T00:00:00Z"},
          {"type":"indicator","id":"indicator--b","pattern":"[file:hashes.'SHA-256' = 'AB12']","pattern_type":"stix","confidence":40},
          {"type":"indicator","id":"indicator--c","pattern":"[url:value = 'http://x.example/']","pattern_type":"stix","revoked":true},
          {"type":"indicator","id":"indicator--d","pattern":"[ipv4-addr:value = '203.0.113.6']","pattern_type":"stix","valid_until":"2020-01-01T00:00:00Z"},
          {"type":"malware","id":"malware--e","name":"x"}]}"#;
        let ti = OfflineThreatIntel::from_feed(bundle).unwrap();
        assert_eq!(ti.len(), 3);
        let level = |k: &str, v: &str| {
            let ti = &ti;
            let i = Indicator {
                kind: k.into(),
                value: v.into(),
            };
            async move {
                ti.lookup(&i)
                    .await
                    .unwrap()
                    .findings
                    .first()
                    .map(|f| f.severity)
            }
        };
        assert_eq!(level("ipv4", "203.0.113.5").await, Some(TiSeverity::High));
        assert_eq!(level("domain", "bad.example").await, Some(TiSeverity::High));
        assert_eq!(level("filehash", "ab12").await, Some(TiSeverity::Warning));
        assert_eq!(level("ipv4", "203.0.113.6").await, None, "expired");

        let csv =
            "kind,value,severity,source,details\nipv4,192.0.2.77,benign,allow,scanner, approved\n";
        let ti = OfflineThreatIntel::from_feed(csv).unwrap();
        let f = ti
            .lookup(&Indicator {
                kind: "ipv4".into(),
                value: "192.0.2.77".into(),
            })
            .await
            .unwrap()
            .findings;
        assert_eq!(
            (f[0].severity, f[0].details.as_str()),
            (TiSeverity::Benign, "scanner, approved")
        );
        assert!(OfflineThreatIntel::from_feed("kind,value,severity\nipv4,1.2.3.4,urgent").is_err());
        assert!(OfflineThreatIntel::from_feed("a,b\n").is_err());
    }

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
            .unwrap()
            .findings;
        assert_eq!(hit[0].severity, TiSeverity::High);
        let miss = ti
            .lookup(&Indicator {
                kind: "ipv4".into(),
                value: "192.0.2.250".into(),
            })
            .await
            .unwrap()
            .findings;
        assert!(miss.is_empty());
    }
}
