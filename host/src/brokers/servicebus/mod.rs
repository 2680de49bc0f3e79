//! Service Bus queues, topics and subscriptions: peek-lock, delivery count, dead-lettering
//! after `maxDeliveryCount`, duplicate detection by MessageId, sessions, scheduled messages.
//!
//! Entity names: a queue is `name`, a topic is `name`, a subscription is
//! `topic/subscriptions/sub` (the path the Functions trigger binding uses).
//!
//! This module declares entities and sends; [`receive`] holds peek-lock delivery and settlement.

mod receive;
mod sqlfilter;

pub use sqlfilter::{FilterError, FilterInput, SqlFilter};

use super::{new_token, BrokerError, BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{Map, Value};

/// Per-entity settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SbEntityOptions {
    /// Deliveries before a message is dead-lettered (Azure default 10).
    pub max_delivery_count: u32,
    /// How long a received message stays locked.
    pub lock_duration_ms: i64,
    /// Messages must carry a SessionId and are delivered in order per session.
    pub requires_session: bool,
    /// Sends with a MessageId seen within this window are dropped (0 turns detection off).
    pub duplicate_detection_window_ms: i64,
}

impl Default for SbEntityOptions {
    fn default() -> Self {
        Self {
            max_delivery_count: 10,
            lock_duration_ms: 60_000,
            requires_session: false,
            duplicate_detection_window_ms: 600_000,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SbMessage {
    /// MessageId (duplicate detection key).
    pub message_id: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Subject (Label); subscription filters match on it.
    pub subject: Option<String>,
    /// SessionId.
    pub session_id: Option<String>,
    /// CorrelationId.
    pub correlation_id: Option<String>,
    /// ContentType.
    pub content_type: Option<String>,
    /// Application properties.
    pub application_properties: Map<String, Value>,
    /// Deliver no earlier than this (unix ms).
    pub scheduled_enqueue_ms: Option<i64>,
}

/// A received (locked) message.
#[derive(Debug, Clone, PartialEq)]
pub struct SbReceived {
    /// Settle with this.
    pub lock_token: String,
    /// Sequence number within the entity.
    pub sequence_number: i64,
    /// Deliveries so far, this one included.
    pub delivery_count: u32,
    /// When it was enqueued.
    pub enqueued_ms: i64,
    /// When the lock runs out.
    pub locked_until_ms: i64,
    /// The message.
    pub message: SbMessage,
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored; delivered to this many entities (1 for a queue, the matching subscriptions
    /// for a topic) with this sequence number.
    Accepted {
        /// Sequence number given.
        sequence_number: i64,
        /// Queues/subscriptions it went to.
        copies: usize,
    },
    /// Dropped: the MessageId was seen within the duplicate-detection window.
    Duplicate,
}

struct Entity {
    kind: String,
    max_delivery_count: u32,
    lock_ms: i64,
    requires_session: bool,
    dup_window_ms: i64,
}

fn entity(tx: &Transaction<'_>, name: &str) -> BrokerResult<Entity> {
    tx.prepare_cached("SELECT kind, max_delivery_count, lock_ms, requires_session, dup_window_ms FROM sb_entities WHERE name = ?1")?
        .query_row([name], |r| {
            Ok(Entity {
                kind: r.get(0)?,
                max_delivery_count: r.get(1)?,
                lock_ms: r.get(2)?,
                requires_session: r.get(3)?,
                dup_window_ms: r.get(4)?,
            })
        })
        .optional()?
        .ok_or_else(|| BrokerError::Invalid(format!("no Service Bus queue, topic or subscription {name:?}")))
}

fn insert_message(
    tx: &Transaction<'_>,
    target: &str,
    seq: i64,
    m: &SbMessage,
    now: i64,
) -> BrokerResult<()> {
    let visible = m.scheduled_enqueue_ms.unwrap_or(now).max(now);
    tx.prepare_cached(
        "INSERT INTO sb_messages (entity, seq, message_id, body, subject, session_id, correlation_id, content_type, props, enqueued_ms, visible_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        target,
        seq,
        m.message_id,
        m.body,
        m.subject,
        m.session_id,
        m.correlation_id,
        m.content_type,
        Value::Object(m.application_properties.clone()).to_string(),
        now,
        visible
    ])?;
    Ok(())
}

fn next_seq(tx: &Transaction<'_>, name: &str) -> BrokerResult<i64> {
    Ok(tx.query_row(
        "UPDATE sb_entities SET next_seq = next_seq + 1 WHERE name = ?1 RETURNING next_seq - 1",
        [name],
        |r| r.get(0),
    )?)
}

/// Puts a dead-lettered message back on its entity as a new message (delivery count 0).
pub(super) fn restore(
    tx: &Transaction<'_>,
    meta: &Value,
    body: &[u8],
    now: i64,
) -> BrokerResult<()> {
    let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    let target = text("entity")
        .ok_or_else(|| BrokerError::Invalid("dead letter lacks its entity".into()))?;
    entity(tx, &target)?;
    let seq = next_seq(tx, &target)?;
    let message = SbMessage {
        message_id: text("messageId").unwrap_or_else(new_token),
        body: body.to_vec(),
        subject: text("subject"),
        session_id: text("sessionId"),
        correlation_id: text("correlationId"),
        content_type: text("contentType"),
        application_properties: meta
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        scheduled_enqueue_ms: None,
    };
    insert_message(tx, &target, seq, &message, now)
}

impl Brokers {
    /// Creates a Service Bus entity of `kind` (queue, topic, subscription), or updates its settings.
    fn ensure_entity(
        &self,
        name: &str,
        kind: &str,
        topic: Option<&str>,
        filter: Option<&str>,
        o: &SbEntityOptions,
    ) -> BrokerResult<()> {
        if let Some(f) = filter {
            SqlFilter::parse(f).map_err(|e| BrokerError::Invalid(format!("{name}: {e}")))?;
        }
        self.lock().execute(
            "INSERT INTO sb_entities (name, kind, topic, filter, max_delivery_count, lock_ms, requires_session, dup_window_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO UPDATE SET filter = ?4, max_delivery_count = ?5, lock_ms = ?6, requires_session = ?7, dup_window_ms = ?8",
            params![name, kind, topic, filter, o.max_delivery_count, o.lock_duration_ms, o.requires_session, o.duplicate_detection_window_ms],
        )?;
        Ok(())
    }
}

/// One Service Bus entity (queue, topic or `topic/subscriptions/sub`), as `brokers.service_bus(entity)` gives it.
pub struct ServiceBusEntity<'a> {
    brokers: &'a Brokers,
    name: &'a str,
}

impl Brokers {
    /// The Service Bus entity `name`: a queue, a topic or `topic/subscriptions/sub`.
    pub fn service_bus<'a>(&'a self, name: &'a str) -> ServiceBusEntity<'a> {
        ServiceBusEntity {
            brokers: self,
            name,
        }
    }
}

impl ServiceBusEntity<'_> {
    /// Creates (or updates the settings of) a queue.
    pub fn ensure_queue(&self, options: SbEntityOptions) -> BrokerResult<()> {
        self.brokers
            .ensure_entity(self.name, "queue", None, None, &options)
    }

    /// Creates (or updates) a topic; its options govern duplicate detection.
    pub fn ensure_topic(&self, options: SbEntityOptions) -> BrokerResult<()> {
        self.brokers
            .ensure_entity(self.name, "topic", None, None, &options)
    }

    /// Creates (or updates) subscription `sub` of this topic (`topic/subscriptions/sub`). With a SQL `filter`
    /// ([`SqlFilter`]), it takes only the messages the filter is true for; without, every
    /// message (Service Bus's default `1=1` rule). A filter this host cannot parse is refused.
    pub fn ensure_subscription(
        &self,
        sub: &str,
        filter: Option<&str>,
        options: SbEntityOptions,
    ) -> BrokerResult<()> {
        let topic = self.name;
        self.brokers.ensure_entity(
            &format!("{topic}/subscriptions/{sub}"),
            "subscription",
            Some(topic),
            filter,
            &options,
        )
    }

    /// Sends to a queue or topic.
    pub fn send(&self, message: SbMessage) -> BrokerResult<SendOutcome> {
        let entity_name = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let e = entity(&tx, entity_name)?;
        if e.kind == "subscription" {
            return Err(BrokerError::Invalid(format!(
                "{entity_name:?} is a subscription: send to its topic"
            )));
        }
        if message.message_id.is_empty() || message.message_id.len() > 128 {
            return Err(BrokerError::Invalid(
                "MessageId must be 1 to 128 characters".into(),
            ));
        }
        if e.dup_window_ms > 0 {
            let seen: Option<i64> = tx
                .query_row(
                    "SELECT seen_ms FROM sb_dedup WHERE entity = ?1 AND message_id = ?2",
                    params![entity_name, message.message_id],
                    |r| r.get(0),
                )
                .optional()?;
            if seen.is_some_and(|t| now - t < e.dup_window_ms) {
                return Ok(SendOutcome::Duplicate);
            }
            tx.execute(
                "INSERT INTO sb_dedup (entity, message_id, seen_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET seen_ms = ?3",
                params![entity_name, message.message_id, now],
            )?;
            tx.execute(
                "DELETE FROM sb_dedup WHERE entity = ?1 AND seen_ms < ?2",
                params![entity_name, now - e.dup_window_ms],
            )?;
        }
        let targets: Vec<(String, bool)> = if e.kind == "topic" {
            let mut stmt = tx.prepare_cached("SELECT name, filter, requires_session FROM sb_entities WHERE kind = 'subscription' AND topic = ?1")?;
            let subs = stmt.query_map([entity_name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for s in subs {
                let (name, filter, sessions) = s?;
                let matches = match filter {
                    None => true,
                    Some(text) => SqlFilter::parse(&text)
                        .map_err(|e| BrokerError::Invalid(format!("{name}: {e}")))?
                        .matches(&FilterInput {
                            label: message.subject.as_deref(),
                            message_id: &message.message_id,
                            correlation_id: message.correlation_id.as_deref(),
                            session_id: message.session_id.as_deref(),
                            content_type: message.content_type.as_deref(),
                            user: &message.application_properties,
                        }),
                };
                if matches {
                    out.push((name, sessions));
                }
            }
            out
        } else {
            vec![(entity_name.to_string(), e.requires_session)]
        };
        for (name, sessions) in &targets {
            if *sessions && message.session_id.is_none() {
                return Err(BrokerError::Invalid(format!(
                    "{name:?} requires sessions: the message needs a SessionId"
                )));
            }
        }
        let sequence_number = next_seq(&tx, entity_name)?;
        for (name, _) in &targets {
            insert_message(&tx, name, sequence_number, &message, now)?;
        }
        tx.commit()?;
        Ok(SendOutcome::Accepted {
            sequence_number,
            copies: targets.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brokers::testing::{brokers, msg};
    use crate::brokers::Clock;

    #[test]
    fn duplicate_message_ids_are_dropped_within_the_window_only() {
        let (_d, b, clock) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                duplicate_detection_window_ms: 10_000,
                ..Default::default()
            })
            .unwrap();
        assert!(matches!(
            b.service_bus("q").send(msg("same", "1")).unwrap(),
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(
            b.service_bus("q").send(msg("same", "2")).unwrap(),
            SendOutcome::Duplicate
        );
        clock.advance(10_000);
        assert!(matches!(
            b.service_bus("q").send(msg("same", "3")).unwrap(),
            SendOutcome::Accepted { .. }
        ));
        let got: Vec<Vec<u8>> = b
            .service_bus("q")
            .receive(10)
            .unwrap()
            .into_iter()
            .map(|m| m.message.body)
            .collect();
        assert_eq!(got, vec![b"1".to_vec(), b"3".to_vec()]);
    }

    #[test]
    fn topic_fans_out_to_subscriptions_whose_filter_matches() {
        let (_d, b, _c) = brokers();
        b.service_bus("t")
            .ensure_topic(SbEntityOptions::default())
            .unwrap();
        b.service_bus("t")
            .ensure_subscription("all", None, SbEntityOptions::default())
            .unwrap();
        b.service_bus("t")
            .ensure_subscription(
                "gpu",
                Some(&SqlFilter::subjects_in(&["provision".into()])),
                SbEntityOptions::default(),
            )
            .unwrap();
        b.service_bus("t")
            .ensure_subscription(
                "rest",
                Some("sys.Label IS NULL OR sys.Label NOT IN ('provision')"),
                SbEntityOptions::default(),
            )
            .unwrap();
        assert!(b
            .service_bus("t")
            .ensure_subscription("bad", Some("a +"), SbEntityOptions::default())
            .is_err());
        let with = |id: &str, subject: &str| SbMessage {
            subject: Some(subject.into()),
            ..msg(id, subject)
        };
        assert_eq!(
            b.service_bus("t").send(with("1", "provision")).unwrap(),
            SendOutcome::Accepted {
                sequence_number: 1,
                copies: 2
            }
        );
        assert_eq!(
            b.service_bus("t").send(with("2", "export")).unwrap(),
            SendOutcome::Accepted {
                sequence_number: 2,
                copies: 2
            }
        );
        assert_eq!(
            b.service_bus("t/subscriptions/all")
                .receive(10)
                .unwrap()
                .len(),
            2
        );
        let rest = b.service_bus("t/subscriptions/rest").receive(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].message.subject.as_deref(), Some("export"));
        let gpu = b.service_bus("t/subscriptions/gpu").receive(10).unwrap();
        assert_eq!(gpu.len(), 1);
        assert_eq!(gpu[0].message.subject.as_deref(), Some("provision"));
        assert!(b.service_bus("t").receive(1).is_err());
        assert!(b
            .service_bus("t/subscriptions/all")
            .send(msg("3", "x"))
            .is_err());
    }

    #[test]
    fn scheduled_messages_wait_for_their_time() {
        let (_d, b, clock) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions::default())
            .unwrap();
        let at = clock.now_ms() + 5_000;
        b.service_bus("q")
            .send(SbMessage {
                scheduled_enqueue_ms: Some(at),
                ..msg("later", "x")
            })
            .unwrap();
        assert!(b.service_bus("q").receive(1).unwrap().is_empty());
        clock.advance(5_000);
        assert_eq!(b.service_bus("q").receive(1).unwrap().len(), 1);
    }

    #[test]
    fn unknown_entities_are_errors() {
        let (_d, b, _c) = brokers();
        assert!(b.service_bus("nope").send(msg("1", "x")).is_err());
        assert!(b.service_bus("nope").receive(1).is_err());
    }
}
