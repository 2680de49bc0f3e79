//! Azure Storage queues through the `azure_storage_queue` SDK: what `socwire send --storage`
//! uses to feed a `func start` + Azurite setup, and a reference for the local broker's rules.
//!
//! The SDK's own retry is off: calls are retried here under [`AdapterOptions`], so that a
//! `Retry-After` is capped and a send is never blindly repeated. A send is retried only when it
//! cannot have been stored (no connection, or 429/503: the service refused it before
//! processing); after a timeout or another 5xx it may have been stored, so the error goes back
//! to the caller instead (a queue has no de-duplication; consumers are idempotent).

use super::storage::{StorageAccount, StorageAuth};
use super::{error_chain, retry_after, AdapterOptions};
use crate::ports::{PortError, PortResult};
use azure_core::error::ErrorKind;
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueClientOptions};
use std::future::Future;
use std::sync::Arc;

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
    options: AdapterOptions,
    http: reqwest::Client,
}

/// Maps an SDK error to a port error; the text (which can quote the request URL, SAS and all)
/// has its credentials redacted.
fn sdk_error(what: &str, e: azure_core::Error) -> PortError {
    let cause = match e.kind() {
        ErrorKind::HttpResponse { status, .. } => format!("HTTP {status}"),
        ErrorKind::Connection => "could not connect".into(),
        ErrorKind::Io => "no answer (timed out or cut short)".into(),
        ErrorKind::DataConversion => "unreadable answer".into(),
        ErrorKind::Credential => "credential".into(),
        _ => "failed".into(),
    };
    let text = format!("{what}: {cause}: {}", error_chain(&e));
    match e.http_status().map(u16::from) {
        Some(404) => PortError::NotFound(text),
        Some(409) | Some(412) => PortError::Conflict(text),
        Some(408) | Some(429) | Some(500..=599) => PortError::Transient(text),
        Some(_) => PortError::Permanent(text),
        None if matches!(e.kind(), ErrorKind::DataConversion | ErrorKind::Other) => {
            PortError::Permanent(text)
        }
        None => PortError::Transient(text),
    }
}

/// Which failures a call may be repeated after.
#[derive(Clone, Copy, PartialEq)]
enum Repeat {
    /// Reads and idempotent writes: any transient failure.
    Any,
    /// A send: only failures that prove the message was not stored.
    NotStored,
}

fn should_retry(e: &azure_core::Error, repeat: Repeat) -> bool {
    match (e.http_status().map(u16::from), repeat) {
        (Some(429 | 503), _) => true,
        (Some(408 | 500 | 502 | 504), Repeat::Any) => true,
        (Some(_), _) => false,
        (None, Repeat::Any) => matches!(e.kind(), ErrorKind::Io | ErrorKind::Connection),
        (None, Repeat::NotStored) => matches!(e.kind(), ErrorKind::Connection),
    }
}

fn error_retry_after(e: &azure_core::Error) -> Option<std::time::Duration> {
    let ErrorKind::HttpResponse {
        raw_response: Some(raw),
        ..
    } = e.kind()
    else {
        return None;
    };
    retry_after(|name| {
        raw.headers()
            .get_optional_string(&azure_core::http::headers::HeaderName::from(
                name.to_string(),
            ))
    })
}

impl AzureQueue {
    /// The queue `name` (3-63 lower-case letters, digits and single hyphens).
    pub fn new(account: &StorageAccount, name: &str) -> anyhow::Result<Self> {
        Self::with_options(account, name, AdapterOptions::default())
    }

    /// The same with explicit timeouts and retry bounds.
    pub fn with_options(
        account: &StorageAccount,
        name: &str,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        super::storage::check_name(name, "queue")?;
        Ok(Self {
            account: account.clone(),
            name: name.into(),
            http: options.client(),
            options,
        })
    }

    /// Runs `call` with a fresh client (and SAS) per attempt, retrying as `repeat` allows.
    async fn retrying<T, F, Fut>(&self, what: &str, repeat: Repeat, mut call: F) -> PortResult<T>
    where
        F: FnMut(QueueClient) -> Fut,
        Fut: Future<Output = azure_core::Result<T>>,
    {
        let mut retry = 0;
        loop {
            let e = match call(self.client()?).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if retry >= self.options.max_retries || !should_retry(&e, repeat) {
                return Err(sdk_error(what, e));
            }
            let retry_after = error_retry_after(&e);
            self.options
                .back_off(what, retry, retry_after, &sdk_error(what, e))
                .await;
            retry += 1;
        }
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
        let mut options = QueueClientOptions::default();
        options.client_options.retry = azure_core::http::RetryOptions::none();
        options.client_options.transport = Some(azure_core::http::Transport::new(Arc::new(
            self.http.clone(),
        )));
        QueueClient::new(url, credential, Some(options)).map_err(|e| sdk_error("queue client", e))
    }

    /// Creates the queue if it does not exist.
    pub async fn create_if_missing(&self) -> PortResult<()> {
        let what = format!("creating queue {}", self.name);
        match self
            .retrying(&what, Repeat::Any, |c| async move { c.create(None).await })
            .await
        {
            Ok(_) | Err(PortError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
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
        let what = format!("sending to {}", self.name);
        let response = self
            .retrying(&what, Repeat::NotStored, |c| {
                let (message, options) = (message.clone(), options.clone());
                async move { c.send_message(message.try_into()?, Some(options)).await }
            })
            .await?;
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
        let what = format!("receiving from {}", self.name);
        let response = self
            .retrying(&what, Repeat::Any, |c| {
                let options = options.clone();
                async move { c.receive_messages(Some(options)).await }
            })
            .await?;
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
        let what = format!("deleting from {}", self.name);
        self.retrying(&what, Repeat::Any, |c| async move {
            c.delete_message(&message.id, &message.pop_receipt, None)
                .await
        })
        .await
        .map(|_| ())
    }
}
