//! One dead-letter store across the brokers: queue poison records, Service Bus dead-letter
//! queues and Event Grid dead letters, each with its reason (replay is in `replay`).

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
    r.try_into()
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
}
