//! The Event Grid trigger loop: due deliveries pushed to the subscribed functions.

use super::shared::{log_unsettled, Shared};
use crate::stats::Outcome;
use crate::worker::Failure;
use serde_json::Map;
use socwire_common::text::for_log;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the Functions host's Event Grid webhook answers when the invocation failed.
const HOST_FAILURE_STATUS: u16 = 500;

/// How long Event Grid waits for a subscriber's answer before it counts the delivery as failed
/// and schedules a retry (Microsoft Learn, "Event Grid message delivery and retry": 30 s).
pub(crate) const RESPONSE_LIMIT: Duration = Duration::from_secs(30);

/// Runs one push delivery as Event Grid sees it: an answer later than `limit` is a failed
/// delivery. The delivery future is dropped at the limit, which closes the connection to the
/// handler, so the handler cancels the invocation (it aborts a run whose caller went away)
/// long before Event Grid's first redelivery, 10 s later at the earliest: the two never overlap.
pub(crate) async fn within_response_limit<T>(
    limit: Duration,
    delivery: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, delivery).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            status: None,
            reason: format!(
                "no answer within Event Grid's {} s response limit; the invocation was cancelled and the event will be redelivered",
                limit.as_secs()
            ),
        }),
    }
}

pub(super) async fn event_grid_loop(s: Arc<Shared>) {
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let due = match s.brokers.event_grid().due(32) {
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
                        log_unsettled(
                            "a failed delivery",
                            &d.topic,
                            s.brokers.event_grid().failed(d.id, Some(404), why),
                        );
                        return None;
                    }
                };
                let mut data = Map::new();
                data.insert(f.trigger.binding_name().to_string(), d.event.clone());
                let result =
                    within_response_limit(RESPONSE_LIMIT, s.deliver(&f, data, Map::new())).await;
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
                        let dead = log_unsettled(
                            "a failed delivery",
                            &d.topic,
                            s.brokers
                                .event_grid()
                                .failed(d.id, Some(HOST_FAILURE_STATUS), &detail),
                        ) == Some(true);
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
        if let Err(e) = s.brokers.event_grid().succeeded_many(&done) {
            tracing::error!(error = %e, "recording Event Grid deliveries failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_failed_delivery_and_the_invocation_is_dropped() {
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        let slow = async move {
            let _guard = guard; // held by the invocation while it runs
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Failure>("answer")
        };
        let e = within_response_limit(Duration::from_millis(20), slow)
            .await
            .unwrap_err();
        assert_eq!(e.status, None);
        assert!(e.reason.contains("response limit"), "{}", e.reason);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the invocation was not cancelled"
        );
        let fast = async { Ok::<_, Failure>("answer") };
        assert_eq!(
            within_response_limit(Duration::from_millis(20), fast)
                .await
                .unwrap(),
            "answer"
        );
    }
}
