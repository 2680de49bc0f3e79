//! Sending commands to a Service Bus topic over REST (`POST https://{ns}/{topic}/messages`),
//! because a custom handler's output binding can set neither Subject, MessageId nor
//! ScheduledEnqueueTimeUtc. Authorised with a managed-identity token for
//! `https://servicebus.azure.net/.default` (Azure Service Bus Data Sender), on the adapters'
//! one retry loop: a send repeated after an unclear failure carries the same MessageId, which
//! the topic's duplicate detection drops.

use super::{AdapterOptions, Auth, RestClient};
use crate::ports::{CommandBus, OutgoingCommand, PortResult};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use std::sync::Arc;
use url::Url;

/// Service Bus REST sender for one topic.
#[derive(Debug)]
pub struct ServiceBusRest {
    url: Url,
    client: RestClient,
}

impl ServiceBusRest {
    /// `namespace` is `https://{ns}.servicebus.windows.net` (or a bare host name); calls are
    /// bounded by `options`.
    pub fn new(
        namespace: &str,
        topic: &str,
        credential: Arc<dyn TokenCredential>,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let base = if namespace.contains("://") {
            namespace.to_string()
        } else {
            format!("https://{namespace}")
        };
        let mut url =
            Url::parse(&base).map_err(|e| anyhow::anyhow!("SOCWIRE_SERVICEBUS_NAMESPACE: {e}"))?;
        url.set_path(&format!("{topic}/messages"));
        Ok(Self {
            url,
            client: RestClient::new(
                Auth::Bearer(credential, "https://servicebus.azure.net/.default".into()),
                options,
            ),
        })
    }

    /// The `BrokerProperties` header value for a command.
    pub fn broker_properties(c: &OutgoingCommand) -> String {
        let mut p = serde_json::json!({ "MessageId": c.message_id, "Label": c.subject, "ContentType": "application/json" });
        if let Some(ms) = c.not_before_ms {
            if let Some(t) = chrono::DateTime::from_timestamp_millis(ms) {
                p["ScheduledEnqueueTimeUtc"] =
                    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string().into();
            }
        }
        p.to_string()
    }
}

#[async_trait]
impl CommandBus for ServiceBusRest {
    async fn send(&self, c: &OutgoingCommand) -> PortResult<()> {
        let properties = Self::broker_properties(c);
        self.client
            .call(
                Method::POST,
                &self.url,
                Some(&c.body),
                &[("BrokerProperties", properties.as_str())],
                &format!("Service Bus send {}", c.subject),
            )
            .await
            .map(|_| ())
    }
}
