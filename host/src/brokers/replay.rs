//! Replay: a dead letter goes back to the broker it came from, with fresh delivery counts.

use super::deadletter::{parse_id, DeadLetter, DeadLetterKind};
use super::{BrokerError, BrokerResult, Brokers};
use rusqlite::{params, Transaction};
use serde_json::Value;

impl Brokers {
    /// Puts a dead letter back where it came from with fresh delivery counts, and removes it
    /// from the store, in one transaction.
    pub fn replay(&self, id: &str) -> BrokerResult<()> {
        let (kind, seq) = parse_id(id)?;
        let restore: Restore = match kind {
            DeadLetterKind::Rejected => return self.replay_reject(seq),
            DeadLetterKind::QueuePoison => restore_queue_message,
            DeadLetterKind::ServiceBus => {
                |tx, letter, body, now| super::servicebus::restore(tx, &letter.meta, body, now)
            }
            DeadLetterKind::EventGrid => restore_event,
        };
        let letter = self
            .dead_letter(id)?
            .ok_or_else(|| BrokerError::Invalid(format!("no dead letter {id:?}")))?;
        let now = self.now();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let body: Vec<u8> =
            tx.query_row("SELECT body FROM dead_letters WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })?;
        restore(&tx, &letter, &body, now)?;
        tx.execute("DELETE FROM dead_letters WHERE seq = ?1", [seq])?;
        tx.commit()?;
        Ok(())
    }
}

/// Puts a stored dead letter (its body given) back into its broker, inside the replay's
/// transaction.
type Restore = fn(&Transaction<'_>, &DeadLetter, &[u8], i64) -> BrokerResult<()>;

/// A poisoned queue message goes back on its queue; its `-poison` copy is removed.
fn restore_queue_message(
    tx: &Transaction<'_>,
    letter: &DeadLetter,
    body: &[u8],
    now: i64,
) -> BrokerResult<()> {
    if let Some(pid) = letter.meta.get("poisonMessageId").and_then(Value::as_i64) {
        tx.execute("DELETE FROM queue_messages WHERE id = ?1", [pid])?;
    }
    tx.execute(
        "INSERT INTO queue_messages (queue, body, insertion_ms, expiration_ms, next_visible_ms) VALUES (?1, ?2, ?3, ?4, ?3)",
        params![letter.source, body, now, now + super::queue::DEFAULT_TTL_MS],
    )?;
    Ok(())
}

/// An undelivered Event Grid event is due again for its subscriber.
fn restore_event(
    tx: &Transaction<'_>,
    letter: &DeadLetter,
    body: &[u8],
    now: i64,
) -> BrokerResult<()> {
    let text = |k: &str| {
        letter
            .meta
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    tx.execute(
        "INSERT INTO eg_deliveries (topic, subscriber, event, first_ms, next_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![text("topic"), text("subscriber"), String::from_utf8_lossy(body), now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::brokers;

    #[test]
    fn replay_puts_a_poisoned_message_back_and_empties_the_poison_queue() {
        let (_d, b, _c) = brokers();
        b.queue("q").put(b"x", 0).unwrap();
        let m = b.queue("q").receive(1, 1_000).unwrap().remove(0);
        b.queue("q").poison(&m.id, &m.pop_receipt, "why").unwrap();
        let id = b.dead_letters(None).unwrap()[0].id.clone();
        assert!(id.starts_with("q:"));
        b.replay(&id).unwrap();
        assert!(b.dead_letters(None).unwrap().is_empty());
        assert!(b.queue("q-poison").receive(1, 1_000).unwrap().is_empty());
        let back = b.queue("q").receive(1, 1_000).unwrap();
        assert_eq!(
            (back[0].body.as_slice(), back[0].dequeue_count),
            (&b"x"[..], 1)
        );
        assert!(b.replay(&id).is_err(), "a replayed letter is gone");
        assert!(b.dead_letter("nonsense").is_err());
    }
}
