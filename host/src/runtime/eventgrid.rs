//! The Event Grid trigger loop: due deliveries pushed to the subscribed functions.

use super::shared::Shared;
use crate::stats::Outcome;
use serde_json::Map;
use socwire_common::text::for_log;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the Functions host's Event Grid webhook answers when the invocation failed.
const HOST_FAILURE_STATUS: u16 = 500;

pub(super) async fn event_grid_loop(s: Arc<Shared>) {
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let due = match s.brokers.eg_due(32) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Event Grid read failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        }
        backoff = Duration::from_millis(10);
        let mut set = tokio::task::JoinSet::new();
        for d in due {
            let s = s.clone();
            set.spawn(async move {
                let f = match s.cfg.function(&d.subscriber) {
                    Some(f) if !s.cfg.is_disabled(&f.name) => f.clone(),
                    // The host's webhook knows no listener for it: 404, and Event Grid's retry
                    // schedule applies.
                    found => {
                        let why = if found.is_some() {
                            "subscribed function is disabled (AzureWebJobs.<name>.Disabled)"
                        } else {
                            "subscribed function is not in this app"
                        };
                        let _ = s.brokers.eg_failed(d.id, Some(404), why);
                        return None;
                    }
                };
                let mut data = Map::new();
                data.insert(f.trigger.binding_name().to_string(), d.event.clone());
                let result = s.deliver(&f, data, Map::new()).await;
                match result {
                    Ok(answer) => {
                        s.stats
                            .record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
                        return Some(d.id);
                    }
                    Err(failure) => {
                        let reason = for_log(&failure.reason, 300);
                        // The Functions host answers Event Grid's push with 500 for any failed
                        // invocation, whatever the handler's status was: Event Grid retries it
                        // on its schedule, then dead-letters (docs/decisions/0010).
                        let detail =
                            format!("{} (handler status {:?})", failure.reason, failure.status);
                        let dead = matches!(
                            s.brokers
                                .eg_failed(d.id, Some(HOST_FAILURE_STATUS), &detail),
                            Ok(true)
                        );
                        let outcome = if dead {
                            Outcome::DeadLettered
                        } else {
                            Outcome::Retried
                        };
                        s.stats.record(
                            &f.name,
                            outcome,
                            1,
                            &format!("attempt {}: {reason}", d.attempt),
                        );
                    }
                }
                None
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(Some(id)) = joined {
                done.push(id);
            }
        }
        if let Err(e) = s.brokers.eg_succeeded_many(&done) {
            tracing::error!(error = %e, "recording Event Grid deliveries failed");
        }
    }
}
