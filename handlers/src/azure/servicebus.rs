//! Sending commands to a Service Bus topic over REST (`POST https://{ns}/{topic}/messages`),
//! because a custom handler's output binding can set neither Subject, MessageId nor
//! ScheduledEnqueueTimeUtc. Authorised with a managed-identity token for
//! `https://servicebus.azure.net/.default` (Azure Service Bus Data Sender).

use super::{bearer, http_client, status_error, transport_error};
use crate::ports::{CommandBus, OutgoingCommand, PortResult};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use std::sync::Arc;
use url::Url;

/// Service Bus REST sender for one topic.
#[derive(Debug)]
pub struct ServiceBusRest {
    url: Url,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

impl ServiceBusRest {
    /// `namespace` is `https://{ns}.servicebus.windows.net` (or a bare host name).
    pub fn new(
        namespace: &str,
        topic: &str,
        credential: Arc<dyn TokenCredential>,
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
            credential,
            http: http_client(),
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
        let token = bearer(
            self.credential.as_ref(),
            "https://servicebus.azure.net/.default",
        )
        .await?;
        let what = format!("Service Bus send {}", c.subject);
        let r = self
            .http
            .post(self.url.clone())
            .header("authorization", token)
            .header("content-type", "application/json")
            .header("BrokerProperties", Self::broker_properties(c))
            .body(c.body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        let text = r.text().await.unwrap_or_default();
        Err(status_error(&what, status, &text))
    }
}
