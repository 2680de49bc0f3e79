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
    /// Deliveries before dead-lettering of an entity that infra/servicebus-subscriptions.json
    /// does not declare (Service Bus's default, 10: a property of the entity, not of the host).
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
        Ok(Self {
            executable,
            arguments,
            queues: QueueOptions::parse(v, path)?,
            service_bus: ServiceBusOptions::parse(v, path)?,
            event_hubs: EventHubOptions::parse(v, path)?,
            function_timeout: duration_at(v, "/functionTimeout", Duration::from_secs(300), path)?,
            retry: parse_retry(v.get("retry"), path)?,
        })
    }
}

impl QueueOptions {
    /// `extensions.queues`: batch size, dequeue count, visibility, polling and encoding.
    fn parse(v: &Value, path: &Path) -> Result<Self, ConfigError> {
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
        // QueuesOptions.BatchSize throws outside 1..=32 (azure-sdk-for-net,
        // Microsoft.Azure.WebJobs.Extensions.Storage.Queues, QueuesOptions): the host does not
        // start, so neither does the local host.
        let batch_size = u64_at(v, "/extensions/queues/batchSize", 16, path)?;
        if !(1..=32).contains(&batch_size) {
            return Err(err(
                path,
                format!("extensions.queues.batchSize {batch_size} is outside 1..=32 (the host refuses it)"),
            ));
        }
        Ok(Self {
            batch_size: batch_size as usize,
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
        })
    }
}

impl ServiceBusOptions {
    /// `extensions.serviceBus`: concurrency and lock renewal.
    fn parse(v: &Value, path: &Path) -> Result<Self, ConfigError> {
        // Not a host option: the Service Bus extension has no maxDeliveryCount (it is a property
        // of the queue or subscription, infra/servicebus-subscriptions.json), so Azure would
        // ignore it while the local host used it. Refused rather than honoured.
        if v.pointer("/extensions/serviceBus/maxDeliveryCount")
            .is_some()
        {
            return Err(err(
                path,
                "extensions.serviceBus.maxDeliveryCount is not a host.json setting (the Service Bus extension has none; Azure ignores it): set maxDeliveryCount on the subscription in infra/servicebus-subscriptions.json",
            ));
        }
        Ok(Self {
            max_concurrent_calls: u64_at(v, "/extensions/serviceBus/maxConcurrentCalls", 16, path)?
                .max(1) as usize,
            // Service Bus's own default for an entity created without one.
            max_delivery_count: 10,
            max_auto_lock_renewal: duration_at(
                v,
                "/extensions/serviceBus/maxAutoLockRenewalDuration",
                Duration::from_secs(300),
                path,
            )?,
        })
    }
}

impl EventHubOptions {
    /// `extensions.eventHubs`: the batch size.
    fn parse(v: &Value, path: &Path) -> Result<Self, ConfigError> {
        Ok(Self {
            max_event_batch_size: u64_at(v, "/extensions/eventHubs/maxEventBatchSize", 100, path)?
                .max(1) as usize,
            partitions: 4,
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

    #[test]
    fn settings_the_host_refuses_stop_the_start() {
        let base = |ext: Value| json!({"customHandler": {"description": {"defaultExecutablePath": "x"}}, "extensions": ext});
        let p = Path::new("host.json");
        let e = HostOptions::parse(&base(json!({"queues": {"batchSize": 33}})), p).unwrap_err();
        assert!(
            e.to_string().contains("batchSize 33 is outside 1..=32"),
            "{e}"
        );
        let e = HostOptions::parse(&base(json!({"queues": {"batchSize": 0}})), p).unwrap_err();
        assert!(e.to_string().contains("batchSize 0"), "{e}");
        let e = HostOptions::parse(&base(json!({"serviceBus": {"maxDeliveryCount": 3}})), p)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("serviceBus.maxDeliveryCount is not a host.json setting"),
            "{e}"
        );
        let ok = HostOptions::parse(&base(json!({"queues": {"batchSize": 32}})), p).unwrap();
        assert_eq!(ok.queues.batch_size, 32);
    }
}
