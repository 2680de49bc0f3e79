//! Event Grid events in both delivery schemas.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event in the Event Grid schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridEvent {
    /// Event id (unique per publisher).
    pub id: String,
    /// Topic resource id; set by Event Grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Publisher-defined subject.
    pub subject: String,
    /// Event type, e.g. `socwire.IncidentCreated`.
    pub event_type: String,
    /// When the event happened.
    pub event_time: DateTime<Utc>,
    /// Event payload.
    #[serde(default)]
    pub data: Value,
    /// Payload schema version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<String>,
    /// Schema version; set by Event Grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_version: Option<String>,
}

/// An event in the CloudEvents 1.0 schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always "1.0".
    pub specversion: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Source URI.
    pub source: String,
    /// Event id.
    pub id: String,
    /// When the event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Content type of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Event payload.
    #[serde(default)]
    pub data: Value,
}

/// An event in whichever schema it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GridEvent {
    /// CloudEvents 1.0 (tried first: it has the distinguishing `specversion`).
    Cloud(CloudEvent),
    /// Event Grid schema.
    Grid(EventGridEvent),
}

impl GridEvent {
    /// Event id.
    pub fn id(&self) -> &str {
        match self {
            GridEvent::Cloud(e) => &e.id,
            GridEvent::Grid(e) => &e.id,
        }
    }

    /// Event type.
    pub fn event_type(&self) -> &str {
        match self {
            GridEvent::Cloud(e) => &e.event_type,
            GridEvent::Grid(e) => &e.event_type,
        }
    }

    /// Subject, if any.
    pub fn subject(&self) -> Option<&str> {
        match self {
            GridEvent::Cloud(e) => e.subject.as_deref(),
            GridEvent::Grid(e) => Some(&e.subject),
        }
    }

    /// Payload.
    pub fn data(&self) -> &Value {
        match self {
            GridEvent::Cloud(e) => &e.data,
            GridEvent::Grid(e) => &e.data,
        }
    }
}
