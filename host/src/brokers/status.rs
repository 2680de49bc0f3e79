//! Counts for `socwire status`, and the pending-work check behind `--exit-when-idle`.

use super::{BrokerResult, Brokers};
use rusqlite::Connection;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::fmt;

/// A Storage queue's counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueCounts {
    /// Queue name.
    pub name: String,
    /// Visible now.
    pub visible: i64,
    /// Invisible (being handled, or waiting for a retry or initial delay).
    pub invisible: i64,
}

/// A Service Bus queue's or subscription's counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceBusCounts {
    /// Entity path.
    pub entity: String,
    /// `queue`, `topic` or `subscription`.
    pub kind: String,
    /// Ready to be received.
    pub active: i64,
    /// Under a lock.
    pub locked: i64,
    /// Scheduled for later.
    pub scheduled: i64,
    /// In the dead-letter store.
    pub dead_lettered: i64,
}

/// A consumer group's position on a hub.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerCounts {
    /// Consumer group.
    pub consumer_group: String,
    /// Events after its checkpoints.
    pub unprocessed: i64,
}

/// An Event Hub's counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HubCounts {
    /// Hub name.
    pub hub: String,
    /// Partitions.
    pub partitions: u32,
    /// Events retained.
    pub events: i64,
    /// Consumer groups with a checkpoint.
    pub consumer_groups: Vec<ConsumerCounts>,
}

/// An Event Grid subscription's counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventGridCounts {
    /// Topic.
    pub topic: String,
    /// Subscribing function.
    pub subscriber: String,
    /// Deliveries due now or being made.
    pub due: i64,
    /// Deliveries waiting for a retry.
    pub retrying: i64,
}

/// Everything `socwire status` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BrokerStatus {
    /// Storage queues (poison queues included).
    pub queues: Vec<QueueCounts>,
    /// Service Bus entities.
    pub service_bus: Vec<ServiceBusCounts>,
    /// Event Hubs.
    pub event_hubs: Vec<HubCounts>,
    /// Event Grid subscriptions.
    pub event_grid: Vec<EventGridCounts>,
    /// Events published to topics without subscribers (dropped, as in Azure).
    pub event_grid_unrouted: i64,
    /// Dead letters by kind: queue poison, Service Bus, Event Grid.
    pub dead_letters: DeadLetterCounts,
}

/// Dead letters by kind.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct DeadLetterCounts {
    /// Poisoned queue messages.
    pub queue_poison: i64,
    /// Service Bus dead letters.
    pub service_bus: i64,
    /// Event Grid dead letters.
    pub event_grid: i64,
}

/// What a running host consumes, for [`Brokers::pending_work`].
#[derive(Debug, Clone, Default)]
pub struct Consumers {
    /// Storage queues with a trigger.
    pub queues: Vec<String>,
    /// Service Bus queues/subscriptions with a trigger.
    pub service_bus: Vec<String>,
    /// `(hub, consumer group)` pairs with a trigger.
    pub event_hubs: Vec<(String, String)>,
}

/// Work left for the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingWork {
    /// Deliverable now.
    pub ready_now: i64,
    /// Held, locked or scheduled for later.
    pub waiting: i64,
    /// When the earliest waiting item becomes deliverable (unix ms).
    pub next_due_ms: Option<i64>,
}

fn count(
    conn: &rusqlite::Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> BrokerResult<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(p, |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Events of `hub` past `group`'s checkpoints, from each partition's newest sequence number,
/// its oldest retained one and the checkpoint: a few index lookups per partition, whatever the
/// backlog (counting the events row by row made `--exit-when-idle`'s 20 ms poll cost grow with
/// it: issue 21, 7g).
fn eh_pending(conn: &rusqlite::Connection, hub: &str, group: &str) -> BrokerResult<i64> {
    let partitions: Option<i64> = conn
        .prepare_cached("SELECT partitions FROM eh_hubs WHERE name = ?1")?
        .query_row([hub], |r| r.get(0))
        .optional()?;
    let mut pending = 0;
    let mut bounds = conn.prepare_cached(
        "SELECT
            COALESCE((SELECT next_seq - 1 FROM eh_sequences WHERE hub = ?1 AND partition = ?2),
                     (SELECT MAX(seq) FROM eh_events WHERE hub = ?1 AND partition = ?2)),
            (SELECT MIN(seq) FROM eh_events WHERE hub = ?1 AND partition = ?2),
            (SELECT seq FROM eh_checkpoints WHERE hub = ?1 AND consumer_group = ?3 AND partition = ?2)",
    )?;
    for p in 0..partitions.unwrap_or(0) {
        let (last, first, checkpoint): (Option<i64>, Option<i64>, Option<i64>) = bounds
            .query_row(params![hub, p, group], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        // Only retained events count: a checkpoint older than the oldest one left (retention
        // deleted the rest) leaves from the oldest one.
        if let (Some(last), Some(first)) = (last, first) {
            let after = checkpoint.unwrap_or(-1).max(first - 1);
            pending += (last - after).max(0);
        }
    }
    Ok(pending)
}

impl Brokers {
    /// Work left for `consumers` plus every Event Grid delivery (Event Grid pushes).
    pub fn pending_work(&self, consumers: &Consumers) -> BrokerResult<PendingWork> {
        let now = self.now();
        let conn = self.lock();
        let mut w = PendingWork::default();
        let mut add = |ready: i64, waiting: (i64, Option<i64>)| {
            w.ready_now += ready;
            w.waiting += waiting.0;
            if let Some(t) = waiting.1 {
                w.next_due_ms = Some(w.next_due_ms.map_or(t, |m: i64| m.min(t)));
            }
        };
        for q in &consumers.queues {
            let ready = count(&conn, "SELECT COUNT(*), NULL FROM queue_messages WHERE queue = ?1 AND next_visible_ms <= ?2", params![q, now])?.0;
            let waiting = count(&conn, "SELECT COUNT(*), MIN(next_visible_ms) FROM queue_messages WHERE queue = ?1 AND next_visible_ms > ?2", params![q, now])?;
            add(ready, waiting);
        }
        for e in &consumers.service_bus {
            let ready = count(
                &conn,
                "SELECT COUNT(*), NULL FROM sb_messages WHERE entity = ?1 AND visible_ms <= ?2 AND (locked_until IS NULL OR locked_until <= ?2)",
                params![e, now],
            )?
            .0;
            let waiting = count(
                &conn,
                "SELECT COUNT(*), MIN(MAX(visible_ms, COALESCE(locked_until, 0))) FROM sb_messages WHERE entity = ?1 AND (visible_ms > ?2 OR locked_until > ?2)",
                params![e, now],
            )?;
            add(ready, waiting);
        }
        for (hub, group) in &consumers.event_hubs {
            add(eh_pending(&conn, hub, group)?, (0, None));
        }
        let ready = count(&conn, "SELECT COUNT(*), NULL FROM eg_deliveries WHERE next_ms <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)", [now])?.0;
        let waiting = count(
            &conn,
            "SELECT COUNT(*), MIN(MAX(next_ms, COALESCE(lease_until, 0))) FROM eg_deliveries WHERE next_ms > ?1 OR lease_until > ?1",
            [now],
        )?;
        add(ready, waiting);
        Ok(w)
    }

    /// Counts for every queue, entity, hub and subscription.
    pub fn status(&self) -> BrokerResult<BrokerStatus> {
        let now = self.now();
        let conn = self.lock();
        let queues = queue_counts(&conn, now)?;
        let service_bus = service_bus_counts(&conn, now)?;
        let event_hubs = hub_counts(&conn)?;
        let event_grid = event_grid_counts(&conn, now)?;
        let event_grid_unrouted = conn.query_row(
            "SELECT COALESCE(SUM(events), 0) FROM eg_unrouted",
            [],
            |r| r.get(0),
        )?;
        let dead_letters = dead_letter_counts(&conn)?;
        Ok(BrokerStatus {
            queues,
            service_bus,
            event_hubs,
            event_grid,
            event_grid_unrouted,
            dead_letters,
        })
    }
}

/// Visible and invisible messages per storage queue.
fn queue_counts(conn: &Connection, now: i64) -> BrokerResult<Vec<QueueCounts>> {
    let mut stmt = conn.prepare(
            "SELECT q.name, (SELECT COUNT(*) FROM queue_messages m WHERE m.queue = q.name AND m.next_visible_ms <= ?1),
                (SELECT COUNT(*) FROM queue_messages m WHERE m.queue = q.name AND m.next_visible_ms > ?1)
             FROM queues q ORDER BY q.name",
        )?;
    let rows = stmt.query_map([now], |r| {
        Ok(QueueCounts {
            name: r.get(0)?,
            visible: r.get(1)?,
            invisible: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Active, locked, scheduled and dead-lettered messages per Service Bus entity.
fn service_bus_counts(conn: &Connection, now: i64) -> BrokerResult<Vec<ServiceBusCounts>> {
    let mut stmt = conn.prepare(
            "SELECT e.name, e.kind,
                (SELECT COUNT(*) FROM sb_messages m WHERE m.entity = e.name AND m.visible_ms <= ?1 AND (m.locked_until IS NULL OR m.locked_until <= ?1)),
                (SELECT COUNT(*) FROM sb_messages m WHERE m.entity = e.name AND m.locked_until > ?1),
                (SELECT COUNT(*) FROM sb_messages m WHERE m.entity = e.name AND m.visible_ms > ?1),
                (SELECT COUNT(*) FROM dead_letters d WHERE d.kind = 'sb' AND d.source = e.name)
             FROM sb_entities e ORDER BY e.name",
        )?;
    let rows = stmt.query_map([now], |r| {
        Ok(ServiceBusCounts {
            entity: r.get(0)?,
            kind: r.get(1)?,
            active: r.get(2)?,
            locked: r.get(3)?,
            scheduled: r.get(4)?,
            dead_lettered: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Events per hub, and what each consumer group has not processed yet.
fn hub_counts(conn: &Connection) -> BrokerResult<Vec<HubCounts>> {
    let mut stmt = conn.prepare("SELECT h.name, h.partitions, (SELECT COUNT(*) FROM eh_events e WHERE e.hub = h.name) FROM eh_hubs h ORDER BY h.name")?;
    let rows = stmt.query_map([], |r| {
        Ok(HubCounts {
            hub: r.get(0)?,
            partitions: r.get(1)?,
            events: r.get(2)?,
            consumer_groups: Vec::new(),
        })
    })?;
    let mut event_hubs = rows.collect::<Result<Vec<_>, _>>()?;
    for h in &mut event_hubs {
        let mut stmt = conn.prepare(
            "SELECT g.consumer_group, (SELECT COUNT(*) FROM eh_events e WHERE e.hub = ?1 AND e.seq > COALESCE(
                (SELECT c.seq FROM eh_checkpoints c WHERE c.hub = ?1 AND c.consumer_group = g.consumer_group AND c.partition = e.partition), -1))
             FROM (SELECT DISTINCT consumer_group FROM eh_checkpoints WHERE hub = ?1) g ORDER BY g.consumer_group",
        )?;
        let rows = stmt.query_map([&h.hub], |r| {
            Ok(ConsumerCounts {
                consumer_group: r.get(0)?,
                unprocessed: r.get(1)?,
            })
        })?;
        h.consumer_groups = rows.collect::<Result<Vec<_>, _>>()?;
    }
    Ok(event_hubs)
}

/// Due and retrying deliveries per Event Grid subscription.
fn event_grid_counts(conn: &Connection, now: i64) -> BrokerResult<Vec<EventGridCounts>> {
    let mut stmt = conn.prepare(
            "SELECT s.topic, s.subscriber,
                (SELECT COUNT(*) FROM eg_deliveries d WHERE d.topic = s.topic AND d.subscriber = s.subscriber AND d.next_ms <= ?1),
                (SELECT COUNT(*) FROM eg_deliveries d WHERE d.topic = s.topic AND d.subscriber = s.subscriber AND d.next_ms > ?1)
             FROM eg_subscriptions s ORDER BY s.topic, s.subscriber",
        )?;
    let rows = stmt.query_map([now], |r| {
        Ok(EventGridCounts {
            topic: r.get(0)?,
            subscriber: r.get(1)?,
            due: r.get(2)?,
            retrying: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Dead letters by kind.
fn dead_letter_counts(conn: &Connection) -> BrokerResult<DeadLetterCounts> {
    let mut dead_letters = DeadLetterCounts::default();
    let mut stmt = conn.prepare("SELECT kind, COUNT(*) FROM dead_letters GROUP BY kind")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (kind, n) = row?;
        match kind.as_str() {
            "q" => dead_letters.queue_poison = n,
            "sb" => dead_letters.service_bus = n,
            _ => dead_letters.event_grid = n,
        }
    }
    Ok(dead_letters)
}

impl fmt::Display for BrokerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Storage queues{}",
            if self.queues.is_empty() { ": none" } else { "" }
        )?;
        for q in &self.queues {
            writeln!(
                f,
                "  {:<40} {:>8} visible {:>8} invisible",
                q.name, q.visible, q.invisible
            )?;
        }
        writeln!(
            f,
            "Service Bus{}",
            if self.service_bus.is_empty() {
                ": none"
            } else {
                ""
            }
        )?;
        for e in &self.service_bus {
            writeln!(
                f,
                "  {:<40} {:<12} {:>6} active {:>6} locked {:>6} scheduled {:>6} dead-lettered",
                e.entity, e.kind, e.active, e.locked, e.scheduled, e.dead_lettered
            )?;
        }
        writeln!(
            f,
            "Event Hubs{}",
            if self.event_hubs.is_empty() {
                ": none"
            } else {
                ""
            }
        )?;
        for h in &self.event_hubs {
            writeln!(
                f,
                "  {:<40} {:>3} partition(s) {:>10} event(s)",
                h.hub, h.partitions, h.events
            )?;
            for g in &h.consumer_groups {
                writeln!(
                    f,
                    "    consumer group {:<25} {:>10} unprocessed",
                    g.consumer_group, g.unprocessed
                )?;
            }
        }
        writeln!(
            f,
            "Event Grid{}",
            if self.event_grid.is_empty() {
                ": none"
            } else {
                ""
            }
        )?;
        for s in &self.event_grid {
            writeln!(
                f,
                "  {:<40} {:>6} due {:>6} retrying",
                format!("{} -> {}", s.topic, s.subscriber),
                s.due,
                s.retrying
            )?;
        }
        if self.event_grid_unrouted > 0 {
            writeln!(
                f,
                "  {} event(s) published to topics without subscribers (dropped)",
                self.event_grid_unrouted
            )?;
        }
        let d = self.dead_letters;
        writeln!(
            f,
            "Dead letters: {} queue poison, {} Service Bus, {} Event Grid (socwire dlq list)",
            d.queue_poison, d.service_bus, d.event_grid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;
    use super::super::Clock;
    use super::*;

    #[test]
    fn pending_work_counts_only_what_the_consumers_take() {
        let (_d, b, clock) = brokers();
        let consumers = Consumers {
            queues: vec!["q".into()],
            service_bus: vec![],
            event_hubs: vec![("h".into(), "g".into())],
        };
        assert_eq!(b.pending_work(&consumers).unwrap(), PendingWork::default());
        b.queue("q-poison").put(b"ignored", 0).unwrap();
        b.queue("q").put(b"later", 5_000).unwrap();
        let w = b.pending_work(&consumers).unwrap();
        assert_eq!(
            (w.ready_now, w.waiting, w.next_due_ms),
            (0, 1, Some(clock.now_ms() + 5_000))
        );
        b.hub("h").ensure(2).unwrap();
        b.hub("h")
            .send(Some("k"), b"e", Default::default())
            .unwrap();
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 1);
        let p = b
            .hub("h")
            .read("g", 0, None, 1)
            .unwrap()
            .first()
            .map(|e| e.partition_id)
            .unwrap_or(1);
        b.hub("h").checkpoint("g", p, 0).unwrap();
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 0);
    }

    #[test]
    fn event_hub_pending_work_counts_retained_events_past_the_checkpoint() {
        let (_d, b, clock) = brokers();
        let consumers = Consumers {
            queues: vec![],
            service_bus: vec![],
            event_hubs: vec![("h".into(), "g".into())],
        };
        b.hub("h").ensure(2).unwrap();
        for i in 0..10 {
            b.hub("h")
                .send(Some(&format!("k{}", i % 2)), b"e", Default::default())
                .unwrap();
        }
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 10);
        let p = b
            .hub("h")
            .read("g", 0, None, 1)
            .unwrap()
            .first()
            .map(|e| e.partition_id);
        let p = p.unwrap_or(1);
        b.hub("h").checkpoint("g", p, 1).unwrap(); // two events of partition p taken
        let on_p = b.hub("h").read("x", p, None, 100).unwrap().len() as i64;
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 10 - 2);
        // Retention drops everything; two new events, one per key, are all that is pending
        // (the old checkpoint is older than what is left).
        clock.advance(86_400_001);
        b.hub("h").expire(86_400_000).unwrap();
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 0);
        b.hub("h")
            .send(Some("k0"), b"n", Default::default())
            .unwrap();
        b.hub("h")
            .send(Some("k1"), b"n", Default::default())
            .unwrap();
        assert_eq!(b.pending_work(&consumers).unwrap().ready_now, 2, "{on_p}");
    }

    #[test]
    fn status_reports_every_broker() {
        let (_d, b, _c) = brokers();
        b.queue("triage-requests").put(b"x", 0).unwrap();
        b.service_bus("gpu")
            .ensure_queue(Default::default())
            .unwrap();
        b.service_bus("gpu")
            .send(super::super::SbMessage {
                message_id: "1".into(),
                ..Default::default()
            })
            .unwrap();
        b.hub("alerts")
            .send(None, b"{}", Default::default())
            .unwrap();
        b.topic("t").subscribe("f", Default::default()).unwrap();
        b.topic("t").publish(vec![serde_json::json!({})]).unwrap();
        let s = b.status().unwrap();
        assert_eq!(
            s.queues[0],
            QueueCounts {
                name: "triage-requests".into(),
                visible: 1,
                invisible: 0
            }
        );
        assert_eq!(
            (s.service_bus[0].entity.as_str(), s.service_bus[0].active),
            ("gpu", 1)
        );
        assert_eq!(
            (s.event_hubs[0].hub.as_str(), s.event_hubs[0].events),
            ("alerts", 1)
        );
        assert_eq!(s.event_grid[0].due, 1);
        let text = s.to_string();
        assert!(
            text.contains("triage-requests") && text.contains("t -> f"),
            "{text}"
        );
    }
}
