//! Inputs that can never succeed are acknowledged and set aside, never retried.
//!
//! The real Functions host reads only success or failure from a custom handler
//! (`DefaultHttpWorkerService` calls `EnsureSuccessStatusCode`; the body of a non-2xx answer is
//! discarded), so it cannot be told "do not retry this". A function that meets such an input
//! returns [`super::FunctionError::BadInput`]; [`super::dispatch`] turns that into a 2xx answer
//! whose `rejects` output binding (a Storage queue, `socwire-rejects`, in Azure and locally)
//! carries a [`RejectRecord`] with the reason and the input. `socwire dlq list` shows these
//! beside poison queues and dead-letter queues, and `socwire dlq replay` sends the input back.

use crate::protocol::{InvocationRequest, InvocationResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The output binding name every non-HTTP function declares for rejects.
pub const REJECTS_OUT: &str = "rejects";
/// The Storage queue the `rejects` binding writes to.
pub const REJECTS_QUEUE: &str = "socwire-rejects";
/// A Storage queue message holds at most 64 KiB; the input kept in a record is cut well below.
pub const MAX_KEPT_INPUT_BYTES: usize = 48 * 1024;
/// Metadata fields kept with a reject (enough to find and replay the original).
const KEPT_METADATA: &[&str] = &[
    "Id",
    "DequeueCount",
    "MessageId",
    "Subject",
    "DeliveryCount",
    "SessionId",
    "SequenceNumber",
    "PartitionContext",
];

/// One input set aside by a function, with the reason it can never succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectRecord {
    /// Always `socwire.reject.v1`, so readers recognise the shape.
    pub schema: String,
    /// The function that refused the input.
    pub function: String,
    /// The trigger binding the input came in on.
    pub binding: String,
    /// Why it can never succeed, written for the person who must fix it.
    pub reason: String,
    /// The idempotency key the input carried (`commandId`, `requestId`, `incidentId`, `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When it was set aside (RFC 3339).
    pub rejected_at: String,
    /// The trigger input: the message text for queue and Service Bus triggers, the event for
    /// Event Grid (cut to [`MAX_KEPT_INPUT_BYTES`]).
    pub input: Value,
    /// True when `input` was cut.
    #[serde(default)]
    pub truncated: bool,
    /// Trigger metadata that identifies the original message.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

impl RejectRecord {
    /// A record for `request`, refused by `function` because of `reason`.
    pub fn new(function: &str, binding: &str, reason: &str, request: &InvocationRequest) -> Self {
        let raw = match request.data.get(binding) {
            // The host JSON-encodes string triggers a second time; keep the original text.
            Some(Value::String(text)) => {
                Value::String(serde_json::from_str::<String>(text).unwrap_or_else(|_| text.clone()))
            }
            Some(other) => other.clone(),
            None => Value::Null,
        };
        let metadata = KEPT_METADATA
            .iter()
            .filter_map(|k| request.metadata.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        Self::for_item(function, binding, reason, raw, metadata)
    }

    /// A record for one item of a batch (an Event Hubs event), so the rest of the batch goes on.
    pub fn for_item(
        function: &str,
        binding: &str,
        reason: &str,
        item: Value,
        metadata: serde_json::Map<String, Value>,
    ) -> Self {
        let key = key_of(&item);
        let (input, truncated) = bounded(item);
        Self {
            schema: "socwire.reject.v1".into(),
            function: function.into(),
            binding: binding.into(),
            reason: reason.chars().take(2048).collect(),
            key,
            rejected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            input,
            truncated,
            metadata,
        }
    }

    /// An acknowledged answer that carries this record on the `rejects` binding.
    pub fn into_response(self) -> InvocationResponse {
        let mut response = InvocationResponse::default();
        response.log(format!(
            "input set aside on {REJECTS_QUEUE}: {}",
            socwire_common::text::for_log(&self.reason, 300)
        ));
        let record = serde_json::to_value(&self).unwrap_or(Value::Null);
        response.messages(REJECTS_OUT, vec![record]);
        response
    }
}

/// The idempotency key of an input, if it names one: a JSON object (or a string holding one)
/// with `commandId`, `requestId`, `incidentId` or `id`.
fn key_of(raw: &Value) -> Option<String> {
    // The host may hand the body over encoded once more as a JSON string (PROTOCOL.md §0):
    // peel string layers until an object shows.
    let mut object = raw.clone();
    for _ in 0..3 {
        match &object {
            Value::String(text) if text.trim_start().starts_with(['{', '"']) => {
                object = serde_json::from_str::<Value>(text.trim()).ok()?;
            }
            _ => break,
        }
    }
    ["commandId", "requestId", "incidentId", "id"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
        .map(|k| k.chars().take(256).collect())
}

/// The input, cut to fit a queue message.
fn bounded(raw: Value) -> (Value, bool) {
    let text = match &raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.len() <= MAX_KEPT_INPUT_BYTES {
        return (raw, false);
    }
    let mut end = MAX_KEPT_INPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Value::String(text[..end].to_string()), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> InvocationRequest {
        let mut req = InvocationRequest::default();
        req.data.insert("msg".into(), body);
        req.metadata.insert("MessageId".into(), json!("m-1"));
        req.metadata.insert("Unrelated".into(), json!("x"));
        req
    }

    #[test]
    fn a_record_keeps_the_key_the_reason_and_identifying_metadata() {
        let req = request(json!("{\"commandId\":\"c-42\",\"schemaVersion\":9}"));
        let r = RejectRecord::new("f", "msg", "schemaVersion 9 is not supported", &req);
        assert_eq!(r.key.as_deref(), Some("c-42"));
        assert_eq!(r.metadata.get("MessageId"), Some(&json!("m-1")));
        assert!(!r.metadata.contains_key("Unrelated"));
        let response = r.into_response();
        let out = &response.outputs[REJECTS_OUT][0];
        assert_eq!(out["function"], "f");
        assert_eq!(out["reason"], "schemaVersion 9 is not supported");
    }

    #[test]
    fn a_double_encoded_message_is_kept_as_its_original_text() {
        let req = request(json!("\"{\\\"requestId\\\":\\\"r-1\\\"}\""));
        let r = RejectRecord::new("f", "msg", "why", &req);
        assert_eq!(r.input, json!("{\"requestId\":\"r-1\"}"));
        assert_eq!(r.key.as_deref(), Some("r-1"));
    }

    #[test]
    fn the_key_is_found_in_a_body_the_host_encoded_twice() {
        let twice = json!(json!("{\"commandId\":\"c-7\"}").to_string());
        let r = RejectRecord::new("f", "msg", "bad", &request(twice));
        assert_eq!(r.key.as_deref(), Some("c-7"));
    }

    #[test]
    fn a_huge_input_is_cut_to_fit_a_queue_message() {
        let req = request(json!("é".repeat(100_000)));
        let r = RejectRecord::new("f", "msg", "too big", &req);
        assert!(r.truncated);
        assert!(serde_json::to_string(&r).unwrap().len() < 64 * 1024);
        assert_eq!(r.key, None);
    }
}
