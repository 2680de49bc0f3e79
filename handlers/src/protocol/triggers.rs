//! Typed requests for each trigger kind. Field names follow the host's binding data
//! (PROTOCOL.md §1); every scalar goes through [`Encoded`] because the host double-encodes.

use super::encoding::{self, Encoded};
use super::{GridEvent, InvocationRequest, ProtocolError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `sys` entry the host adds to every Metadata map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SysMetadata {
    /// The function's method name.
    #[serde(default)]
    pub method_name: Option<String>,
    /// When the host built the request.
    #[serde(default)]
    pub utc_now: Option<String>,
    /// A random GUID per invocation.
    #[serde(default)]
    pub rand_guid: Option<String>,
}

/// `Metadata.RetryContext`, present when a retry policy is active.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryContext {
    /// Zero-based retry number.
    #[serde(default)]
    pub retry_count: i64,
    /// The policy's maximum (-1 = until it succeeds).
    #[serde(default)]
    pub max_retry_count: i64,
}

/// Storage Queue trigger metadata (`QueueTrigger` itself is filtered out by the host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueMetadata {
    /// How many times the message has been dequeued, this delivery included.
    pub dequeue_count: Encoded<u32>,
    /// Message id.
    pub id: Encoded<String>,
    /// Pop receipt of this delivery.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pop_receipt: Option<String>,
    /// When the message was inserted (ISO 8601, kept as the host wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insertion_time: Option<String>,
    /// When the message expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// When the message becomes visible again if not deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_visible_time: Option<String>,
    /// Host system data.
    #[serde(rename = "sys", default, skip_serializing_if = "Option::is_none")]
    pub sys: Option<SysMetadata>,
}

/// A Storage Queue trigger: the message text plus its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTrigger {
    /// The message text (decoded from the host's encoding).
    pub message: String,
    /// Delivery metadata.
    pub metadata: QueueMetadata,
}

impl QueueTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Ok(Self {
            message: req.data(binding, "queue message")?,
            metadata: req.metadata("queue")?,
        })
    }
}

/// Service Bus trigger metadata for a single message (extension 5.x).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceBusMetadata {
    /// Delivery count, this delivery included.
    pub delivery_count: Encoded<u32>,
    /// Sender-chosen message id (duplicate detection key).
    pub message_id: Encoded<String>,
    /// Broker sequence number.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<i64>,
    /// Subject (the command name on `ml-commands`).
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject: Option<String>,
    /// Session id, when the entity requires sessions.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_id: Option<String>,
    /// Correlation id.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
    /// Content type.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
    /// When the message was enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_time_utc: Option<String>,
    /// Application properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_properties: Option<Map<String, Value>>,
    /// Host system data.
    #[serde(rename = "sys", default, skip_serializing_if = "Option::is_none")]
    pub sys: Option<SysMetadata>,
}

/// A Service Bus trigger (single message).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBusTrigger {
    /// The message body text.
    pub body: String,
    /// Delivery metadata.
    pub metadata: ServiceBusMetadata,
}

impl ServiceBusTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Ok(Self {
            body: req.data(binding, "Service Bus message")?,
            metadata: req.metadata("Service Bus")?,
        })
    }
}

/// `Metadata.PartitionContext` of an Event Hubs trigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionContext {
    /// Hub name.
    #[serde(default)]
    pub event_hub_name: Option<String>,
    /// Consumer group.
    #[serde(default)]
    pub consumer_group: Option<String>,
    /// Namespace host name.
    #[serde(default)]
    pub fully_qualified_namespace: Option<String>,
    /// Partition id.
    #[serde(default)]
    pub partition_id: Option<String>,
}

/// Event Hubs trigger metadata for a batch (`cardinality: many`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventHubBatchMetadata {
    /// The partition the batch came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_context: Option<PartitionContext>,
    /// Sequence number of each event.
    pub sequence_number_array: Encoded<Vec<i64>>,
    /// Partition key of each event.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub partition_key_array: Option<Vec<Option<String>>>,
    /// Enqueued time of each event.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enqueued_time_utc_array: Option<Vec<String>>,
    /// Application properties of each event.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub properties_array: Option<Vec<Map<String, Value>>>,
    /// Retry state when the function's retry policy is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_context: Option<RetryContext>,
    /// Host system data.
    #[serde(rename = "sys", default, skip_serializing_if = "Option::is_none")]
    pub sys: Option<SysMetadata>,
}

/// An Event Hubs batch trigger: the event bodies as text, in partition order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHubBatchTrigger {
    /// Event bodies (each usually JSON text).
    pub events: Vec<String>,
    /// Batch metadata.
    pub metadata: EventHubBatchMetadata,
}

impl EventHubBatchTrigger {
    /// Reads the trigger bound as `binding`. Bodies may arrive as an array of strings, an array
    /// of JSON values, or either of those serialized into a string.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        let items: Vec<Value> = req.data(binding, "Event Hubs batch")?;
        let events = items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => text,
                other => other.to_string(),
            })
            .collect();
        Ok(Self {
            events,
            metadata: req.metadata("Event Hubs batch")?,
        })
    }
}

/// Event Hubs trigger metadata for a single event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventHubMetadata {
    /// The partition the event came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_context: Option<PartitionContext>,
    /// Sequence number.
    pub sequence_number: Encoded<i64>,
    /// Partition key.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub partition_key: Option<String>,
    /// Offset.
    #[serde(
        default,
        with = "encoding::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub offset: Option<String>,
    /// Enqueued time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_time_utc: Option<String>,
    /// Application properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
    /// Host system data.
    #[serde(rename = "sys", default, skip_serializing_if = "Option::is_none")]
    pub sys: Option<SysMetadata>,
}

/// An Event Hubs trigger with `cardinality: one`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHubTrigger {
    /// Event body text.
    pub event: String,
    /// Event metadata.
    pub metadata: EventHubMetadata,
}

impl EventHubTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        let value: Value = req.data(binding, "Event Hubs event")?;
        let event = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        Ok(Self {
            event,
            metadata: req.metadata("Event Hubs")?,
        })
    }
}

/// An Event Grid trigger: one event in either schema.
#[derive(Debug, Clone, PartialEq)]
pub struct EventGridTrigger {
    /// The event.
    pub event: GridEvent,
}

impl EventGridTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Ok(Self {
            event: req.data(binding, "Event Grid event")?,
        })
    }
}

/// `TimerInfo` as the host sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimerInfo {
    /// Schedule options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Value>,
    /// Last/next occurrence when `useMonitor` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_status: Option<ScheduleStatus>,
    /// True when this run is late (the host was down at the scheduled time).
    #[serde(default)]
    pub is_past_due: bool,
}

/// Timer schedule status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleStatus {
    /// Last run.
    #[serde(default)]
    pub last: Option<String>,
    /// Next run.
    #[serde(default)]
    pub next: Option<String>,
    /// When the status was last written.
    #[serde(default)]
    pub last_updated: Option<String>,
}

/// A timer trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerTrigger {
    /// The timer state.
    pub timer: TimerInfo,
}

impl TimerTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Ok(Self {
            timer: req.data(binding, "timer")?,
        })
    }
}

/// The HTTP request as the host forwards it inside the envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpRequestData {
    /// Full URL.
    pub url: String,
    /// Method, upper case.
    pub method: String,
    /// Query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers; each value is a list.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Route parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Caller identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Value>,
    /// Raw body text (base64 for binary content types); absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl HttpRequestData {
    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// An HTTP trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTrigger {
    /// The request.
    pub request: HttpRequestData,
}

impl HttpTrigger {
    /// Reads the trigger bound as `binding`.
    pub fn from_request(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Ok(Self {
            request: req.data(binding, "HTTP request")?,
        })
    }
}
