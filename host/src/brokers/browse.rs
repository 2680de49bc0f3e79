//! Read-only views for the console: Event Hubs partitions, the functions' recorded triggers,
//! and dead letters a page at a time with a bounded body preview.

use super::deadletter::DeadLetterKind;
use super::{BrokerResult, Brokers, DeadLetter, REJECTS_QUEUE};
use rusqlite::params;
use serde::Serialize;

/// One partition of a hub.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionCounts {
    /// Hub name.
    pub hub: String,
    /// Partition id.
    pub partition: u32,
    /// Events retained.
    pub events: i64,
    /// Highest sequence number retained (-1 when empty).
    pub last_sequence: i64,
    /// `(consumer group, events after its checkpoint)` for every group with a checkpoint on
    /// the hub.
    pub unprocessed: Vec<(String, i64)>,
}

/// A function's trigger as `socwire up` recorded it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionTrigger {
    /// Function name.
    pub function: String,
    /// `queue`, `servicebus`, `eventhub` or `eventgrid`.
    pub kind: String,
    /// Queue, entity path, hub or topic.
    pub source: String,
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterPage {
    /// All dead letters of the kinds asked for.
    pub total: i64,
    /// This page, oldest first; bodies cut to the preview length.
    pub letters: Vec<DeadLetter>,
}

impl Brokers {
    /// Every partition of every hub, with each checkpointed consumer group's backlog there.
    pub fn partitions(&self) -> BrokerResult<Vec<PartitionCounts>> {
        let conn = self.lock();
        let mut out: Vec<PartitionCounts> = Vec::new();
        {
            let mut hubs =
                conn.prepare_cached("SELECT name, partitions FROM eh_hubs ORDER BY name")?;
            let mut stats = conn.prepare_cached(
                "SELECT COUNT(*), COALESCE(MAX(seq), -1) FROM eh_events WHERE hub = ?1 AND partition = ?2",
            )?;
            let hubs: Vec<(String, u32)> = hubs
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (hub, n) in hubs {
                for partition in 0..n {
                    let (events, last_sequence) =
                        stats.query_row(params![hub, partition], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    out.push(PartitionCounts {
                        hub: hub.clone(),
                        partition,
                        events,
                        last_sequence,
                        unprocessed: Vec::new(),
                    });
                }
            }
        }
        let mut stmt = conn.prepare_cached(
            "SELECT c.hub, c.partition, c.consumer_group,
                (SELECT COUNT(*) FROM eh_events e WHERE e.hub = c.hub AND e.partition = c.partition AND e.seq > c.seq)
             FROM eh_checkpoints c ORDER BY c.hub, c.partition, c.consumer_group",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (hub, partition, group, n) = row?;
            if let Some(p) = out
                .iter_mut()
                .find(|p| p.hub == hub && p.partition == partition)
            {
                p.unprocessed.push((group, n));
            }
        }
        Ok(out)
    }

    /// The trigger each function listens on, as the last `socwire up` recorded it.
    pub fn function_triggers(&self) -> BrokerResult<Vec<FunctionTrigger>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT function, kind, source FROM function_triggers ORDER BY function",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FunctionTrigger {
                function: r.get(0)?,
                kind: r.get(1)?,
                source: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Dead letters from the dead-letter store (queue poison, Service Bus, Event Grid), or the
    /// functions' rejects when `rejected`, `limit` at a time after `offset`, each body cut to
    /// `preview_bytes` (then made valid UTF-8).
    pub fn dead_letter_page(
        &self,
        rejected: bool,
        offset: usize,
        limit: usize,
        preview_bytes: usize,
    ) -> BrokerResult<DeadLetterPage> {
        if rejected {
            let (total, ids): (i64, Vec<i64>) = {
                let conn = self.lock();
                let total = conn.query_row(
                    "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                    [REJECTS_QUEUE],
                    |r| r.get(0),
                )?;
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM queue_messages WHERE queue = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                )?;
                let ids = stmt
                    .query_map(params![REJECTS_QUEUE, limit as i64, offset as i64], |r| {
                        r.get(0)
                    })?
                    .collect::<Result<_, _>>()?;
                (total, ids)
            };
            let mut letters = Vec::new();
            for id in ids {
                if let Some(mut d) = self.reject(id)? {
                    d.body = cut(d.body.as_bytes(), preview_bytes);
                    letters.push(d);
                }
            }
            return Ok(DeadLetterPage { total, letters });
        }
        let conn = self.lock();
        let total = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, kind, source, reason, description, attempts, dead_lettered_ms, substr(body, 1, ?3), meta
             FROM dead_letters ORDER BY seq LIMIT ?1 OFFSET ?2",
        )?;
        let rows = stmt.query_map(
            params![limit as i64, offset as i64, preview_bytes as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )?;
        let mut letters = Vec::new();
        for row in rows {
            let (seq, tag, source, reason, description, attempts, at, body, meta) = row?;
            let kind = match tag.as_str() {
                "sb" => DeadLetterKind::ServiceBus,
                "eg" => DeadLetterKind::EventGrid,
                _ => DeadLetterKind::QueuePoison,
            };
            letters.push(DeadLetter {
                id: format!("{tag}:{seq}"),
                kind,
                source,
                reason,
                description,
                attempts,
                dead_lettered_ms: at,
                body: cut(&body, preview_bytes),
                meta: serde_json::from_str(&meta).unwrap_or_default(),
                key: None,
                command_id: None,
            });
        }
        Ok(DeadLetterPage { total, letters })
    }
}

/// The first `max` bytes of `body` as text (a cut character is dropped).
fn cut(body: &[u8], max: usize) -> String {
    let b = &body[..body.len().min(max)];
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;
    use super::*;

    #[test]
    fn partitions_count_events_and_backlogs() {
        let (_d, b, _c) = brokers();
        b.hub("h").ensure(2).unwrap();
        for i in 0..5 {
            b.hub("h")
                .send(Some(&format!("k{i}")), b"{}", Default::default())
                .unwrap();
        }
        let p = b.partitions().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.iter().map(|p| p.events).sum::<i64>(), 5);
        let busy = p.iter().find(|p| p.events > 0).unwrap().clone();
        b.hub("h").checkpoint("g", busy.partition, 0).unwrap();
        let after = b.partitions().unwrap();
        let q = after
            .iter()
            .find(|q| q.partition == busy.partition)
            .unwrap();
        assert_eq!(q.unprocessed, vec![("g".to_string(), busy.events - 1)]);
    }

    #[test]
    fn dead_letters_come_a_page_at_a_time_with_a_cut_preview() {
        let (_d, b, _c) = brokers();
        for i in 0..3 {
            b.queue("rq")
                .put(format!("é{i}{}", "x".repeat(100)).as_bytes(), 0)
                .unwrap();
        }
        for m in b.queue("rq").receive(10, 1_000).unwrap() {
            b.queue("rq")
                .poison(&m.id, &m.pop_receipt, "broken")
                .unwrap();
        }
        let page = b.dead_letter_page(false, 1, 1, 2).unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.letters.len(), 1);
        // Two bytes cut "é" (two bytes) exactly; one byte would drop it.
        assert_eq!(page.letters[0].body, "é");
        assert_eq!(cut("é".as_bytes(), 1), "");
        assert!(b
            .dead_letter_page(true, 0, 10, 10)
            .unwrap()
            .letters
            .is_empty());
    }
}
