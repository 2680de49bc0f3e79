//! Peek-lock delivery on Service Bus entities: receive, lock renewal and settlement (complete,
//! abandon, dead-letter).

use super::{entity, SbMessage, SbReceived, ServiceBusEntity};
use crate::brokers::deadletter::{insert_dead_letter, DeadLetterKind};
use crate::brokers::{new_token, BrokerError, BrokerResult, Brokers};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{json, Value};
use std::collections::HashSet;

#[allow(clippy::too_many_arguments)]
fn dead_letter_row(
    tx: &Transaction<'_>,
    entity: &str,
    id: i64,
    reason: &str,
    description: &str,
    now: i64,
) -> BrokerResult<()> {
    type Row = (
        Vec<u8>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        u32,
    );
    let (body, message_id, subject, session_id, correlation_id, content_type, props, count): Row = tx.query_row(
        "SELECT body, message_id, subject, session_id, correlation_id, content_type, props, delivery_count FROM sb_messages WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
    )?;
    tx.execute("DELETE FROM sb_messages WHERE id = ?1", [id])?;
    let meta = json!({
        "entity": entity,
        "messageId": message_id,
        "subject": subject,
        "sessionId": session_id,
        "correlationId": correlation_id,
        "contentType": content_type,
        "properties": serde_json::from_str::<Value>(&props).unwrap_or(Value::Null),
    });
    insert_dead_letter(
        tx,
        DeadLetterKind::ServiceBus,
        entity,
        reason,
        description,
        count,
        now,
        &body,
        &meta,
    )
}

impl Brokers {
    fn locked(
        &self,
        tx: &Transaction<'_>,
        entity_name: &str,
        lock_token: &str,
    ) -> BrokerResult<Option<(i64, u32)>> {
        Ok(tx
            .prepare_cached("SELECT id, delivery_count FROM sb_messages WHERE entity = ?1 AND lock_token = ?2 AND locked_until > ?3")?
            .query_row(params![entity_name, lock_token, self.now()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
}

impl ServiceBusEntity<'_> {
    /// Receives up to `max` messages under peek-lock, oldest first. On a session entity only
    /// the head message of each session that has nothing locked is given, so a session's
    /// messages are handled one at a time and in order. A message whose lock ran out as many
    /// times as `maxDeliveryCount` is dead-lettered instead of delivered.
    pub fn receive(&self, max: usize) -> BrokerResult<Vec<SbReceived>> {
        let entity_name = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let e = entity(&tx, entity_name)?;
        if e.kind == "topic" {
            return Err(BrokerError::Invalid(format!(
                "{entity_name:?} is a topic: receive from a subscription"
            )));
        }
        // A session with a message under lock gives nothing more until it is settled.
        let mut blocked = if e.requires_session {
            locked_sessions(&tx, entity_name, now)?
        } else {
            HashSet::new()
        };
        // Sessions can hide messages behind their heads, so look further than `max`.
        let limit = if e.requires_session {
            (max * 16).max(256)
        } else {
            max
        };
        let rows = unlocked(&tx, entity_name, now, limit)?;
        let mut out = Vec::new();
        for (
            id,
            seq,
            message_id,
            body,
            subject,
            session_id,
            correlation_id,
            content_type,
            props,
            enqueued_ms,
            count,
        ) in rows
        {
            if out.len() >= max {
                break;
            }
            if e.requires_session {
                let Some(s) = &session_id else { continue };
                if !blocked.insert(s.clone()) {
                    continue;
                }
            }
            if count >= e.max_delivery_count {
                let description =
                    format!("lock expired {count} time(s) without the message being settled");
                dead_letter_row(
                    &tx,
                    entity_name,
                    id,
                    "MaxDeliveryCountExceeded",
                    &description,
                    now,
                )?;
                continue;
            }
            let lock_token = new_token();
            let locked_until_ms = now + e.lock_ms;
            tx.prepare_cached("UPDATE sb_messages SET delivery_count = delivery_count + 1, lock_token = ?2, locked_until = ?3 WHERE id = ?1")?
                .execute(params![id, lock_token, locked_until_ms])?;
            out.push(SbReceived {
                lock_token,
                sequence_number: seq,
                delivery_count: count + 1,
                enqueued_ms,
                locked_until_ms,
                message: SbMessage {
                    message_id,
                    body,
                    subject,
                    session_id,
                    correlation_id,
                    content_type,
                    application_properties: serde_json::from_str(&props).unwrap_or_default(),
                    scheduled_enqueue_ms: None,
                },
            });
        }
        tx.commit()?;
        Ok(out)
    }

    /// Renews a held lock for the entity's lock duration from now (the Service Bus
    /// `RenewLock` operation the Functions host calls up to `maxAutoLockRenewalDuration`);
    /// returns the new expiry, or None when the lock was already lost.
    pub fn renew_lock(&self, lock_token: &str) -> BrokerResult<Option<i64>> {
        let entity_name = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let e = entity(&tx, entity_name)?;
        let Some((id, _)) = self.brokers.locked(&tx, entity_name, lock_token)? else {
            return Ok(None);
        };
        let until = now + e.lock_ms;
        tx.execute(
            "UPDATE sb_messages SET locked_until = ?2 WHERE id = ?1",
            params![id, until],
        )?;
        tx.commit()?;
        Ok(Some(until))
    }

    /// Completes (removes) a locked message; false when the lock was lost.
    pub fn complete(&self, lock_token: &str) -> BrokerResult<bool> {
        let entity_name = self.name;
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let Some((id, _)) = self.brokers.locked(&tx, entity_name, lock_token)? else {
            return Ok(false);
        };
        tx.execute("DELETE FROM sb_messages WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(true)
    }

    /// Abandons a locked message after a failed delivery. When its delivery count has reached
    /// `maxDeliveryCount` it is dead-lettered (reason `MaxDeliveryCountExceeded`, description
    /// `error`) and this returns true; otherwise it is unlocked for redelivery.
    pub fn abandon(&self, lock_token: &str, error: &str) -> BrokerResult<bool> {
        let entity_name = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let e = entity(&tx, entity_name)?;
        let Some((id, count)) = self.brokers.locked(&tx, entity_name, lock_token)? else {
            return Ok(false);
        };
        let dead = count >= e.max_delivery_count;
        if dead {
            dead_letter_row(&tx, entity_name, id, "MaxDeliveryCountExceeded", error, now)?;
        } else {
            tx.execute(
                "UPDATE sb_messages SET lock_token = NULL, locked_until = NULL WHERE id = ?1",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(dead)
    }

    /// Dead-letters a locked message with a reason and description.
    pub fn dead_letter(
        &self,
        lock_token: &str,
        reason: &str,
        description: &str,
    ) -> BrokerResult<bool> {
        let entity_name = self.name;
        let now = self.brokers.now();
        let mut conn = self.brokers.lock();
        let tx = conn.transaction()?;
        let Some((id, _)) = self.brokers.locked(&tx, entity_name, lock_token)? else {
            return Ok(false);
        };
        dead_letter_row(&tx, entity_name, id, reason, description, now)?;
        tx.commit()?;
        Ok(true)
    }
}

/// The sessions of an entity that have a message under lock now.
fn locked_sessions(tx: &Transaction<'_>, entity: &str, now: i64) -> BrokerResult<HashSet<String>> {
    let mut blocked = HashSet::new();
    let mut stmt = tx.prepare_cached(
        "SELECT DISTINCT session_id FROM sb_messages WHERE entity = ?1 AND locked_until > ?2",
    )?;
    for s in stmt.query_map(params![entity, now], |r| r.get::<_, Option<String>>(0))? {
        blocked.extend(s?);
    }
    Ok(blocked)
}

/// A stored message as `unlocked` reads it: id, seq, message id, body, subject, session id,
/// correlation id, content type, properties, enqueued time, deliveries so far.
type Row = (
    i64,
    i64,
    String,
    Vec<u8>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    u32,
);

/// Up to `limit` visible messages of an entity that nobody holds, in sequence order.
fn unlocked(tx: &Transaction<'_>, entity: &str, now: i64, limit: usize) -> BrokerResult<Vec<Row>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, seq, message_id, body, subject, session_id, correlation_id, content_type, props, enqueued_ms, delivery_count
         FROM sb_messages WHERE entity = ?1 AND visible_ms <= ?2 AND (locked_until IS NULL OR locked_until <= ?2)
         ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![entity, now, limit as i64], |r| r.try_into())?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::super::SbEntityOptions;
    use super::*;
    use crate::brokers::testing::{brokers, msg};
    use crate::brokers::DeadLetterKind;

    #[test]
    fn peek_lock_hides_a_message_until_its_lock_expires_and_counts_deliveries() {
        let (_d, b, clock) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                lock_duration_ms: 30_000,
                ..Default::default()
            })
            .unwrap();
        b.service_bus("q").send(msg("a", "one")).unwrap();
        let first = b.service_bus("q").receive(10).unwrap();
        assert_eq!((first.len(), first[0].delivery_count), (1, 1));
        assert!(b.service_bus("q").receive(10).unwrap().is_empty());
        clock.advance(30_000);
        assert!(
            !b.service_bus("q").complete(&first[0].lock_token).unwrap(),
            "lock lost"
        );
        let second = b.service_bus("q").receive(10).unwrap();
        assert_eq!(second[0].delivery_count, 2);
        assert!(b.service_bus("q").complete(&second[0].lock_token).unwrap());
        clock.advance(60_000);
        assert!(b.service_bus("q").receive(10).unwrap().is_empty());
    }

    #[test]
    fn abandon_up_to_max_delivery_count_then_dead_letter_with_reason() {
        let (_d, b, _c) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                max_delivery_count: 3,
                ..Default::default()
            })
            .unwrap();
        b.service_bus("q").send(msg("a", "bad")).unwrap();
        let mut deliveries = 0;
        loop {
            let m = b.service_bus("q").receive(1).unwrap().remove(0);
            deliveries += 1;
            if b.service_bus("q")
                .abandon(&m.lock_token, "handler said 500")
                .unwrap()
            {
                break;
            }
        }
        assert_eq!(deliveries, 3);
        assert!(b.service_bus("q").receive(1).unwrap().is_empty());
        let letters = b.dead_letters(Some(DeadLetterKind::ServiceBus)).unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (letters[0].reason.as_str(), letters[0].description.as_str()),
            ("MaxDeliveryCountExceeded", "handler said 500")
        );
        b.replay(&letters[0].id).unwrap();
        let back = b.service_bus("q").receive(1).unwrap().remove(0);
        assert_eq!(
            (
                back.delivery_count,
                back.message.message_id.as_str(),
                back.message.body.as_slice()
            ),
            (1, "a", &b"bad"[..])
        );
    }

    #[test]
    fn expired_locks_count_toward_max_delivery_count() {
        let (_d, b, clock) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                max_delivery_count: 2,
                lock_duration_ms: 1_000,
                ..Default::default()
            })
            .unwrap();
        b.service_bus("q").send(msg("a", "slow")).unwrap();
        for _ in 0..2 {
            assert_eq!(b.service_bus("q").receive(1).unwrap().len(), 1);
            clock.advance(1_000);
        }
        assert!(b.service_bus("q").receive(1).unwrap().is_empty());
        assert_eq!(
            b.dead_letters(None).unwrap()[0].reason,
            "MaxDeliveryCountExceeded"
        );
    }

    #[test]
    fn explicit_dead_letter_keeps_reason_and_description() {
        let (_d, b, _c) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions::default())
            .unwrap();
        b.service_bus("q").send(msg("a", "{")).unwrap();
        let m = b.service_bus("q").receive(1).unwrap().remove(0);
        assert!(b
            .service_bus("q")
            .dead_letter(&m.lock_token, "BadInput", "body is not JSON")
            .unwrap());
        let l = &b.dead_letters(None).unwrap()[0];
        assert_eq!(
            (l.reason.as_str(), l.description.as_str(), l.attempts),
            ("BadInput", "body is not JSON", 1)
        );
    }

    #[test]
    fn sessions_deliver_one_message_at_a_time_in_order_per_session() {
        let (_d, b, _c) = brokers();
        b.service_bus("s")
            .ensure_queue(SbEntityOptions {
                requires_session: true,
                ..Default::default()
            })
            .unwrap();
        assert!(
            b.service_bus("s").send(msg("no-session", "x")).is_err(),
            "SessionId required"
        );
        let in_session = |id: &str, s: &str| SbMessage {
            session_id: Some(s.into()),
            ..msg(id, id)
        };
        for (id, s) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a3", "A")] {
            b.service_bus("s").send(in_session(id, s)).unwrap();
        }
        let ids = |v: &[SbReceived]| {
            v.iter()
                .map(|m| m.message.message_id.clone())
                .collect::<Vec<_>>()
        };
        let first = b.service_bus("s").receive(10).unwrap();
        assert_eq!(ids(&first), ["a1", "b1"]);
        assert!(
            b.service_bus("s").receive(10).unwrap().is_empty(),
            "both sessions are locked"
        );
        b.service_bus("s")
            .abandon(&first[0].lock_token, "retry")
            .unwrap();
        b.service_bus("s").complete(&first[1].lock_token).unwrap();
        let second = b.service_bus("s").receive(10).unwrap();
        assert_eq!(ids(&second), ["a1"], "a1 again, before a2");
        b.service_bus("s").complete(&second[0].lock_token).unwrap();
        assert_eq!(ids(&b.service_bus("s").receive(10).unwrap()), ["a2"]);
    }

    #[test]
    fn a_renewed_lock_outlives_its_first_expiry_and_a_lost_one_cannot_be_renewed() {
        let (_d, b, clock) = brokers();
        b.service_bus("q")
            .ensure_queue(SbEntityOptions {
                lock_duration_ms: 1_000,
                ..SbEntityOptions::default()
            })
            .unwrap();
        b.service_bus("q").send(msg("m1", "x")).unwrap();
        let m = b.service_bus("q").receive(1).unwrap().remove(0);
        clock.advance(800);
        assert!(b
            .service_bus("q")
            .renew_lock(&m.lock_token)
            .unwrap()
            .is_some());
        clock.advance(800);
        assert!(
            b.service_bus("q").receive(1).unwrap().is_empty(),
            "renewed: not redelivered"
        );
        assert!(b.service_bus("q").complete(&m.lock_token).unwrap());
        b.service_bus("q").send(msg("m2", "y")).unwrap();
        let m2 = b.service_bus("q").receive(1).unwrap().remove(0);
        clock.advance(1_001);
        assert_eq!(b.service_bus("q").renew_lock(&m2.lock_token).unwrap(), None);
    }
}
