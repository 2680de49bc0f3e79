//! Sending events to an Event Hub over REST ("Send batch events": `POST
//! https://{ns}.servicebus.windows.net/{hub}/messages`, content type
//! `application/vnd.microsoft.servicebus.json`, a JSON array of `{"Body": …}`; 201 when
//! accepted), authorised with a bearer token for `https://eventhubs.azure.net/.default`
//! (Azure Event Hubs Data Sender). Used from inside Azure ML jobs, where no Functions host
//! and no AMQP client is at hand; calls go through the adapters' one retry loop.

use super::{AdapterOptions, Auth, RestClient};
use crate::ports::{PortError, PortResult};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use url::Url;

/// Largest request body the service takes (1 MB); batches are cut below it.
pub const MAX_BATCH_BYTES: usize = 1_000_000;
const SCOPE: &str = "https://eventhubs.azure.net/.default";

/// A REST sender for one Event Hub.
#[derive(Debug)]
pub struct EventHubsRest {
    url: Url,
    client: RestClient,
}

impl EventHubsRest {
    /// `hub_url` is `https://{ns}.servicebus.windows.net/{hub}`. Plain `http` is refused
    /// except to a loopback address (a local test server): the token must not travel in clear.
    pub fn new(
        hub_url: &str,
        credential: Arc<dyn TokenCredential>,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let mut url =
            Url::parse(hub_url).map_err(|e| anyhow::anyhow!("Event Hub URL {hub_url:?}: {e}"))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            anyhow::bail!("Event Hub URL {hub_url:?}: use https://{{namespace}}.servicebus.windows.net/{{hub}}");
        }
        let hub = url.path().trim_matches('/').to_string();
        if hub.is_empty() || hub.contains('/') {
            anyhow::bail!(
                "Event Hub URL {hub_url:?}: the path must be the hub's name, as in https://{{namespace}}.servicebus.windows.net/{{hub}}"
            );
        }
        url.set_path(&format!("{hub}/messages"));
        url.set_query(Some("api-version=2014-01&timeout=60"));
        Ok(Self {
            url,
            client: RestClient::new(Auth::Bearer(credential, SCOPE.into()), options),
        })
    }

    /// Sends `bodies` as one batch, each event with `partition_key` (so one job's events stay
    /// in order on one partition). The caller keeps the batch under [`MAX_BATCH_BYTES`].
    pub async fn send_batch(&self, partition_key: &str, bodies: &[String]) -> PortResult<()> {
        if bodies.is_empty() {
            return Ok(());
        }
        let batch: Vec<Value> = bodies
            .iter()
            .map(|b| json!({ "Body": b, "BrokerProperties": { "PartitionKey": partition_key } }))
            .collect();
        let batch = Value::Array(batch);
        if batch.to_string().len() > MAX_BATCH_BYTES {
            return Err(PortError::Permanent(format!(
                "an Event Hubs batch of {} events is over {MAX_BATCH_BYTES} bytes",
                bodies.len()
            )));
        }
        self.client
            .call(
                Method::POST,
                &self.url,
                Some(&batch),
                &[("content-type", "application/vnd.microsoft.servicebus.json")],
                "Event Hubs send",
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoToken;
    #[async_trait::async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            unreachable!("no request is made")
        }
    }

    #[test]
    fn the_hub_url_must_be_https_to_a_hub_except_on_loopback() {
        let new = |u: &str| EventHubsRest::new(u, Arc::new(NoToken), AdapterOptions::default());
        let ok = new("https://ns.servicebus.windows.net/training-telemetry").unwrap();
        assert_eq!(
            ok.url.as_str(),
            "https://ns.servicebus.windows.net/training-telemetry/messages?api-version=2014-01&timeout=60"
        );
        assert!(new("http://127.0.0.1:9/training-telemetry").is_ok());
        for bad in [
            "http://ns.servicebus.windows.net/training-telemetry",
            "https://ns.servicebus.windows.net/",
            "https://ns.servicebus.windows.net/a/b",
            "ns.servicebus.windows.net/hub",
        ] {
            assert!(new(bad).is_err(), "{bad} was accepted");
        }
    }
}
