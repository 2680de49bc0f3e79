//! The Service Bus trigger loop.

use super::shared::{log_unsettled, Shared};
use crate::brokers::SbReceived;
use crate::config::{FunctionDef, Trigger};
use crate::envelope::{encoded, iso};
use crate::stats::Outcome;
use serde_json::{Map, Value};
use socwire_common::text::for_log;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn service_bus_loop(s: Arc<Shared>, name: String) {
    let f = s.function(&name).clone();
    let Trigger::ServiceBus {
        name: binding,
        entity,
        sessions,
        ..
    } = &f.trigger
    else {
        return;
    };
    let sessions = *sessions;
    let max = s.cfg.host.service_bus.max_concurrent_calls;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let batch = match s.brokers.service_bus(entity).receive(max) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(entity = %entity, error = %e, "Service Bus receive failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        }
        backoff = Duration::from_millis(10);
        let mut set = tokio::task::JoinSet::new();
        for group in delivery_groups(batch, sessions) {
            let s = s.clone();
            let f = f.clone();
            let binding = binding.clone();
            let entity = entity.clone();
            set.spawn(async move {
                for m in group {
                    if !deliver(&s, &f, &binding, &entity, &m).await {
                        // Later messages of the session wait for this one's redelivery.
                        break;
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// Delivers one message and settles it: completed on success, abandoned (dead-lettered at the
/// entity's max delivery count) on failure. True when it succeeded.
async fn deliver(s: &Shared, f: &FunctionDef, binding: &str, entity: &str, m: &SbReceived) -> bool {
    let body = String::from_utf8_lossy(&m.message.body).to_string();
    let mut data = Map::new();
    data.insert(binding.to_string(), encoded(&body));
    let result = s
        .deliver_renewing_lock(f, data, metadata(m), entity, &m.lock_token)
        .await;
    let failure = match result {
        Ok(answer) => {
            log_unsettled(
                "completing",
                entity,
                s.brokers.service_bus(entity).complete(&m.lock_token),
            );
            s.stats
                .record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
            return true;
        }
        Err(failure) => failure,
    };
    let reason = format!(
        "{} (status {:?}, delivery {})",
        failure.reason, failure.status, m.delivery_count
    );
    let dead = log_unsettled(
        "abandoning",
        entity,
        s.brokers
            .service_bus(entity)
            .abandon(&m.lock_token, &reason),
    ) == Some(true);
    let outcome = if dead {
        Outcome::DeadLettered
    } else {
        Outcome::Retried
    };
    s.stats.record(&f.name, outcome, 1, &for_log(&reason, 300));
    false
}

/// The metadata the Service Bus extension binds beside the message.
fn metadata(m: &SbReceived) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("DeliveryCount".into(), encoded(m.delivery_count));
    meta.insert("MessageId".into(), encoded(&m.message.message_id));
    meta.insert("SequenceNumber".into(), encoded(m.sequence_number));
    meta.insert("EnqueuedTimeUtc".into(), iso(m.enqueued_ms));
    meta.insert("LockToken".into(), encoded(&m.lock_token));
    for (key, value) in [
        ("Subject", &m.message.subject),
        ("Label", &m.message.subject),
        ("SessionId", &m.message.session_id),
        ("CorrelationId", &m.message.correlation_id),
        ("ContentType", &m.message.content_type),
    ] {
        if let Some(v) = value {
            meta.insert(key.into(), encoded(v));
        }
    }
    meta.insert(
        "ApplicationProperties".into(),
        Value::Object(m.message.application_properties.clone()),
    );
    meta.insert(
        "UserProperties".into(),
        Value::Object(m.message.application_properties.clone()),
    );
    meta
}

/// How a received batch runs: only a trigger with `isSessionsEnabled` takes a session's messages
/// one at a time, in order (the extension then uses a session processor); without it the
/// SessionId means nothing to the trigger and every message runs at once, up to
/// `maxConcurrentCalls` (azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.ServiceBus,
/// `ServiceBusListener`: `ServiceBusSessionProcessor` only when `IsSessionsEnabled`).
fn delivery_groups(batch: Vec<SbReceived>, sessions: bool) -> Vec<Vec<SbReceived>> {
    if !sessions {
        return batch.into_iter().map(|m| vec![m]).collect();
    }
    let mut by_session: BTreeMap<Option<String>, Vec<SbReceived>> = BTreeMap::new();
    for m in batch {
        by_session
            .entry(m.message.session_id.clone())
            .or_default()
            .push(m);
    }
    by_session.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brokers::{SbEntityOptions, SbMessage};

    fn received(sessions: bool) -> Vec<SbReceived> {
        let dir = tempfile::tempdir().unwrap();
        let b = crate::brokers::Brokers::open(dir.path(), Arc::new(crate::brokers::SystemClock))
            .unwrap();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                requires_session: sessions,
                ..Default::default()
            })
            .unwrap();
        for id in ["1", "2"] {
            b.service_bus("q")
                .send(SbMessage {
                    message_id: id.into(),
                    body: b"{}".to_vec(),
                    session_id: Some("same".into()),
                    ..Default::default()
                })
                .unwrap();
        }
        b.service_bus("q").receive(16).unwrap()
    }

    #[test]
    fn a_session_id_serialises_messages_only_where_sessions_are_enabled() {
        // No isSessionsEnabled: both messages of the "same" session run at once.
        let groups = delivery_groups(received(false), false);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
        // A session entity gives only the session's head; it runs alone, the next waits.
        let groups = delivery_groups(received(true), true);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![1]);
    }
}
