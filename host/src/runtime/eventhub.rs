//! The Event Hubs trigger loop and the trigger value the host binds for a batch.

use super::shared::Shared;
use crate::brokers::EhEvent;
use crate::config::{DataType, FunctionDef, Trigger};
use crate::envelope::{encoded, iso};
use crate::stats::Outcome;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use socwire_common::text::for_log;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Reads one partition of a hub for one function, delivers each batch (retrying it as the
/// function's retry policy says) and checkpoints after it.
pub(super) async fn event_hub_loop(s: Arc<Shared>, name: String, partition: u32) {
    let f = s.function(&name).clone();
    let Trigger::EventHub {
        name: binding,
        hub,
        consumer_group,
        many,
        data_type,
    } = &f.trigger
    else {
        return;
    };
    let max = if *many {
        s.cfg.host.event_hubs.max_event_batch_size
    } else {
        1
    };
    let source = s.brokers.hub(hub);
    let mut cursor: Option<i64> = None;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let events = match source.read(consumer_group, partition, cursor, max) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(hub = %hub, error = %e, "Event Hubs read failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(last) = events.last().map(|e| e.sequence_number) else {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        };
        backoff = Duration::from_millis(10);
        let bodies: Vec<&[u8]> = events.iter().map(|e| e.body.as_slice()).collect();
        let batch = Batch {
            value: event_hub_value(&bodies, *many, *data_type),
            meta: batch_metadata(&events, *many, hub, consumer_group, partition),
            binding,
            partition,
            count: events.len() as u64,
        };
        if deliver_with_retries(&s, &f, batch).await == Settled::Stopping {
            return; // not checkpointed: the batch is read again after restart
        }
        if let Err(e) = source.checkpoint(consumer_group, partition, last) {
            tracing::error!(hub = %hub, error = %e, "checkpoint failed");
        }
        cursor = Some(last);
    }
}

/// One batch of a partition, ready to deliver.
struct Batch<'a> {
    /// The bound trigger value, or why the host cannot bind it.
    value: Result<Value, String>,
    /// The trigger metadata (partition context, sequence numbers, properties…).
    meta: Map<String, Value>,
    binding: &'a str,
    partition: u32,
    count: u64,
}

/// How a batch's delivery ended.
#[derive(PartialEq)]
enum Settled {
    /// Delivered, or given up on once the retry policy was spent: checkpoint and go on.
    Done,
    /// The host is stopping: leave the checkpoint where it is.
    Stopping,
}

/// The metadata the Functions host binds beside an Event Hubs trigger: arrays for
/// `cardinality: many`, single values otherwise.
fn batch_metadata(
    events: &[EhEvent],
    many: bool,
    hub: &str,
    consumer_group: &str,
    partition: u32,
) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert(
        "PartitionContext".into(),
        json!({ "EventHubName": hub, "ConsumerGroup": consumer_group, "FullyQualifiedNamespace": "localhost", "PartitionId": partition.to_string() }),
    );
    if many {
        let each = |f: fn(&EhEvent) -> Value| encoded(events.iter().map(f).collect::<Vec<_>>());
        meta.insert(
            "SequenceNumberArray".into(),
            each(|e| e.sequence_number.into()),
        );
        meta.insert(
            "PartitionKeyArray".into(),
            each(|e| e.partition_key.clone().into()),
        );
        meta.insert("EnqueuedTimeUtcArray".into(), each(|e| iso(e.enqueued_ms)));
        meta.insert(
            "PropertiesArray".into(),
            each(|e| Value::Object(e.properties.clone())),
        );
    } else {
        let e = &events[0];
        meta.insert("SequenceNumber".into(), encoded(e.sequence_number));
        meta.insert("EnqueuedTimeUtc".into(), iso(e.enqueued_ms));
        if let Some(k) = &e.partition_key {
            meta.insert("PartitionKey".into(), encoded(k));
        }
        meta.insert("Properties".into(), Value::Object(e.properties.clone()));
    }
    meta
}

/// Delivers a batch until it succeeds or the function's retry policy (or the host's) is spent;
/// a spent policy is counted as lost and the checkpoint moves on, as the Functions host does.
async fn deliver_with_retries(s: &Shared, f: &FunctionDef, batch: Batch<'_>) -> Settled {
    let retry = f.retry.clone().or_else(|| s.cfg.host.retry.clone());
    let Batch {
        value,
        mut meta,
        binding,
        partition,
        count,
    } = batch;
    let mut data = Map::new();
    if let Ok(value) = &value {
        data.insert(binding.to_string(), value.clone());
    }
    let mut attempt: u32 = 0;
    loop {
        if let Some(policy) = &retry {
            meta.insert("RetryContext".into(), json!({ "RetryCount": attempt, "MaxRetryCount": policy.max_retry_count.map(i64::from).unwrap_or(-1) }));
        }
        // The host binds the trigger before it calls the handler: a body it cannot bind
        // fails the attempt without an invocation, like a handler failure.
        let result = match &value {
            Ok(_) => s.deliver(f, data.clone(), meta.clone()).await,
            Err(reason) => Err(crate::worker::Failure {
                status: None,
                reason: reason.clone(),
            }),
        };
        let failure = match result {
            Ok(answer) => {
                let lines = Shared::log_lines(&answer);
                let line = format!("partition {partition}, {count} event(s) {lines}");
                s.stats.record(&f.name, Outcome::Delivered, count, &line);
                return Settled::Done;
            }
            Err(failure) => failure,
        };
        let can_retry = retry
            .as_ref()
            .is_some_and(|p| p.max_retry_count.is_none_or(|m| attempt < m));
        let reason = for_log(&failure.reason, 300);
        if can_retry && !s.stopping.load(Ordering::SeqCst) {
            s.stats.record(&f.name, Outcome::Retried, count, &reason);
            let delay = retry.as_ref().map(|p| p.delay(attempt)).unwrap_or_default();
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        if s.stopping.load(Ordering::SeqCst) {
            return Settled::Stopping;
        }
        let line = format!("retry policy spent; checkpoint moves on: {reason}");
        s.stats.record(&f.name, Outcome::Lost, count, &line);
        return Settled::Done;
    }
}

/// The trigger value the Functions host hands a custom handler for Event Hubs bodies: it binds
/// `string`, `byte[]` (base64 for a custom handler) or, with no `dataType`, `object` (each body
/// read as JSON), as an array for `cardinality: many`; arrays and strings reach the handler
/// JSON-encoded in a string (`GetHttpScriptInvocationContextValue`). A body that cannot be
/// bound fails the whole batch before the handler sees it.
pub(crate) fn event_hub_value(
    bodies: &[&[u8]],
    many: bool,
    data_type: DataType,
) -> Result<Value, String> {
    let one = |(i, body): (usize, &&[u8])| -> Result<Value, String> {
        Ok(match data_type {
            DataType::String => Value::String(String::from_utf8_lossy(body).into_owned()),
            DataType::Binary => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            DataType::Unspecified => serde_json::from_slice(body).map_err(|e| {
                format!("event {i} of the batch is not JSON and the trigger has no dataType, so the host cannot bind it: {e}")
            })?,
        })
    };
    let values = bodies
        .iter()
        .enumerate()
        .map(one)
        .collect::<Result<Vec<_>, _>>()?;
    if many {
        return Ok(encoded(values));
    }
    let value = values.into_iter().next().unwrap_or(Value::Null);
    Ok(match (data_type, value) {
        // byte[] passes through and serialises as one base64 string; a JSON object stays one.
        (DataType::Binary, v) | (_, v @ Value::Object(_)) => v,
        (_, other) => encoded(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hub_bodies_reach_the_handler_as_the_real_host_binds_them() {
        let bodies: [&[u8]; 2] = [br#"{"a":1}"#, b"plain text"];
        let strings = event_hub_value(&bodies, true, DataType::String).unwrap();
        assert_eq!(strings, json!(r#"["{\"a\":1}","plain text"]"#));
        let err = event_hub_value(&bodies, true, DataType::Unspecified).unwrap_err();
        assert!(err.contains("event 1 of the batch is not JSON"), "{err}");
        let objects = event_hub_value(&bodies[..1], true, DataType::Unspecified).unwrap();
        assert_eq!(objects, json!(r#"[{"a":1}]"#));
        let binary = event_hub_value(&bodies[1..], true, DataType::Binary).unwrap();
        assert_eq!(binary, json!(r#"["cGxhaW4gdGV4dA=="]"#));
        assert_eq!(
            event_hub_value(&bodies[..1], false, DataType::Unspecified).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            event_hub_value(&bodies[1..], false, DataType::String).unwrap(),
            json!("\"plain text\"")
        );
        assert_eq!(
            event_hub_value(&bodies[1..], false, DataType::Binary).unwrap(),
            json!("cGxhaW4gdGV4dA==")
        );
    }
}
