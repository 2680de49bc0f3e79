//! Storage queues with the Functions queue-trigger semantics: visibility timeout, dequeue
//! count, poison queue.

use super::deadletter::{insert_dead_letter, DeadLetterKind};
use super::{new_token, BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension};
use serde_json::json;

/// How long a queue message lives by default (Azure: 7 days).
pub const DEFAULT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// A received queue message.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    /// Message id.
    pub id: String,
    /// Receipt of this delivery; delete/release need it.
    pub pop_receipt: String,
    /// The message as stored on the queue (encoded as host.json says).
    pub body: Vec<u8>,
    /// Deliveries so far, this one included.
    pub dequeue_count: u32,
    /// When it was put.
    pub insertion_ms: i64,
    /// When it expires.
    pub expiration_ms: i64,
    /// When it becomes visible again unless deleted.
    pub next_visible_ms: i64,
}

fn id_of(id: &str) -> i64 {
    id.parse().unwrap_or(-1)
}

/// One storage queue of the brokers, as `brokers.queue(name)` gives it.
pub struct Queue<'a> {
    brokers: &'a Brokers,
    name: &'a str,
}

impl Brokers {
    /// The storage queue `name` (it need not exist: a put creates it).
    pub fn queue<'a>(&'a self, name: &'a str) -> Queue<'a> {
        Queue {
            brokers: self,
            name,
        }
    }
}

impl Queue<'_> {
    /// Creates a queue (so it shows in `status` while empty); queues also appear on first put.
    pub fn declare(&self) -> BrokerResult<()> {
        let queue = self.name;
        self.brokers
            .lock()
            .execute("INSERT OR IGNORE INTO queues (name) VALUES (?1)", [queue])?;
        Ok(())
    }

    /// Puts a message, visible after `initial_visibility_delay_ms`; returns its id.
    pub fn put(&self, body: &[u8], initial_visibility_delay_ms: i64) -> BrokerResult<String> {
        Ok(self
            .put_many(&[body], initial_visibility_delay_ms)?
            .remove(0))
    }

    /// Puts several messages in one transaction.
    pub fn put_many(
        &self,
        bodies: &[&[u8]],
        initial_visibility_delay_ms: i64,
    ) -> BrokerResult<Vec<String>> {
        let queue = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(bodies.len());
        tx.prepare_cached("INSERT OR IGNORE INTO queues (name) VALUES (?1)")?
            .execute([queue])?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO queue_messages (queue, body, insertion_ms, expiration_ms, next_visible_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for body in bodies {
                stmt.execute(params![
                    queue,
                    body,
                    now,
                    now + DEFAULT_TTL_MS,
                    now + initial_visibility_delay_ms.max(0)
                ])?;
                ids.push(tx.last_insert_rowid().to_string());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Receives up to `max` visible messages, oldest first. Each becomes invisible for
    /// `visibility_timeout_ms`, gets a new pop receipt and one more dequeue. Expired messages
    /// are dropped, as Azure does.
    pub fn receive(
        &self,
        max: usize,
        visibility_timeout_ms: i64,
    ) -> BrokerResult<Vec<QueueMessage>> {
        let queue = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        tx.prepare_cached("DELETE FROM queue_messages WHERE queue = ?1 AND expiration_ms <= ?2")?
            .execute(params![queue, now])?;
        let mut out = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT id, body, dequeue_count, insertion_ms, expiration_ms FROM queue_messages
                 WHERE queue = ?1 AND next_visible_ms <= ?2 ORDER BY next_visible_ms, id LIMIT ?3",
            )?;
            let rows = select.query_map(params![queue, now, max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut update = tx.prepare_cached(
                "UPDATE queue_messages SET dequeue_count = dequeue_count + 1, pop_receipt = ?2, next_visible_ms = ?3, leased = 1 WHERE id = ?1",
            )?;
            for row in rows {
                let (id, body, count, insertion_ms, expiration_ms) = row?;
                let receipt = new_token();
                let next_visible_ms = now + visibility_timeout_ms;
                update.execute(params![id, receipt, next_visible_ms])?;
                out.push(QueueMessage {
                    id: id.to_string(),
                    pop_receipt: receipt,
                    body,
                    dequeue_count: count + 1,
                    insertion_ms,
                    expiration_ms,
                    next_visible_ms,
                });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Deletes a received message; false when the receipt is stale (someone else holds it now).
    pub fn delete(&self, id: &str, pop_receipt: &str) -> BrokerResult<bool> {
        let queue = self.name;
        let conn = self.brokers.lock();
        let n = conn
            .prepare_cached(
                "DELETE FROM queue_messages WHERE queue = ?1 AND id = ?2 AND pop_receipt = ?3",
            )?
            .execute(params![queue, id_of(id), pop_receipt])?;
        Ok(n == 1)
    }

    /// Deletes several received messages `(id, pop_receipt)` in one transaction; returns how many.
    pub fn delete_many(&self, messages: &[(String, String)]) -> BrokerResult<usize> {
        let queue = self.name;
        if messages.is_empty() {
            return Ok(0);
        }
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM queue_messages WHERE queue = ?1 AND id = ?2 AND pop_receipt = ?3",
            )?;
            for (id, receipt) in messages {
                n += stmt.execute(params![queue, id_of(id), receipt])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Failed processing: the message becomes visible again after `delay_ms`.
    pub fn release(&self, id: &str, pop_receipt: &str, delay_ms: i64) -> BrokerResult<bool> {
        let queue = self.name;
        let now = self.brokers.now();
        let conn = self.brokers.lock();
        let n = conn
            .prepare_cached(
                "UPDATE queue_messages SET next_visible_ms = ?4, leased = 0, pop_receipt = NULL WHERE queue = ?1 AND id = ?2 AND pop_receipt = ?3",
            )?
            .execute(params![queue, id_of(id), pop_receipt, now + delay_ms.max(0)])?;
        Ok(n == 1)
    }

    /// Moves a received message to `<queue>-poison` and records why in the dead-letter store.
    pub fn poison(&self, id: &str, pop_receipt: &str, reason: &str) -> BrokerResult<bool> {
        let queue = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let row: Option<(Vec<u8>, u32)> = tx
            .query_row(
                "SELECT body, dequeue_count FROM queue_messages WHERE queue = ?1 AND id = ?2 AND pop_receipt = ?3",
                params![queue, id_of(id), pop_receipt],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        // No row: the receipt is stale (the message was deleted, poisoned or received again).
        let Some((body, count)) = row else {
            return Ok(false);
        };
        tx.execute("DELETE FROM queue_messages WHERE id = ?1", [id_of(id)])?;
        let poison = format!("{queue}-poison");
        tx.execute(
            "INSERT INTO queue_messages (queue, body, insertion_ms, expiration_ms, next_visible_ms) VALUES (?1, ?2, ?3, ?4, ?3)",
            params![poison, body, now, now + DEFAULT_TTL_MS],
        )?;
        let poison_id = tx.last_insert_rowid();
        tx.prepare_cached("INSERT OR IGNORE INTO queues (name) VALUES (?1)")?
            .execute([&poison])?;
        insert_dead_letter(
            &tx,
            DeadLetterKind::QueuePoison,
            queue,
            reason,
            &format!("moved to {poison} after {count} dequeue(s)"),
            count,
            now,
            &body,
            &json!({ "queue": queue, "poisonQueue": poison, "poisonMessageId": poison_id }),
        )?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;

    #[test]
    fn received_message_is_invisible_until_the_visibility_timeout() {
        let (_d, b, clock) = brokers();
        b.queue("q").put(b"hello", 0).unwrap();
        let first = b.queue("q").receive(10, 30_000).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].dequeue_count, 1);
        assert!(b.queue("q").receive(10, 30_000).unwrap().is_empty());
        clock.advance(29_999);
        assert!(b.queue("q").receive(10, 30_000).unwrap().is_empty());
        clock.advance(1);
        let again = b.queue("q").receive(10, 30_000).unwrap();
        assert_eq!(again[0].dequeue_count, 2);
        assert!(
            !b.queue("q")
                .delete(&first[0].id, &first[0].pop_receipt)
                .unwrap(),
            "stale receipt"
        );
        assert!(b
            .queue("q")
            .delete(&again[0].id, &again[0].pop_receipt)
            .unwrap());
        clock.advance(60_000);
        assert!(b.queue("q").receive(10, 30_000).unwrap().is_empty());
    }

    #[test]
    fn initial_delay_and_release_delay_are_honoured() {
        let (_d, b, clock) = brokers();
        b.queue("q").put(b"later", 5_000).unwrap();
        assert!(b.queue("q").receive(1, 1_000).unwrap().is_empty());
        clock.advance(5_000);
        let m = b.queue("q").receive(1, 60_000).unwrap().remove(0);
        b.queue("q").release(&m.id, &m.pop_receipt, 2_000).unwrap();
        clock.advance(1_999);
        assert!(b.queue("q").receive(1, 1_000).unwrap().is_empty());
        clock.advance(1);
        assert_eq!(b.queue("q").receive(1, 1_000).unwrap().len(), 1);
    }

    #[test]
    fn poison_after_max_dequeue_count_with_the_reason() {
        let (_d, b, _clock) = brokers();
        b.queue("q").put(b"bad", 0).unwrap();
        let max = 5;
        let mut receives = 0;
        // The host's rule: on failure, poison once dequeue_count reaches max, else release.
        loop {
            let m = b.queue("q").receive(1, 60_000).unwrap().remove(0);
            receives += 1;
            if m.dequeue_count >= max {
                assert!(b
                    .queue("q")
                    .poison(&m.id, &m.pop_receipt, "bad input: not an id")
                    .unwrap());
                break;
            }
            b.queue("q").release(&m.id, &m.pop_receipt, 0).unwrap();
        }
        assert_eq!(receives, 5);
        assert!(b.queue("q").receive(1, 1_000).unwrap().is_empty());
        let poisoned = b.queue("q-poison").receive(1, 1_000).unwrap();
        assert_eq!(poisoned[0].body, b"bad");
        let letters = b.dead_letters(None).unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, "bad input: not an id");
        assert_eq!(letters[0].attempts, 5);
    }

    #[test]
    fn a_store_failure_while_poisoning_is_an_error_not_a_stale_receipt() {
        let (_d, b, _clock) = brokers();
        b.queue("q").put(b"bad", 0).unwrap();
        let m = b.queue("q").receive(1, 60_000).unwrap().remove(0);
        // A row SQLite cannot hand back as the schema says: the read fails.
        b.lock()
            .execute("UPDATE queue_messages SET dequeue_count = 'many'", [])
            .unwrap();
        assert!(b
            .queue("q")
            .poison(&m.id, &m.pop_receipt, "bad input")
            .is_err());
        // A receipt that matches nothing is still a plain "no".
        assert!(!b.queue("q").poison(&m.id, "stale", "bad input").unwrap());
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let (_d, b, clock) = brokers();
        b.queue("q").put(b"old", 0).unwrap();
        clock.advance(super::DEFAULT_TTL_MS);
        assert!(b.queue("q").receive(1, 1_000).unwrap().is_empty());
    }

    #[test]
    fn batch_put_receive_delete() {
        let (_d, b, _clock) = brokers();
        let bodies: Vec<Vec<u8>> = (0..40).map(|i| format!("m{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        b.queue("q").put_many(&refs, 0).unwrap();
        let got = b.queue("q").receive(32, 60_000).unwrap();
        assert_eq!(got.len(), 32);
        assert_eq!(got[0].body, b"m0", "oldest first");
        let receipts: Vec<(String, String)> = got
            .iter()
            .map(|m| (m.id.clone(), m.pop_receipt.clone()))
            .collect();
        assert_eq!(b.queue("q").delete_many(&receipts).unwrap(), 32);
        assert_eq!(b.queue("q").receive(32, 60_000).unwrap().len(), 8);
    }
}
