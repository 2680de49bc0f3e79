//! Incident ARM ids: parsed, validated and normalised, and the workspace an incident GUID
//! belongs to.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest incident ARM id accepted; real ids are well under 400 characters.
pub const MAX_INCIDENT_ID_LEN: usize = 512;

/// A validated incident ARM id:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{ws}/providers/Microsoft.SecurityInsights/incidents/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId {
    arm_id: String,
    workspace_path: String,
    name: String,
    /// Subscription, resource group, workspace, incident name: each checked by
    /// [`is_safe_segment`].
    segments: [String; 4],
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

/// The Sentinel workspace an incident GUID belongs to (app settings
/// `SOCWIRE_SENTINEL_SUBSCRIPTION_ID`, `SOCWIRE_SENTINEL_RESOURCE_GROUP`, `SOCWIRE_SENTINEL_WORKSPACE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRef {
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Log Analytics workspace name.
    pub workspace: String,
}

impl WorkspaceRef {
    /// `/subscriptions/…/workspaces/{ws}` of this workspace, validated as an incident id is.
    pub fn incident(&self, guid: &str) -> Result<IncidentId, IncidentIdError> {
        IncidentId::parse(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.OperationalInsights/workspaces/{}/providers/Microsoft.SecurityInsights/incidents/{}",
            self.subscription, self.resource_group, self.workspace, guid.trim()
        ))
    }
}

/// True for a name segment of an ARM id that is safe to put in a URL path: the ARM name
/// alphabet, and never `.` or `..` (which a URL resolver would turn into a different path).
/// `%` is outside the alphabet, so percent-encoded separators (`%2F`, `%2E`, `%5C`) never pass.
pub fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 256
        && !segment.chars().all(|c| c == '.')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._()-".contains(c))
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
        if text.contains('%') || text.contains('\\') || text.contains('?') || text.contains('#') {
            return Err(IncidentIdError::Characters);
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
        if parts
            .iter()
            .any(|p| p.chars().all(|c| c == '.') && !p.is_empty())
        {
            return Err(IncidentIdError::Characters);
        }
        if parts.len() != 12
            || !text.starts_with('/')
            || expected
                .iter()
                .any(|(i, word)| !parts[*i].eq_ignore_ascii_case(word))
        {
            return Err(IncidentIdError::Shape);
        }
        if [1, 3, 7, 11].iter().any(|&i| !is_safe_segment(parts[i])) {
            return Err(IncidentIdError::Characters);
        }
        let segments = [parts[1], parts[3], parts[7], parts[11]].map(str::to_string);
        let name = segments[3].clone();
        let workspace_path = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.OperationalInsights/workspaces/{}",
            segments[0], segments[1], segments[2]
        );
        Ok(Self {
            arm_id: format!(
                "{workspace_path}/providers/Microsoft.SecurityInsights/incidents/{name}"
            ),
            workspace_path,
            name,
            segments,
        })
    }

    /// Parses an incident ARM id, or an incident GUID (name) when a workspace is configured.
    pub fn parse_or_guid(
        text: &str,
        workspace: Option<&WorkspaceRef>,
    ) -> Result<Self, IncidentIdError> {
        let t = text.trim();
        match workspace {
            Some(ws) if !t.starts_with('/') && uuid::Uuid::parse_str(t).is_ok() => ws.incident(t),
            _ => Self::parse(t),
        }
    }

    /// The canonical ARM id (segment names normalised to their documented case).
    pub fn arm_id(&self) -> &str {
        &self.arm_id
    }

    /// The validated path segments of the incident, in order, for building URLs segment by
    /// segment (never by joining strings and letting a resolver interpret them).
    pub fn path_segments(&self) -> [&str; 12] {
        [
            "subscriptions",
            &self.segments[0],
            "resourceGroups",
            &self.segments[1],
            "providers",
            "Microsoft.OperationalInsights",
            "workspaces",
            &self.segments[2],
            "providers",
            "Microsoft.SecurityInsights",
            "incidents",
            &self.segments[3],
        ]
    }

    /// The validated path segments of the workspace's Sentinel provider
    /// (`…/providers/Microsoft.SecurityInsights`).
    pub fn provider_segments(&self) -> [&str; 10] {
        let all = self.path_segments();
        [
            all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7], all[8], all[9],
        ]
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
    fn dot_segments_and_encoded_separators_are_refused() {
        for bad in [
            ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", ".."),
            ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", "."),
            ID.replace("soc-ws", ".."),
            ID.replace("soc-rg", "..."),
            ID.replace("73e01a99-5cd7", "..%2Fcomments%2Fx"),
            ID.replace("73e01a99-5cd7", "%2E%2E"),
            ID.replace("73e01a99-5cd7", "a%5Cb"),
            ID.replace("73e01a99-5cd7", "a\\b"),
            format!("{ID}/../../x"),
            format!("{ID}?x=1"),
        ] {
            assert!(IncidentId::parse(&bad).is_err(), "{bad}");
        }
        let id = IncidentId::parse(ID).unwrap();
        assert_eq!(id.path_segments()[11], id.name());
        assert_eq!(
            id.path_segments().join("/"),
            id.arm_id().trim_start_matches('/')
        );
    }

    #[test]
    fn a_guid_with_workspace_settings_is_an_incident_id() {
        let ws = WorkspaceRef {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            resource_group: "soc-rg".into(),
            workspace: "soc-ws".into(),
        };
        let id =
            IncidentId::parse_or_guid("73e01a99-5cd7-4139-a149-9f2736ff2ab5", Some(&ws)).unwrap();
        assert_eq!(id.key(), IncidentId::parse(ID).unwrap().key());
        assert!(IncidentId::parse_or_guid("73e01a99-5cd7-4139-a149-9f2736ff2ab5", None).is_err());
        assert!(IncidentId::parse_or_guid("../x", Some(&ws)).is_err());
    }
}
