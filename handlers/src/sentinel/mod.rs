//! Sentinel incident model: the subset of the Microsoft.SecurityInsights REST shapes
//! (api-version 2025-09-01, `specification/securityinsights` in Azure/azure-rest-api-specs) that triage reads and writes.

mod entity;
mod incident_id;
mod links;
mod observe;

pub use entity::{Entity, EntityKind, MAX_INDICATOR_LEN};
pub use incident_id::{
    is_safe_segment, IncidentId, IncidentIdError, WorkspaceRef, MAX_INCIDENT_ID_LEN,
};
pub use links::{Links, Relation};
pub use observe::{AccountRef, HostRef, Indicator, Observed, Subject};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

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
