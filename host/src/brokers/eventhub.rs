//! Event Hubs: partitions chosen by partition key (or round robin), per-partition sequence
//! numbers, and a checkpoint per consumer group and partition.

use super::{BrokerError, BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{Map, Value};

/// Partitions a hub gets when it is first sent to without being declared.
pub const DEFAULT_PARTITIONS: u32 = 4;
/// The largest event body Event Hubs accepts (Standard and Premium tiers): 1 MiB.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An event read from a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct EhEvent {
    /// Partition it is in.
    pub partition_id: u32,
    /// Sequence number within the partition (from 0).
    pub sequence_number: i64,
    /// When it was enqueued.
    pub enqueued_ms: i64,
    /// The partition key it was sent with.
    pub partition_key: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Application properties.
    pub properties: Map<String, Value>,
}

/// FNV-1a: a stable hash so one key always lands on one partition.
fn partition_for(key: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions
}

fn ensure(tx: &Transaction<'_>, hub: &str, partitions: u32) -> BrokerResult<u32> {
    tx.prepare_cached("INSERT OR IGNORE INTO eh_hubs (name, partitions) VALUES (?1, ?2)")?
        .execute(params![hub, partitions.max(1)])?;
    Ok(tx
        .prepare_cached("SELECT partitions FROM eh_hubs WHERE name = ?1")?
        .query_row([hub], |r| r.get(0))?)
}

/// One event hub of the brokers, as `brokers.hub(name)` gives it.
pub struct Hub<'a> {
    brokers: &'a Brokers,
    name: &'a str,
}

impl Brokers {
    /// The event hub `name` (sending to it creates it).
    pub fn hub<'a>(&'a self, name: &'a str) -> Hub<'a> {
        Hub {
            brokers: self,
            name,
        }
    }
}

impl Hub<'_> {
    /// Creates a hub with `partitions` partitions unless it exists.
    pub fn ensure(&self, partitions: u32) -> BrokerResult<()> {
        let hub = self.name;
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        ensure(&tx, hub, partitions)?;
        tx.commit()?;
        Ok(())
    }

    /// Partitions of a hub (None if it does not exist).
    pub fn partitions(&self) -> BrokerResult<Option<u32>> {
        let hub = self.name;
        Ok(self
            .brokers
            .lock()
            .query_row(
                "SELECT partitions FROM eh_hubs WHERE name = ?1",
                [hub],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sends one event; returns its partition and sequence number.
    pub fn send(
        &self,
        partition_key: Option<&str>,
        body: &[u8],
        properties: Map<String, Value>,
    ) -> BrokerResult<(u32, i64)> {
        let props = Value::Object(properties);
        Ok(self.send_many(&[(partition_key, body, &props)])?.remove(0))
    }

    /// Sends events in one transaction (the hub is created with [`DEFAULT_PARTITIONS`] if it
    /// does not exist). Each item is `(partition key, body, properties object)`.
    pub fn send_many(
        &self,
        events: &[(Option<&str>, &[u8], &Value)],
    ) -> BrokerResult<Vec<(u32, i64)>> {
        let hub = self.name;
        if let Some((i, _)) = events
            .iter()
            .enumerate()
            .find(|(_, (_, body, _))| body.len() > MAX_EVENT_BYTES)
        {
            return Err(BrokerError::Invalid(format!(
                "event {i} is {} bytes; Event Hubs accepts at most {MAX_EVENT_BYTES} bytes per event",
                events[i].1.len()
            )));
        }
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let partitions = ensure(&tx, hub, DEFAULT_PARTITIONS)?;
        let mut round_robin: u32 = tx.query_row(
            "SELECT round_robin FROM eh_hubs WHERE name = ?1",
            [hub],
            |r| r.get(0),
        )?;
        let mut next: Vec<Option<i64>> = vec![None; partitions as usize];
        let mut out = Vec::with_capacity(events.len());
        {
            let mut last = tx.prepare_cached(
                "SELECT COALESCE((SELECT next_seq - 1 FROM eh_sequences WHERE hub = ?1 AND partition = ?2),
                                 (SELECT MAX(seq) FROM eh_events WHERE hub = ?1 AND partition = ?2))",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO eh_events (hub, partition, seq, enqueued_ms, partition_key, body, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (key, body, props) in events {
                let partition = match key {
                    Some(k) => partition_for(k, partitions),
                    None => {
                        round_robin = (round_robin + 1) % partitions;
                        round_robin
                    }
                };
                let slot = &mut next[partition as usize];
                let seq = match slot {
                    Some(s) => *s,
                    None => last
                        .query_row(params![hub, partition], |r| r.get::<_, Option<i64>>(0))?
                        .map_or(0, |s| s + 1),
                };
                *slot = Some(seq + 1);
                insert.execute(params![
                    hub,
                    partition,
                    seq,
                    now,
                    key,
                    body,
                    props.to_string()
                ])?;
                out.push((partition, seq));
            }
            let mut keep = tx.prepare_cached(
                "INSERT INTO eh_sequences (hub, partition, next_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hub, partition) DO UPDATE SET next_seq = ?3",
            )?;
            for (partition, next_seq) in next.iter().enumerate() {
                if let Some(n) = next_seq {
                    keep.execute(params![hub, partition as u32, n])?;
                }
            }
        }
        tx.execute(
            "UPDATE eh_hubs SET round_robin = ?2 WHERE name = ?1",
            params![hub, round_robin],
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// Deletes the events of `hub` enqueued more than `retention_ms` ago, as Event Hubs drops
    /// events past the hub's retention period (`messageRetentionInDays`, 1 day by default on
    /// Standard). Sequence numbers go on from where they were; a consumer whose checkpoint is
    /// older than what is left reads on from the oldest event still there. Returns how many
    /// events were deleted.
    pub fn expire(&self, retention_ms: i64) -> BrokerResult<usize> {
        let hub = self.name;
        let cutoff = self.brokers.now() - retention_ms;
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let partitions: Vec<u32> = {
            let mut stmt =
                tx.prepare_cached("SELECT DISTINCT partition FROM eh_events WHERE hub = ?1")?;
            let rows = stmt.query_map([hub], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut deleted = 0;
        for p in partitions {
            // Sequence numbers follow enqueue order within a partition, so the expired events
            // are a prefix: find its end, then delete the range by primary key.
            let first_kept: Option<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM eh_events WHERE hub = ?1 AND partition = ?2 AND enqueued_ms >= ?3 ORDER BY seq LIMIT 1",
                )?
                .query_row(params![hub, p, cutoff], |r| r.get(0))
                .optional()?;
            tx.prepare_cached(
                "INSERT INTO eh_sequences (hub, partition, next_seq)
                 SELECT ?1, ?2, MAX(seq) + 1 FROM eh_events WHERE hub = ?1 AND partition = ?2
                 ON CONFLICT (hub, partition) DO NOTHING",
            )?
            .execute(params![hub, p])?;
            deleted += match first_kept {
                Some(seq) => tx
                    .prepare_cached(
                        "DELETE FROM eh_events WHERE hub = ?1 AND partition = ?2 AND seq < ?3",
                    )?
                    .execute(params![hub, p, seq])?,
                None => tx
                    .prepare_cached("DELETE FROM eh_events WHERE hub = ?1 AND partition = ?2")?
                    .execute(params![hub, p])?,
            };
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Reads up to `max` events of a partition after sequence number `after`; with `None`,
    /// after the consumer group's checkpoint (or from the start when there is none).
    pub fn read(
        &self,
        consumer_group: &str,
        partition: u32,
        after: Option<i64>,
        max: usize,
    ) -> BrokerResult<Vec<EhEvent>> {
        let hub = self.name;
        let after = match after {
            Some(s) => s,
            None => self.checkpoint_of(consumer_group, partition)?.unwrap_or(-1),
        };
        let conn = self.brokers.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, enqueued_ms, partition_key, body, props FROM eh_events WHERE hub = ?1 AND partition = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![hub, partition, after, max as i64], |r| {
            let props: String = r.get(4)?;
            Ok(EhEvent {
                partition_id: partition,
                sequence_number: r.get(0)?,
                enqueued_ms: r.get(1)?,
                partition_key: r.get(2)?,
                body: r.get(3)?,
                properties: serde_json::from_str(&props).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that a consumer group has handled a partition up to `sequence_number`.
    pub fn checkpoint(
        &self,
        consumer_group: &str,
        partition: u32,
        sequence_number: i64,
    ) -> BrokerResult<()> {
        let hub = self.name;
        self.brokers.lock()
            .prepare_cached(
                "INSERT INTO eh_checkpoints (hub, consumer_group, partition, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET seq = MAX(seq, ?4)",
            )?
            .execute(params![hub, consumer_group, partition, sequence_number])?;
        Ok(())
    }

    /// The checkpoint of a consumer group on a partition.
    pub fn checkpoint_of(&self, consumer_group: &str, partition: u32) -> BrokerResult<Option<i64>> {
        let hub = self.name;
        Ok(self.brokers
            .lock()
            .prepare_cached("SELECT seq FROM eh_checkpoints WHERE hub = ?1 AND consumer_group = ?2 AND partition = ?3")?
            .query_row(params![hub, consumer_group, partition], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;
    use serde_json::Map;

    /// Event Hubs drops events past the hub's retention; the local broker did not, so
    /// brokers.sqlite3 grew for ever (issue 21, 7h).
    #[test]
    fn events_past_retention_are_deleted_and_numbering_goes_on() {
        let (_d, b, clock) = brokers();
        b.hub("h").ensure(1).unwrap();
        for i in 0..3 {
            b.hub("h")
                .send(None, format!("old{i}").as_bytes(), Map::new())
                .unwrap();
        }
        let day = 86_400_000;
        clock.advance(day / 2);
        b.hub("h").send(None, b"new", Map::new()).unwrap();
        assert_eq!(
            b.hub("h").expire(day).unwrap(),
            0,
            "nothing is a day old yet"
        );
        clock.advance(day / 2 + 1);
        assert_eq!(b.hub("h").expire(day).unwrap(), 3);
        let left = b.hub("h").read("g", 0, None, 10).unwrap();
        assert_eq!(
            left.iter()
                .map(|e| (e.sequence_number, e.body.clone()))
                .collect::<Vec<_>>(),
            [(3, b"new".to_vec())]
        );
        clock.advance(day);
        assert_eq!(
            b.hub("h").expire(day).unwrap(),
            1,
            "the partition may empty"
        );
        let (_, seq) = b.hub("h").send(None, b"later", Map::new()).unwrap();
        assert_eq!(seq, 4, "sequence numbers are never reused");
    }

    #[test]
    fn one_partition_key_keeps_one_partition_and_ordered_sequence_numbers() {
        let (_d, b, _c) = brokers();
        b.hub("h").ensure(4).unwrap();
        let sent: Vec<(u32, i64)> = (0..5)
            .map(|i| {
                b.hub("h")
                    .send(Some("plc-7"), format!("e{i}").as_bytes(), Map::new())
                    .unwrap()
            })
            .collect();
        let p = sent[0].0;
        assert!(sent.iter().all(|(q, _)| *q == p));
        assert_eq!(
            sent.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let read = b.hub("h").read("$Default", p, None, 3).unwrap();
        assert_eq!(
            read.iter().map(|e| e.body.clone()).collect::<Vec<_>>(),
            [b"e0".to_vec(), b"e1".to_vec(), b"e2".to_vec()]
        );
        assert_eq!(read[0].partition_key.as_deref(), Some("plc-7"));
    }

    #[test]
    fn events_without_a_key_spread_over_partitions() {
        let (_d, b, _c) = brokers();
        b.hub("h").ensure(4).unwrap();
        let partitions: std::collections::HashSet<u32> = (0..8)
            .map(|_| b.hub("h").send(None, b"x", Map::new()).unwrap().0)
            .collect();
        assert_eq!(partitions.len(), 4);
    }

    #[test]
    fn checkpoints_are_per_consumer_group_and_resume_reading() {
        let (_d, b, _c) = brokers();
        b.hub("h").ensure(1).unwrap();
        for i in 0..4 {
            b.hub("h")
                .send(None, format!("{i}").as_bytes(), Map::new())
                .unwrap();
        }
        b.hub("h").checkpoint("alerts", 0, 1).unwrap();
        b.hub("h").checkpoint("alerts", 0, 0).unwrap(); // never moves back
        assert_eq!(b.hub("h").checkpoint_of("alerts", 0).unwrap(), Some(1));
        assert_eq!(
            b.hub("h").read("alerts", 0, None, 10).unwrap()[0].sequence_number,
            2
        );
        assert_eq!(
            b.hub("h").read("metrics", 0, None, 10).unwrap().len(),
            4,
            "another group starts at the beginning"
        );
        assert_eq!(b.hub("h").read("alerts", 0, Some(2), 10).unwrap().len(), 1);
    }

    #[test]
    fn sending_to_an_unknown_hub_creates_it() {
        let (_d, b, _c) = brokers();
        b.hub("new").send(Some("k"), b"x", Map::new()).unwrap();
        assert_eq!(
            b.hub("new").partitions().unwrap(),
            Some(super::DEFAULT_PARTITIONS)
        );
    }
}
