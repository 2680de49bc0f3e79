//! Azure Storage queues through the `azure_storage_queue` SDK: what `socwire send --storage`
//! uses to feed a `func start` + Azurite setup, and a reference for the local broker's rules.

use super::storage::{StorageAccount, StorageAuth};
use crate::ports::{PortError, PortResult};
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};

/// A message received from an Azure queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedQueueMessage {
    /// Message id.
    pub id: String,
    /// Pop receipt (needed to delete).
    pub pop_receipt: String,
    /// Message text as stored.
    pub text: String,
    /// Times dequeued, this one included.
    pub dequeue_count: i64,
}

/// One queue of a storage account.
#[derive(Debug, Clone)]
pub struct AzureQueue {
    account: StorageAccount,
    name: String,
}

fn sdk_error(what: &str, e: azure_core::Error) -> PortError {
    let text = format!(
        "{what}: {}",
        socwire_common::text::for_log(&e.to_string(), 300)
    );
    match e.http_status().map(u16::from) {
        Some(404) => PortError::NotFound(text),
        Some(409) | Some(412) => PortError::Conflict(text),
        Some(408) | Some(429) | Some(500..=599) | None => PortError::Transient(text),
        Some(_) => PortError::Permanent(text),
    }
}

impl AzureQueue {
    /// The queue `name` (3-63 lower-case letters, digits and single hyphens).
    pub fn new(account: &StorageAccount, name: &str) -> anyhow::Result<Self> {
        super::storage::check_name(name, "queue")?;
        Ok(Self {
            account: account.clone(),
            name: name.into(),
        })
    }

    fn client(&self) -> PortResult<QueueClient> {
        let mut url = self.account.queue_endpoint.clone();
        url.path_segments_mut()
            .map_err(|_| PortError::Permanent("queue endpoint is not a base URL".into()))?
            .pop_if_empty()
            .push(&self.name);
        let credential = match &self.account.auth {
            StorageAuth::Key(_) => {
                url.set_query(
                    self.account
                        .account_sas(chrono::Duration::hours(1))
                        .as_deref(),
                );
                None
            }
            StorageAuth::Token(c) => Some(c.clone()),
        };
        QueueClient::new(url, credential, Some(QueueClientOptions::default()))
            .map_err(|e| sdk_error("queue client", e))
    }

    /// Creates the queue if it does not exist.
    pub async fn create_if_missing(&self) -> PortResult<()> {
        match self.client()?.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status().map(u16::from) == Some(409) => Ok(()),
            Err(e) => Err(sdk_error(&format!("creating queue {}", self.name), e)),
        }
    }

    /// Puts a message (the text as it should be stored: base64 it first when the consumer's
    /// host.json says `messageEncoding: base64`); returns its id.
    pub async fn put(&self, text: &str, visibility_delay_secs: u32) -> PortResult<String> {
        if text.len() > 64 * 1024 {
            return Err(PortError::Permanent(format!(
                "queue message is {} bytes; Azure queues take at most 64 KiB",
                text.len()
            )));
        }
        let message = QueueMessage {
            message_text: Some(text.to_string()),
        };
        let options = QueueClientSendMessageOptions {
            visibility_timeout: (visibility_delay_secs > 0).then_some(visibility_delay_secs as i32),
            ..Default::default()
        };
        let content = message
            .try_into()
            .map_err(|e| sdk_error("encoding queue message", e))?;
        let response = self
            .client()?
            .send_message(content, Some(options))
            .await
            .map_err(|e| sdk_error(&format!("sending to {}", self.name), e))?;
        let sent = response
            .into_model()
            .and_then(|m| m.into_message())
            .map_err(|e| sdk_error("reading send response", e))?;
        Ok(sent.message_id.unwrap_or_default())
    }

    /// Receives up to `max` (1-32) messages, invisible for `visibility_timeout_secs`.
    pub async fn receive(
        &self,
        max: u8,
        visibility_timeout_secs: u32,
    ) -> PortResult<Vec<ReceivedQueueMessage>> {
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(i32::from(max.clamp(1, 32))),
            visibility_timeout: Some(visibility_timeout_secs.max(1) as i32),
            ..Default::default()
        };
        let response = self
            .client()?
            .receive_messages(Some(options))
            .await
            .map_err(|e| sdk_error(&format!("receiving from {}", self.name), e))?;
        let messages = response
            .into_model()
            .map_err(|e| sdk_error("reading receive response", e))?;
        Ok(messages
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|m| ReceivedQueueMessage {
                id: m.message_id.unwrap_or_default(),
                pop_receipt: m.pop_receipt.unwrap_or_default(),
                text: m.message_text.unwrap_or_default(),
                dequeue_count: m.dequeue_count.unwrap_or_default(),
            })
            .collect())
    }

    /// Deletes a received message.
    pub async fn delete(&self, message: &ReceivedQueueMessage) -> PortResult<()> {
        self.client()?
            .delete_message(&message.id, &message.pop_receipt, None)
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&format!("deleting from {}", self.name), e))
    }
}
