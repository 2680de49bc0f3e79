//! One dead-letter store across the brokers: queue poison records, Service Bus dead-letter
//! queues and Event Grid dead letters, each with its reason, and replay.

use super::{BrokerError, BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::Value;

/// Which broker a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeadLetterKind {
    /// A Storage queue message moved to `<queue>-poison`.
    QueuePoison,
    /// A Service Bus message in an entity's dead-letter sub-queue.
    ServiceBus,
    /// An Event Grid event that could not be delivered.
    EventGrid,
    /// An input a function acknowledged and set aside on `socwire-rejects` with its reason.
    Rejected,
}

impl DeadLetterKind {
    fn tag(self) -> &'static str {
        match self {
            DeadLetterKind::QueuePoison => "q",
            DeadLetterKind::ServiceBus => "sb",
            DeadLetterKind::EventGrid => "eg",
            DeadLetterKind::Rejected => "rj",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "q" => Some(DeadLetterKind::QueuePoison),
            "sb" => Some(DeadLetterKind::ServiceBus),
            "eg" => Some(DeadLetterKind::EventGrid),
            "rj" => Some(DeadLetterKind::Rejected),
            _ => None,
        }
    }
}

/// A dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Stable id: `q:N`, `sb:N` or `eg:N`.
    pub id: String,
    /// Which broker.
    pub kind: DeadLetterKind,
    /// Queue, entity path, or `topic -> subscriber`.
    pub source: String,
    /// Why (DeadLetterReason, the handler's error, …).
    pub reason: String,
    /// More detail (DeadLetterErrorDescription, where it went).
    pub description: String,
    /// Deliveries attempted.
    pub attempts: u32,
    /// When it was dead-lettered (unix ms).
    pub dead_lettered_ms: i64,
    /// The message body or event, as text where it is UTF-8.
    pub body: String,
    /// What replay needs (original message fields; for a reject, the whole record).
    pub meta: Value,
    /// The idempotency key the input carried, where known (a reject's `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The command's `commandId`, when the input is a command.
    #[serde(rename = "commandId", skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_dead_letter(
    tx: &Transaction<'_>,
    kind: DeadLetterKind,
    source: &str,
    reason: &str,
    description: &str,
    attempts: u32,
    now: i64,
    body: &[u8],
    meta: &Value,
) -> BrokerResult<()> {
    tx.prepare_cached(
        "INSERT INTO dead_letters (kind, source, reason, description, attempts, dead_lettered_ms, body, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![kind.tag(), source, reason, description, attempts, now, body, meta.to_string()])?;
    Ok(())
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    u32,
    i64,
    Vec<u8>,
    String,
);

fn to_letter(row: Row) -> DeadLetter {
    let (seq, tag, source, reason, description, attempts, dead_lettered_ms, body, meta) = row;
    let kind = DeadLetterKind::from_tag(&tag).unwrap_or(DeadLetterKind::QueuePoison);
    DeadLetter {
        id: format!("{tag}:{seq}"),
        kind,
        source,
        reason,
        description,
        attempts,
        dead_lettered_ms,
        body: String::from_utf8_lossy(&body).into_owned(),
        meta: serde_json::from_str(&meta).unwrap_or(Value::Null),
        key: None,
        command_id: None,
    }
}

const SELECT: &str = "SELECT seq, kind, source, reason, description, attempts, dead_lettered_ms, body, meta FROM dead_letters";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

pub(super) fn parse_id(id: &str) -> BrokerResult<(DeadLetterKind, i64)> {
    let (tag, n) = id
        .split_once(':')
        .ok_or_else(|| BrokerError::Invalid(format!("dead-letter id {id:?} is not like q:12")))?;
    let kind = DeadLetterKind::from_tag(tag).ok_or_else(|| {
        BrokerError::Invalid(format!("dead-letter id {id:?}: unknown kind {tag:?}"))
    })?;
    let n = n
        .parse()
        .map_err(|_| BrokerError::Invalid(format!("dead-letter id {id:?}: bad number")))?;
    Ok((kind, n))
}

impl Brokers {
    /// Every dead letter, oldest first, optionally of one kind.
    pub fn dead_letters(&self, kind: Option<DeadLetterKind>) -> BrokerResult<Vec<DeadLetter>> {
        let mut letters: Vec<DeadLetter> = {
            let conn = self.lock();
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT} WHERE ?1 IS NULL OR kind = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([kind.map(DeadLetterKind::tag)], read_row)?;
            rows.map(|r| r.map(to_letter).map_err(BrokerError::from))
                .collect::<BrokerResult<_>>()?
        };
        if kind.is_none_or(|k| k == DeadLetterKind::Rejected) {
            letters.extend(self.rejects()?);
        }
        Ok(letters)
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: &str) -> BrokerResult<Option<DeadLetter>> {
        let (kind, seq) = parse_id(id)?;
        if kind == DeadLetterKind::Rejected {
            return self.reject(seq);
        }
        let conn = self.lock();
        let row = conn
            .prepare_cached(&format!("{SELECT} WHERE seq = ?1 AND kind = ?2"))?
            .query_row(params![seq, kind.tag()], read_row)
            .optional()?;
        Ok(row.map(to_letter))
    }

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
        b.queue_put("q", b"x", 0).unwrap();
        let m = b.queue_receive("q", 1, 1_000).unwrap().remove(0);
        b.queue_poison("q", &m.id, &m.pop_receipt, "why").unwrap();
        let id = b.dead_letters(None).unwrap()[0].id.clone();
        assert!(id.starts_with("q:"));
        b.replay(&id).unwrap();
        assert!(b.dead_letters(None).unwrap().is_empty());
        assert!(b.queue_receive("q-poison", 1, 1_000).unwrap().is_empty());
        let back = b.queue_receive("q", 1, 1_000).unwrap();
        assert_eq!(
            (back[0].body.as_slice(), back[0].dequeue_count),
            (&b"x"[..], 1)
        );
        assert!(b.replay(&id).is_err(), "a replayed letter is gone");
        assert!(b.dead_letter("nonsense").is_err());
    }
}
