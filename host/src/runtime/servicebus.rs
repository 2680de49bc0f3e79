//! The Service Bus trigger loop.

use super::shared::Shared;
use crate::config::Trigger;
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
        ..
    } = &f.trigger
    else {
        return;
    };
    let max = s.cfg.host.service_bus.max_concurrent_calls;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let batch = match s.brokers.sb_receive(entity, max) {
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
        // Messages of one session arrive in order and are handled in order; others in parallel.
        let mut set = tokio::task::JoinSet::new();
        let mut by_session: BTreeMap<Option<String>, Vec<crate::brokers::SbReceived>> =
            BTreeMap::new();
        for m in batch {
            let key = m.message.session_id.clone();
            by_session.entry(key).or_default().push(m);
        }
        for (session, msgs) in by_session {
            let groups: Vec<Vec<crate::brokers::SbReceived>> = match session {
                Some(_) => vec![msgs],
                None => msgs.into_iter().map(|m| vec![m]).collect(),
            };
            for group in groups {
                let s = s.clone();
                let f = f.clone();
                let binding = binding.clone();
                let entity = entity.clone();
                set.spawn(async move {
                    for m in group {
                        let body = String::from_utf8_lossy(&m.message.body).to_string();
                        let mut data = Map::new();
                        data.insert(binding.clone(), encoded(&body));
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
                        let result = s
                            .deliver_renewing_lock(&f, data, meta, &entity, &m.lock_token)
                            .await;
                        match result {
                            Ok(answer) => {
                                let _ = s.brokers.sb_complete(&entity, &m.lock_token);
                                s.stats.record(
                                    &f.name,
                                    Outcome::Delivered,
                                    1,
                                    &Shared::log_lines(&answer),
                                );
                            }
                            Err(failure) => {
                                let reason = format!(
                                    "{} (status {:?}, delivery {})",
                                    failure.reason, failure.status, m.delivery_count
                                );
                                let dead = matches!(
                                    s.brokers.sb_abandon(&entity, &m.lock_token, &reason),
                                    Ok(true)
                                );
                                let outcome = if dead {
                                    Outcome::DeadLettered
                                } else {
                                    Outcome::Retried
                                };
                                s.stats.record(&f.name, outcome, 1, &for_log(&reason, 300));
                                // Later messages of the session wait for this one's redelivery.
                                break;
                            }
                        }
                    }
                });
            }
        }
        while set.join_next().await.is_some() {}
    }
}
