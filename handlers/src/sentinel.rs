//! Sentinel incident model: the subset of the Microsoft.SecurityInsights REST shapes
//! (api-version 2025-09-01, SENTINEL.md §1) that triage reads and writes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Longest incident ARM id accepted; real ids are well under 400 characters.
pub const MAX_INCIDENT_ID_LEN: usize = 512;

/// Incident severity as Sentinel spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Lowest.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// Highest.
    High,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        };
        f.write_str(s)
    }
}

/// A validated incident ARM id:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{ws}/providers/Microsoft.SecurityInsights/incidents/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId {
    arm_id: String,
    workspace_path: String,
    name: String,
}

/// Why an incident id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentIdError {
    /// Empty after trimming.
    #[error("incident id is empty")]
    Empty,
    /// Over [`MAX_INCIDENT_ID_LEN`].
    #[error("incident id is {0} bytes, over the {MAX_INCIDENT_ID_LEN}-byte limit")]
    TooLong(usize),
    /// Not of the ARM id shape.
    #[error("not a Sentinel incident ARM id (/subscriptions/…/workspaces/…/providers/Microsoft.SecurityInsights/incidents/…)")]
    Shape,
    /// A segment holds characters outside the ARM name alphabet.
    #[error("incident id segment has characters outside [A-Za-z0-9._()-]")]
    Characters,
}

impl IncidentId {
    /// Parses and validates an ARM id; segment names are matched case-insensitively, as ARM does.
    pub fn parse(text: &str) -> Result<Self, IncidentIdError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IncidentIdError::Empty);
        }
        if text.len() > MAX_INCIDENT_ID_LEN {
            return Err(IncidentIdError::TooLong(text.len()));
        }
        let parts: Vec<&str> = text.trim_matches('/').split('/').collect();
        let expected = [
            (0, "subscriptions"),
            (2, "resourceGroups"),
            (4, "providers"),
            (5, "Microsoft.OperationalInsights"),
            (6, "workspaces"),
            (8, "providers"),
            (9, "Microsoft.SecurityInsights"),
            (10, "incidents"),
        ];
        if parts.len() != 12
            || !text.starts_with('/')
            || expected
                .iter()
                .any(|(i, word)| !parts[*i].eq_ignore_ascii_case(word))
        {
            return Err(IncidentIdError::Shape);
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "._()-".contains(c);
        if [1, 3, 7, 11]
            .iter()
            .any(|&i| parts[i].is_empty() || !parts[i].chars().all(ok_char))
        {
            return Err(IncidentIdError::Characters);
        }
        let name = parts[11].to_string();
        let workspace_path = format!("/{}", parts[..8].join("/"));
        Ok(Self {
            arm_id: format!(
                "{workspace_path}/providers/Microsoft.SecurityInsights/incidents/{name}"
            ),
            workspace_path,
            name,
        })
    }

    /// The canonical ARM id (segment names normalised to their documented case).
    pub fn arm_id(&self) -> &str {
        &self.arm_id
    }

    /// The incident name (a GUID).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/subscriptions/…/workspaces/{ws}`.
    pub fn workspace_path(&self) -> &str {
        &self.workspace_path
    }

    /// A stable lower-case key for ledgers and de-duplication.
    pub fn key(&self) -> String {
        self.arm_id.to_ascii_lowercase()
    }
}

impl TryFrom<String> for IncidentId {
    type Error = IncidentIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IncidentId> for String {
    fn from(value: IncidentId) -> Self {
        value.arm_id
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arm_id)
    }
}

/// An incident resource as returned by `Incidents_Get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// ARM id.
    pub id: String,
    /// Incident name (GUID).
    pub name: String,
    /// Concurrency token, sent back in the PUT body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Incident properties.
    pub properties: IncidentProperties,
}

/// The incident properties triage uses; everything else is kept in `other` so a PUT does not
/// drop fields it did not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentProperties {
    /// Title (required by PUT).
    pub title: String,
    /// Severity (required by PUT).
    pub severity: Severity,
    /// Status: New, Active or Closed (required by PUT).
    pub status: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Incident number shown in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_number: Option<i64>,
    /// Every other property, passed through unchanged.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An entity from `Incidents_ListEntities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Entity kind: Ip, Url, Host, Account, FileHash, DnsResolution, …
    pub kind: String,
    /// Entity properties (address, url, hostName, hashValue, friendlyName, …).
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// An indicator extracted from an entity for threat-intelligence lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Indicator {
    /// ipv4, ipv6, url, domain, filehash.
    pub kind: String,
    /// Normalised value (lower case where case does not matter).
    pub value: String,
}

/// Longest indicator value kept; longer entity values are skipped as suspicious input.
pub const MAX_INDICATOR_LEN: usize = 2048;

impl Entity {
    /// The indicators this entity carries that threat intelligence can look up.
    pub fn indicators(&self) -> Vec<Indicator> {
        let field = |name: &str| {
            self.properties
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_INDICATOR_LEN)
        };
        let mut out = Vec::new();
        match self.kind.to_ascii_lowercase().as_str() {
            "ip" => {
                if let Some(addr) =
                    field("address").and_then(|a| a.parse::<std::net::IpAddr>().ok())
                {
                    let kind = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
                    out.push(Indicator {
                        kind: kind.into(),
                        value: addr.to_string(),
                    });
                }
            }
            "url" => {
                if let Some(url) = field("url") {
                    out.push(Indicator {
                        kind: "url".into(),
                        value: url.to_string(),
                    });
                    if let Some(host) = url::Url::parse(url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                    {
                        out.push(Indicator {
                            kind: "domain".into(),
                            value: host,
                        });
                    }
                }
            }
            "dnsresolution" => {
                if let Some(domain) = field("domainName") {
                    out.push(Indicator {
                        kind: "domain".into(),
                        value: domain.to_ascii_lowercase(),
                    });
                }
            }
            "filehash" => {
                if let Some(hash) = field("hashValue") {
                    if hash.chars().all(|c| c.is_ascii_hexdigit()) {
                        out.push(Indicator {
                            kind: "filehash".into(),
                            value: hash.to_ascii_lowercase(),
                        });
                    }
                }
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/soc-rg/providers/Microsoft.OperationalInsights/workspaces/soc-ws/providers/Microsoft.SecurityInsights/Incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

    #[test]
    fn parses_arm_id_case_insensitively_and_normalises() {
        let id = IncidentId::parse(ID).unwrap();
        assert_eq!(id.name(), "73e01a99-5cd7-4139-a149-9f2736ff2ab5");
        assert!(id.arm_id().contains("/incidents/"));
        assert_eq!(
            IncidentId::parse(&ID.to_lowercase()).unwrap().key(),
            id.key()
        );
    }

    #[test]
    fn rejects_bad_ids_with_reasons() {
        assert_eq!(IncidentId::parse("  "), Err(IncidentIdError::Empty));
        assert_eq!(
            IncidentId::parse("/subscriptions/x"),
            Err(IncidentIdError::Shape)
        );
        let injected = ID.replace("soc-ws", "ws' or 1==1");
        assert_eq!(
            IncidentId::parse(&injected),
            Err(IncidentIdError::Characters)
        );
        let long = format!("{ID}{}", "a".repeat(600));
        assert!(matches!(
            IncidentId::parse(&long),
            Err(IncidentIdError::TooLong(_))
        ));
    }

    #[test]
    fn entities_yield_normalised_indicators() {
        let ip: Entity =
            serde_json::from_str(r#"{"kind":"Ip","properties":{"address":" 203.0.113.7 "}}"#)
                .unwrap();
        assert_eq!(ip.indicators()[0].value, "203.0.113.7");
        let bad_ip: Entity =
            serde_json::from_str(r#"{"kind":"Ip","properties":{"address":"999.1.1.1"}}"#).unwrap();
        assert!(bad_ip.indicators().is_empty());
        let url: Entity =
            serde_json::from_str(r#"{"kind":"Url","properties":{"url":"https://Evil.Example/x"}}"#)
                .unwrap();
        let kinds: Vec<_> = url
            .indicators()
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect();
        assert!(kinds.contains(&("domain".into(), "evil.example".into())));
    }
}
