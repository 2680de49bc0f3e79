//! The Event Hubs trigger loop and the trigger value the host binds for a batch.

use super::shared::Shared;
use crate::config::{DataType, Trigger};
use crate::envelope::{encoded, iso};
use crate::stats::Outcome;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use socwire_common::text::for_log;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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
    let retry = f.retry.clone().or_else(|| s.cfg.host.retry.clone());
    let mut cursor: Option<i64> = None;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let events = match s
            .brokers
            .eh_read(hub, consumer_group, partition, cursor, max)
        {
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
        let trigger_value = event_hub_value(&bodies, *many, *data_type);
        let mut data = Map::new();
        let mut meta = Map::new();
        meta.insert(
            "PartitionContext".into(),
            json!({ "EventHubName": hub, "ConsumerGroup": consumer_group, "FullyQualifiedNamespace": "localhost", "PartitionId": partition.to_string() }),
        );
        if let Ok(value) = &trigger_value {
            data.insert(binding.clone(), value.clone());
        }
        if *many {
            meta.insert(
                "SequenceNumberArray".into(),
                encoded(events.iter().map(|e| e.sequence_number).collect::<Vec<_>>()),
            );
            meta.insert(
                "PartitionKeyArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| e.partition_key.clone())
                        .collect::<Vec<_>>(),
                ),
            );
            meta.insert(
                "EnqueuedTimeUtcArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| iso(e.enqueued_ms))
                        .collect::<Vec<_>>(),
                ),
            );
            meta.insert(
                "PropertiesArray".into(),
                encoded(
                    events
                        .iter()
                        .map(|e| Value::Object(e.properties.clone()))
                        .collect::<Vec<_>>(),
                ),
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
        let count = events.len() as u64;
        let mut attempt: u32 = 0;
        loop {
            if let Some(policy) = &retry {
                meta.insert("RetryContext".into(), json!({ "RetryCount": attempt, "MaxRetryCount": policy.max_retry_count.map(i64::from).unwrap_or(-1) }));
            }
            // The host binds the trigger before it calls the handler: a body it cannot bind
            // fails the attempt without an invocation, like a handler failure.
            let result = match &trigger_value {
                Ok(_) => s.deliver(&f, data.clone(), meta.clone()).await,
                Err(reason) => Err(crate::worker::Failure {
                    status: None,
                    reason: reason.clone(),
                }),
            };
            match result {
                Ok(answer) => {
                    s.stats.record(
                        &f.name,
                        Outcome::Delivered,
                        count,
                        &format!(
                            "partition {partition}, {count} event(s) {}",
                            Shared::log_lines(&answer)
                        ),
                    );
                    break;
                }
                Err(failure) => {
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
                        return; // not checkpointed: the batch is read again after restart
                    }
                    s.stats.record(
                        &f.name,
                        Outcome::Lost,
                        count,
                        &format!("retry policy spent; checkpoint moves on: {reason}"),
                    );
                    break;
                }
            }
        }
        if let Err(e) = s
            .brokers
            .eh_checkpoint(hub, consumer_group, partition, last)
        {
            tracing::error!(hub = %hub, error = %e, "checkpoint failed");
        }
        cursor = Some(last);
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
