//! `host.json`: the custom handler and the trigger extensions' settings.

use super::json::{duration_at, err, u64_at, ConfigError};
use super::retry::{parse_retry, RetryPolicy};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The parts of host.json the local host honours.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    /// `customHandler.description.arguments`, `%VAR%` expanded at spawn time.
    pub arguments: Vec<String>,
    /// `extensions.queues`.
    pub queues: QueueOptions,
    /// `extensions.serviceBus`.
    pub service_bus: ServiceBusOptions,
    /// `extensions.eventHubs`.
    pub event_hubs: EventHubOptions,
    /// `functionTimeout`.
    pub function_timeout: Duration,
    /// Root-level `retry` policy, if any.
    pub retry: Option<RetryPolicy>,
}

/// Storage queue trigger options.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Messages fetched per poll (default 16, max 32).
    pub batch_size: usize,
    /// Deliveries before a message goes to `<queue>-poison` (default 5).
    pub max_dequeue_count: u32,
    /// Delay before a failed message is visible again (default 0).
    pub visibility_timeout: Duration,
    /// Longest wait between polls of an empty queue.
    pub max_polling_interval: Duration,
    /// `base64` (default) or `none`.
    pub message_encoding: MessageEncoding,
}

/// How queue message text is encoded on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEncoding {
    /// Base64 (the Functions default).
    Base64,
    /// Plain text (what a Logic App's "Put a message on a queue" writes).
    None,
}

/// Service Bus trigger options.
#[derive(Debug, Clone)]
pub struct ServiceBusOptions {
    /// Invocations in flight per function.
    pub max_concurrent_calls: usize,
    /// Deliveries before dead-lettering (an entity property in Azure; here one value).
    pub max_delivery_count: u32,
    /// How long the host keeps renewing a message's lock while its invocation runs
    /// (`maxAutoLockRenewalDuration`, default 5 minutes).
    pub max_auto_lock_renewal: Duration,
}

/// Event Hubs trigger options.
#[derive(Debug, Clone)]
pub struct EventHubOptions {
    /// Largest batch handed to a `cardinality: many` function (default 100).
    pub max_event_batch_size: usize,
    /// Partitions per hub the local host creates (not a host.json setting; 4).
    pub partitions: u32,
}

impl HostOptions {
    /// Parses host.json.
    pub fn parse(v: &Value, path: &Path) -> Result<Self, ConfigError> {
        let handler = v
            .pointer("/customHandler/description")
            .ok_or_else(|| err(path, "customHandler.description is missing"))?;
        let executable = handler
            .get("defaultExecutablePath")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                err(
                    path,
                    "customHandler.description.defaultExecutablePath is missing",
                )
            })?
            .to_string();
        let arguments = handler
            .get("arguments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let message_encoding = match v
            .pointer("/extensions/queues/messageEncoding")
            .and_then(Value::as_str)
        {
            None | Some("base64") => MessageEncoding::Base64,
            Some("none") => MessageEncoding::None,
            Some(other) => {
                return Err(err(
                    path,
                    format!("extensions.queues.messageEncoding {other:?}: use base64 or none"),
                ))
            }
        };
        Ok(Self {
            executable,
            arguments,
            queues: QueueOptions {
                batch_size: u64_at(v, "/extensions/queues/batchSize", 16, path)?.clamp(1, 32)
                    as usize,
                max_dequeue_count: u64_at(v, "/extensions/queues/maxDequeueCount", 5, path)?.max(1)
                    as u32,
                visibility_timeout: duration_at(
                    v,
                    "/extensions/queues/visibilityTimeout",
                    Duration::ZERO,
                    path,
                )?,
                max_polling_interval: duration_at(
                    v,
                    "/extensions/queues/maxPollingInterval",
                    Duration::from_secs(2),
                    path,
                )?,
                message_encoding,
            },
            service_bus: ServiceBusOptions {
                max_concurrent_calls: u64_at(
                    v,
                    "/extensions/serviceBus/maxConcurrentCalls",
                    16,
                    path,
                )?
                .max(1) as usize,
                max_delivery_count: u64_at(v, "/extensions/serviceBus/maxDeliveryCount", 10, path)?
                    .max(1) as u32,
                max_auto_lock_renewal: duration_at(
                    v,
                    "/extensions/serviceBus/maxAutoLockRenewalDuration",
                    Duration::from_secs(300),
                    path,
                )?,
            },
            event_hubs: EventHubOptions {
                max_event_batch_size: u64_at(
                    v,
                    "/extensions/eventHubs/maxEventBatchSize",
                    100,
                    path,
                )?
                .max(1) as usize,
                partitions: 4,
            },
            function_timeout: duration_at(v, "/functionTimeout", Duration::from_secs(300), path)?,
            retry: parse_retry(v.get("retry"), path)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_host_json_names_the_problem() {
        let e = HostOptions::parse(&json!({"version": "2.0"}), Path::new("host.json")).unwrap_err();
        assert!(e.to_string().contains("customHandler"));
        let e = HostOptions::parse(
            &json!({"customHandler": {"description": {"defaultExecutablePath": "x"}}, "extensions": {"queues": {"messageEncoding": "utf8"}}}),
            Path::new("host.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("messageEncoding"));
    }
}
