//! Inputs the functions set aside themselves. A function that meets an input which can never
//! succeed acknowledges it and writes a record (`socwire.reject.v1`: function, reason, key,
//! input) to the `socwire-rejects` Storage queue, in Azure and here alike. These are listed
//! beside poison and dead-letter entries (`rj:<message id>`) and can be replayed to the trigger
//! the function listens on, which `socwire up` records for every function it loads.

use super::deadletter::{DeadLetter, DeadLetterKind};
use super::{BrokerError, BrokerResult, Brokers};
use base64::Engine as _;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

/// The queue the functions' `rejects` output binding writes to.
pub const REJECTS_QUEUE: &str = "socwire-rejects";

/// Where a function's trigger input comes from, so that a reject can be replayed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSource {
    /// A Storage queue.
    Queue(String),
    /// A Service Bus queue or `topic/subscriptions/name`.
    ServiceBus(String),
    /// An Event Grid topic the function subscribes to.
    EventGrid(String),
    /// An Event Hub (rejects of events are not replayed: send the events again).
    EventHub(String),
}

impl TriggerSource {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            TriggerSource::Queue(s) => ("queue", s),
            TriggerSource::ServiceBus(s) => ("servicebus", s),
            TriggerSource::EventGrid(s) => ("eventgrid", s),
            TriggerSource::EventHub(s) => ("eventhub", s),
        }
    }
}

type RejectRow = (i64, Vec<u8>, i64);

impl Brokers {
    /// Records where `function`'s trigger input comes from (done by `socwire up` at start).
    pub fn register_trigger(&self, function: &str, source: &TriggerSource) -> BrokerResult<()> {
        let (kind, name) = source.parts();
        self.lock().execute(
            "INSERT INTO function_triggers (function, kind, source) VALUES (?1, ?2, ?3)
             ON CONFLICT (function) DO UPDATE SET kind = ?2, source = ?3",
            params![function, kind, name],
        )?;
        Ok(())
    }

    /// Every record on the rejects queue, oldest first.
    pub(super) fn rejects(&self) -> BrokerResult<Vec<DeadLetter>> {
        let rows: Vec<RejectRow> = {
            let conn = self.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT id, body, insertion_ms FROM queue_messages WHERE queue = ?1 ORDER BY id",
            )?;
            let rows =
                stmt.query_map([REJECTS_QUEUE], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        Ok(rows.into_iter().map(to_letter).collect())
    }

    /// One record on the rejects queue.
    pub(super) fn reject(&self, id: i64) -> BrokerResult<Option<DeadLetter>> {
        let row: Option<RejectRow> = self
            .lock()
            .query_row(
                "SELECT id, body, insertion_ms FROM queue_messages WHERE queue = ?1 AND id = ?2",
                params![REJECTS_QUEUE, id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.map(to_letter))
    }

    /// Sends a reject's input back to its function's trigger and removes the record, in one
    /// transaction.
    pub(super) fn replay_reject(&self, id: i64) -> BrokerResult<()> {
        let letter = self
            .reject(id)?
            .ok_or_else(|| BrokerError::Invalid(format!("no reject rj:{id}")))?;
        let function = letter.source.clone();
        let now = self.now();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let route: Option<(String, String)> = tx
            .query_row(
                "SELECT kind, source FROM function_triggers WHERE function = ?1",
                [&function],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (kind, source) = route.ok_or_else(|| {
            BrokerError::Invalid(format!(
                "rj:{id}: function {function:?} is not known here; run `socwire up` once so it records its triggers"
            ))
        })?;
        let body = letter.body.as_bytes();
        let metadata = letter.meta.get("metadata").cloned().unwrap_or(Value::Null);
        match kind.as_str() {
            "queue" => {
                tx.execute(
                    "INSERT INTO queue_messages (queue, body, insertion_ms, expiration_ms, next_visible_ms) VALUES (?1, ?2, ?3, ?4, ?3)",
                    params![source, body, now, now + super::queue::DEFAULT_TTL_MS],
                )?;
            }
            "servicebus" => {
                let text = |k: &str| metadata.get(k).and_then(Value::as_str).map(decoded);
                let meta = json!({
                    "entity": source,
                    "messageId": text("MessageId"),
                    "subject": text("Subject"),
                    "sessionId": text("SessionId"),
                });
                super::servicebus::restore(&tx, &meta, body, now)?;
            }
            "eventgrid" => {
                tx.execute(
                    "INSERT INTO eg_deliveries (topic, subscriber, event, first_ms, next_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![source, function, letter.body, now],
                )?;
            }
            _ => {
                return Err(BrokerError::Invalid(format!(
                    "rj:{id}: {function} reads Event Hub {source:?}; send the events again with `socwire send eventhub`"
                )))
            }
        }
        tx.execute(
            "DELETE FROM queue_messages WHERE queue = ?1 AND id = ?2",
            params![REJECTS_QUEUE, id],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// A metadata value the host JSON-encoded a second time, as plain text.
fn decoded(text: &str) -> String {
    serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string())
}

/// A rejects-queue message as a dead letter. The body is the record as JSON, or base64 of it
/// when the queue binding encodes messages.
fn to_letter((id, body, insertion_ms): RejectRow) -> DeadLetter {
    let record: Value = serde_json::from_slice(&body)
        .or_else(|_| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .unwrap_or_default();
            serde_json::from_slice(&bytes)
        })
        .unwrap_or_else(|_| json!({ "reason": "unreadable reject record", "input": String::from_utf8_lossy(&body) }));
    let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
    let input = match record.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let command_id = serde_json::from_str::<Value>(&input).ok().and_then(|v| {
        v.get("commandId")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let attempts = ["DeliveryCount", "DequeueCount"]
        .iter()
        .find_map(|k| record.pointer(&format!("/metadata/{k}")))
        .and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => decoded(s).parse().ok(),
            _ => None,
        })
        .unwrap_or(1) as u32;
    let function = text("function").unwrap_or_default();
    let key = text("key");
    DeadLetter {
        id: format!("rj:{id}"),
        kind: DeadLetterKind::Rejected,
        description: format!(
            "set aside by {function}{}",
            key.as_deref()
                .map(|k| format!(" (key {k})"))
                .unwrap_or_default()
        ),
        source: function,
        reason: text("reason").unwrap_or_default(),
        attempts,
        dead_lettered_ms: insertion_ms,
        body: input,
        meta: record,
        key,
        command_id,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;
    use super::*;

    fn record(function: &str, input: &str) -> Vec<u8> {
        json!({
            "schema": "socwire.reject.v1", "function": function, "binding": "msg",
            "reason": "schemaVersion 7 is not supported", "key": "c-1",
            "rejectedAt": "2026-11-29T10:00:00Z", "input": input,
            "metadata": { "MessageId": "\"m-1\"", "Subject": "\"RunFineTune\"", "DeliveryCount": "1" }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn rejects_are_listed_with_their_reason_and_command_id_and_replay_to_their_trigger() {
        let (_d, b, _c) = brokers();
        b.service_bus("cmds")
            .ensure_queue(super::super::SbEntityOptions::default())
            .unwrap();
        b.register_trigger("run", &TriggerSource::ServiceBus("cmds".into()))
            .unwrap();
        let input = r#"{"commandId":"c-1","schemaVersion":7}"#;
        b.queue(REJECTS_QUEUE)
            .put(&record("run", input), 0)
            .unwrap();
        let letters = b.dead_letters(None).unwrap();
        assert_eq!(letters.len(), 1);
        let l = &letters[0];
        assert_eq!(l.kind, DeadLetterKind::Rejected);
        assert_eq!(l.command_id.as_deref(), Some("c-1"));
        assert_eq!(l.reason, "schemaVersion 7 is not supported");
        assert_eq!(
            b.dead_letter(&l.id).unwrap().unwrap().body,
            input,
            "show gives the input"
        );
        b.replay(&l.id).unwrap();
        assert!(b.dead_letters(None).unwrap().is_empty());
        let back = b.service_bus("cmds").receive(1).unwrap().remove(0);
        assert_eq!(back.message.body, input.as_bytes());
        assert_eq!(back.message.message_id, "m-1");
        assert_eq!(back.message.subject.as_deref(), Some("RunFineTune"));
    }

    #[test]
    fn a_reject_of_an_unknown_function_or_an_event_hub_is_not_replayed() {
        let (_d, b, _c) = brokers();
        b.queue(REJECTS_QUEUE)
            .put(&record("ghost", "x"), 0)
            .unwrap();
        let id = b.dead_letters(None).unwrap()[0].id.clone();
        assert!(b.replay(&id).unwrap_err().to_string().contains("not known"));
        b.register_trigger("ghost", &TriggerSource::EventHub("alerts".into()))
            .unwrap();
        assert!(b
            .replay(&id)
            .unwrap_err()
            .to_string()
            .contains("send the events again"));
        assert_eq!(b.dead_letters(None).unwrap().len(), 1, "still there");
    }
}
