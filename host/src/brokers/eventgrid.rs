//! Event Grid topics: each published event becomes one delivery per subscription, pushed with
//! Event Grid's back-off schedule until it succeeds, runs out of attempts or time-to-live, or
//! meets a status Event Grid does not retry; then it is dead-lettered with the reason.

use super::deadletter::{insert_dead_letter, DeadLetterKind};
use super::{BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

/// Seconds to wait before attempt n+1 after attempt n failed (Event Grid's schedule: 10 s,
/// 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h).
pub const EVENT_GRID_BACKOFF_SECS: [i64; 10] =
    [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200];

/// How long a delivery handed out by [`EventGrid::due`] is held before it is due again.
const DELIVERY_LEASE_MS: i64 = 60_000;

/// Statuses Event Grid dead-letters at once instead of retrying. A Functions host never answers
/// these for a failed invocation (it answers 500), so for function subscribers they arise only
/// from the host itself (a rejected webhook request), never from a handler's status.
const NO_RETRY: [u16; 4] = [400, 401, 403, 413];

/// An Event Grid subscription's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgSubscriptionOptions {
    /// Attempts before dead-lettering (Azure: 1 to 30, default 30).
    pub max_delivery_attempts: u32,
    /// Time-to-live of an event (Azure default 1440 min).
    pub event_ttl_ms: i64,
}

impl Default for EgSubscriptionOptions {
    fn default() -> Self {
        Self {
            max_delivery_attempts: 30,
            event_ttl_ms: 1440 * 60_000,
        }
    }
}

/// One event due for delivery to one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct EgDelivery {
    /// Delivery id (for [`EventGrid::succeeded`] / [`EventGrid::failed`]).
    pub id: i64,
    /// Topic it was published to.
    pub topic: String,
    /// Subscribing function.
    pub subscriber: String,
    /// The event.
    pub event: Value,
    /// This attempt's number (from 1).
    pub attempt: u32,
    /// When it was published.
    pub first_published_ms: i64,
}

/// One Event Grid topic, as `brokers.topic(name)` gives it.
pub struct Topic<'a> {
    brokers: &'a Brokers,
    name: &'a str,
}

impl Brokers {
    /// The Event Grid topic `name`.
    pub fn topic<'a>(&'a self, name: &'a str) -> Topic<'a> {
        Topic {
            brokers: self,
            name,
        }
    }

    /// The Event Grid deliveries of every topic: what is due, and how each attempt ended.
    pub fn event_grid(&self) -> EventGrid<'_> {
        EventGrid { brokers: self }
    }
}

/// The Event Grid deliveries of all topics, as `brokers.event_grid()` gives them.
pub struct EventGrid<'a> {
    brokers: &'a Brokers,
}

impl Topic<'_> {
    /// Subscribes a function to a topic (or updates its retry policy).
    pub fn subscribe(&self, subscriber: &str, options: EgSubscriptionOptions) -> BrokerResult<()> {
        let topic = self.name;
        self.brokers.lock().execute(
            "INSERT INTO eg_subscriptions (topic, subscriber, max_attempts, ttl_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET max_attempts = ?3, ttl_ms = ?4",
            params![topic, subscriber, options.max_delivery_attempts.clamp(1, 30), options.event_ttl_ms],
        )?;
        Ok(())
    }

    /// Publishes events; returns how many deliveries were scheduled (events × subscriptions).
    /// Events on a topic nobody subscribes to are counted as unrouted, as Event Grid drops them.
    pub fn publish(&self, events: Vec<Value>) -> BrokerResult<usize> {
        let topic = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let subscribers: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT subscriber FROM eg_subscriptions WHERE topic = ?1 ORDER BY subscriber",
            )?;
            let rows = stmt.query_map([topic], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if subscribers.is_empty() {
            tx.execute(
                "INSERT INTO eg_unrouted (topic, events) VALUES (?1, ?2) ON CONFLICT DO UPDATE SET events = events + ?2",
                params![topic, events.len() as i64],
            )?;
        }
        let mut n = 0;
        {
            let mut insert = tx.prepare_cached("INSERT INTO eg_deliveries (topic, subscriber, event, first_ms, next_ms) VALUES (?1, ?2, ?3, ?4, ?4)")?;
            for event in &events {
                let text = event.to_string();
                for s in &subscribers {
                    insert.execute(params![topic, s, text, now])?;
                    n += 1;
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

impl EventGrid<'_> {
    /// Takes up to `max` due deliveries, counting an attempt for each and holding them for a
    /// minute (a crashed host's deliveries come back after that, or at the next start).
    pub fn due(&self, max: usize) -> BrokerResult<Vec<EgDelivery>> {
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let rows: Vec<(i64, String, String, String, u32, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, topic, subscriber, event, attempts, first_ms FROM eg_deliveries
                 WHERE next_ms <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY next_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, max as i64], |r| r.try_into())?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, topic, subscriber, event, attempts, first_ms) in rows {
            tx.prepare_cached(
                "UPDATE eg_deliveries SET attempts = attempts + 1, lease_until = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now + DELIVERY_LEASE_MS])?;
            let event = serde_json::from_str(&event).unwrap_or(Value::String(event));
            out.push(EgDelivery {
                id,
                topic,
                subscriber,
                event,
                attempt: attempts + 1,
                first_published_ms: first_ms,
            });
        }
        tx.commit()?;
        Ok(out)
    }

    /// The subscriber took the event: the delivery is done.
    pub fn succeeded(&self, id: i64) -> BrokerResult<()> {
        self.succeeded_many(&[id])
    }

    /// Records several successful deliveries in one transaction.
    pub fn succeeded_many(&self, ids: &[i64]) -> BrokerResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM eg_deliveries WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The subscriber failed (`status` is its HTTP status where there was one). Schedules the
    /// next attempt, or dead-letters and returns true when the status is one Event Grid does
    /// not retry, the attempts are spent, or the next attempt would fall past the TTL.
    pub fn failed(&self, id: i64, status: Option<u16>, error: &str) -> BrokerResult<bool> {
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let row: Option<(String, String, String, u32, i64, u32, i64)> = tx
            .query_row(
                "SELECT d.topic, d.subscriber, d.event, d.attempts, d.first_ms, COALESCE(s.max_attempts, 30), COALESCE(s.ttl_ms, 86400000)
                 FROM eg_deliveries d LEFT JOIN eg_subscriptions s ON s.topic = d.topic AND s.subscriber = d.subscriber WHERE d.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .optional()?;
        let Some((topic, subscriber, event, attempts, first_ms, max_attempts, ttl_ms)) = row else {
            return Ok(false);
        };
        let wait_ms = EVENT_GRID_BACKOFF_SECS
            [(attempts.max(1) as usize - 1).min(EVENT_GRID_BACKOFF_SECS.len() - 1)]
            * 1000;
        let reason = match status {
            Some(code) if NO_RETRY.contains(&code) => Some(format!(
                "the subscriber answered {code}, which Event Grid does not retry"
            )),
            _ if attempts >= max_attempts => {
                Some(format!("max delivery attempts ({max_attempts}) reached"))
            }
            _ if now + wait_ms - first_ms >= ttl_ms => Some(format!(
                "event time-to-live ({} min) would pass before the next attempt",
                ttl_ms / 60_000
            )),
            _ => None,
        };
        let dead = match reason {
            Some(reason) => {
                tx.execute("DELETE FROM eg_deliveries WHERE id = ?1", [id])?;
                let source = format!("{topic} -> {subscriber}");
                let meta =
                    json!({ "topic": topic, "subscriber": subscriber, "lastStatus": status });
                insert_dead_letter(
                    &tx,
                    DeadLetterKind::EventGrid,
                    &source,
                    &reason,
                    error,
                    attempts,
                    now,
                    event.as_bytes(),
                    &meta,
                )?;
                true
            }
            None => {
                tx.execute(
                    "UPDATE eg_deliveries SET next_ms = ?2, lease_until = NULL, last_status = ?3, last_error = ?4 WHERE id = ?1",
                    params![id, now + wait_ms, status, error],
                )?;
                false
            }
        };
        tx.commit()?;
        Ok(dead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;
    use super::*;

    fn event(id: &str) -> Value {
        json!({ "id": id, "subject": "s", "eventType": "t", "eventTime": "2026-11-23T00:00:00Z", "data": {} })
    }

    #[test]
    fn every_subscriber_gets_every_event_and_unsubscribed_topics_count_unrouted() {
        let (_d, b, _c) = brokers();
        b.topic("t")
            .subscribe("f1", EgSubscriptionOptions::default())
            .unwrap();
        b.topic("t")
            .subscribe("f2", EgSubscriptionOptions::default())
            .unwrap();
        assert_eq!(
            b.topic("t").publish(vec![event("1"), event("2")]).unwrap(),
            4
        );
        assert_eq!(b.topic("nobody").publish(vec![event("3")]).unwrap(), 0);
        let due = b.event_grid().due(10).unwrap();
        assert_eq!(due.len(), 4);
        assert!(due.iter().all(|d| d.attempt == 1));
        assert!(
            b.event_grid().due(10).unwrap().is_empty(),
            "held while being delivered"
        );
        assert_eq!(b.status().unwrap().event_grid_unrouted, 1);
    }

    #[test]
    fn failures_follow_the_back_off_schedule_then_dead_letter_at_max_attempts() {
        let (_d, b, clock) = brokers();
        b.topic("t")
            .subscribe(
                "f",
                EgSubscriptionOptions {
                    max_delivery_attempts: 4,
                    event_ttl_ms: 1440 * 60_000,
                },
            )
            .unwrap();
        b.topic("t").publish(vec![event("1")]).unwrap();
        for (attempt, wait) in [(1, 10), (2, 30), (3, 60)] {
            let d = b.event_grid().due(1).unwrap().remove(0);
            assert_eq!(d.attempt, attempt);
            assert!(!b.event_grid().failed(d.id, Some(500), "boom").unwrap());
            clock.advance(wait * 1000 - 1);
            assert!(
                b.event_grid().due(1).unwrap().is_empty(),
                "not before {wait} s"
            );
            clock.advance(1);
        }
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert!(b
            .event_grid()
            .failed(d.id, Some(503), "still boom")
            .unwrap());
        let l = &b.dead_letters(Some(DeadLetterKind::EventGrid)).unwrap()[0];
        assert_eq!(
            (l.attempts, l.source.as_str(), l.description.as_str()),
            (4, "t -> f", "still boom")
        );
        assert!(l.reason.contains("max delivery attempts"));
    }

    #[test]
    fn retries_due_now_skips_only_the_back_off_and_keeps_the_attempt_count() {
        let (_d, b, _clock) = brokers();
        b.topic("t")
            .subscribe("f", EgSubscriptionOptions::default())
            .unwrap();
        b.topic("t").publish(vec![event("1")]).unwrap();
        for _ in 0..6 {
            let d = b.event_grid().due(1).unwrap().remove(0);
            b.event_grid().failed(d.id, Some(500), "boom").unwrap();
            assert!(
                b.event_grid().due(1).unwrap().is_empty(),
                "waiting out its back-off"
            );
            assert_eq!(b.retries_due_now().unwrap(), 1);
        }
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert_eq!(d.attempt, 7, "attempts counted as before");
        assert_eq!(
            b.retries_due_now().unwrap(),
            0,
            "a leased delivery is not a retry"
        );
    }

    #[test]
    fn bad_request_is_dead_lettered_at_once_and_can_be_replayed() {
        let (_d, b, _c) = brokers();
        b.topic("t")
            .subscribe("f", EgSubscriptionOptions::default())
            .unwrap();
        b.topic("t").publish(vec![event("1")]).unwrap();
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert!(b
            .event_grid()
            .failed(d.id, Some(400), "not an Incident")
            .unwrap());
        let l = b.dead_letters(None).unwrap().remove(0);
        assert!(l.reason.contains("400"));
        b.replay(&l.id).unwrap();
        let again = b.event_grid().due(1).unwrap().remove(0);
        assert_eq!((again.attempt, again.event["id"].as_str()), (1, Some("1")));
    }

    #[test]
    fn ttl_ends_retries() {
        let (_d, b, clock) = brokers();
        b.topic("t")
            .subscribe(
                "f",
                EgSubscriptionOptions {
                    max_delivery_attempts: 30,
                    event_ttl_ms: 60_000,
                },
            )
            .unwrap();
        b.topic("t").publish(vec![event("1")]).unwrap();
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert!(!b.event_grid().failed(d.id, None, "timeout").unwrap());
        clock.advance(10_000);
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert!(!b.event_grid().failed(d.id, None, "timeout").unwrap()); // next at +30 s: t = 40 s
        clock.advance(30_000);
        let d = b.event_grid().due(1).unwrap().remove(0);
        assert!(
            b.event_grid().failed(d.id, None, "timeout").unwrap(),
            "next attempt at 100 s > 60 s TTL"
        );
        assert!(b.dead_letters(None).unwrap()[0]
            .reason
            .contains("time-to-live"));
    }

    #[test]
    fn a_crashed_delivery_comes_back_after_its_lease() {
        let (_d, b, clock) = brokers();
        b.topic("t")
            .subscribe("f", EgSubscriptionOptions::default())
            .unwrap();
        b.topic("t").publish(vec![event("1")]).unwrap();
        assert_eq!(b.event_grid().due(1).unwrap().len(), 1);
        clock.advance(DELIVERY_LEASE_MS);
        assert_eq!(b.event_grid().due(1).unwrap()[0].attempt, 2);
        assert_eq!(b.release_leases().unwrap(), 1);
        assert_eq!(
            b.event_grid().due(1).unwrap()[0].attempt,
            3,
            "released at restart"
        );
    }
}
