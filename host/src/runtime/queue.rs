//! The Storage queue trigger loop.

use super::shared::{log_unsettled, Shared};
use crate::config::{MessageEncoding, Trigger};
use crate::envelope::{encoded, iso};
use crate::stats::Outcome;
use base64::Engine as _;
use serde_json::Map;
use socwire_common::text::for_log;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn queue_loop(s: Arc<Shared>, name: String) {
    let f = s.function(&name).clone();
    let Trigger::Queue {
        name: binding,
        queue,
    } = &f.trigger
    else {
        return;
    };
    let opts = s.cfg.host.queues.clone();
    let lease_ms = s.opts.lease.as_millis() as i64;
    let mut backoff = Duration::from_millis(10);
    while !s.stopping.load(Ordering::SeqCst) {
        let batch = match s.brokers.queue(queue).receive(opts.batch_size, lease_ms) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "queue receive failed");
                s.idle_wait(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            s.idle_wait(backoff).await;
            backoff = (backoff * 2).min(opts.max_polling_interval.min(Duration::from_millis(200)));
            continue;
        }
        backoff = Duration::from_millis(10);
        let mut set = tokio::task::JoinSet::new();
        for msg in batch {
            let s = s.clone();
            let f = f.clone();
            let binding = binding.clone();
            let queue = queue.clone();
            let opts = opts.clone();
            set.spawn(async move {
                let text = match opts.message_encoding {
                    MessageEncoding::None => String::from_utf8(msg.body.clone()).map_err(|_| "message is not UTF-8 text".to_string()),
                    MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD
                        .decode(&msg.body)
                        .map_err(|_| "message is not base64 (host.json extensions.queues.messageEncoding is base64)".to_string())
                        .and_then(|b| String::from_utf8(b).map_err(|_| "decoded message is not UTF-8 text".to_string())),
                };
                let text = match text {
                    Ok(t) => t,
                    Err(reason) => {
                        // The host cannot even build the invocation: straight to poison, as Functions does.
                        log_unsettled("poisoning", &queue, s.brokers.queue(&queue).poison(&msg.id, &msg.pop_receipt, &reason));
                        s.stats.record(&f.name, Outcome::Poisoned, 1, &reason);
                        return None;
                    }
                };
                let mut data = Map::new();
                data.insert(binding.clone(), encoded(&text));
                let mut meta = Map::new();
                meta.insert("DequeueCount".into(), encoded(msg.dequeue_count));
                meta.insert("Id".into(), encoded(&msg.id));
                meta.insert("PopReceipt".into(), encoded(&msg.pop_receipt));
                meta.insert("InsertionTime".into(), iso(msg.insertion_ms));
                meta.insert("ExpirationTime".into(), iso(msg.expiration_ms));
                meta.insert("NextVisibleTime".into(), iso(msg.next_visible_ms));
                let result = s.deliver(&f, data, meta).await;
                match result {
                    Ok(answer) => {
                        s.stats.record(&f.name, Outcome::Delivered, 1, &Shared::log_lines(&answer));
                        return Some((msg.id, msg.pop_receipt));
                    }
                    Err(failure) => {
                        let reason = format!("{} (status {:?}, delivery {})", failure.reason, failure.status, msg.dequeue_count);
                        if msg.dequeue_count >= opts.max_dequeue_count {
                            log_unsettled("poisoning", &queue, s.brokers.queue(&queue).poison(&msg.id, &msg.pop_receipt, &reason));
                            s.stats.record(&f.name, Outcome::Poisoned, 1, &for_log(&reason, 300));
                        } else {
                            log_unsettled("releasing", &queue, s.brokers.queue(&queue).release(&msg.id, &msg.pop_receipt, opts.visibility_timeout.as_millis() as i64));
                            s.stats.record(&f.name, Outcome::Retried, 1, &for_log(&reason, 300));
                        }
                    }
                }
                None
            });
        }
        // Every success of the batch is deleted in one transaction; a kill before it means
        // those messages are delivered again (at least once), never lost.
        let mut done = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(Some(receipt)) = joined {
                done.push(receipt);
            }
        }
        if let Err(e) = s.brokers.queue(queue).delete_many(&done) {
            tracing::error!(queue = %queue, error = %e, "deleting delivered messages failed");
        }
    }
}
