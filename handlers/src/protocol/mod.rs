//! The custom-handler wire format: what the Functions host POSTs to `/{FunctionName}` and what
//! it expects back (PROTOCOL.md). Functions never see raw JSON: they get typed triggers from
//! [`InvocationRequest`] and build an [`InvocationResponse`].

pub mod encoding;
pub mod eventgrid;
pub mod triggers;

pub use encoding::{decode_value, Encoded};
pub use eventgrid::{CloudEvent, EventGridEvent, GridEvent};
pub use triggers::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a request could not be turned into a typed trigger.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The envelope has no `Data.{name}` entry for the trigger binding.
    #[error("request has no Data.{0} (the trigger binding)")]
    MissingBinding(String),
    /// A value did not have the shape the trigger needs.
    #[error("Data.{binding} is not a valid {kind}: {reason}")]
    InvalidBinding {
        /// The trigger binding's name.
        binding: String,
        /// The trigger kind it was read as.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Metadata did not have the expected shape.
    #[error("Metadata is not valid for a {kind} trigger: {reason}")]
    InvalidMetadata {
        /// The trigger kind.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The body the host POSTs for every invocation: `{"Data": {...}, "Metadata": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// One entry per input binding (the trigger plus any input bindings).
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    /// Trigger binding data, minus keys ending in "trigger".
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    /// Decodes `Data.{binding}` as `T`, tolerating the host's double encoding.
    pub fn data<T: DeserializeOwned>(
        &self,
        binding: &str,
        kind: &'static str,
    ) -> Result<T, ProtocolError> {
        let raw = self
            .data
            .get(binding)
            .ok_or_else(|| ProtocolError::MissingBinding(binding.to_string()))?;
        serde_json::from_value::<Encoded<T>>(raw.clone())
            .map(Encoded::into_inner)
            .map_err(|e| ProtocolError::InvalidBinding {
                binding: binding.to_string(),
                kind,
                reason: e.to_string(),
            })
    }

    /// Decodes the whole Metadata map as `T`.
    pub fn metadata<T: DeserializeOwned>(&self, kind: &'static str) -> Result<T, ProtocolError> {
        serde_json::from_value(Value::Object(self.metadata.clone())).map_err(|e| {
            ProtocolError::InvalidMetadata {
                kind,
                reason: e.to_string(),
            }
        })
    }
}

/// What the handler answers: `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// One entry per output binding name.
    #[serde(rename = "Outputs", default)]
    pub outputs: Map<String, Value>,
    /// Lines the host logs at Information level for this invocation.
    #[serde(rename = "Logs", default)]
    pub logs: Vec<String>,
    /// The value for a `$return` output binding.
    #[serde(
        rename = "ReturnValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub return_value: Option<Value>,
}

impl InvocationResponse {
    /// Appends a log line for the host.
    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }

    /// Sets an output binding to a list of messages (queue, Service Bus, Event Hubs, Event Grid).
    ///
    /// Each message is handed to the binding as it is (an object as its JSON text, a string as
    /// its text): the host never base64-decodes the elements of an array output, only an output
    /// that is one whole string (azure-functions-host, `HttpScriptInvocationResultExtensions`).
    pub fn messages(&mut self, binding: &str, messages: Vec<Value>) {
        self.outputs
            .insert(binding.to_string(), Value::Array(messages));
    }

    /// Sets an output binding to bytes, sent as one base64 string: the host decodes a
    /// whole-string output that is valid base64 into bytes, unless the binding is
    /// `dataType: binary`, whose value it passes on unchanged (so leave `dataType` unset here).
    pub fn blob(&mut self, binding: &str, bytes: &[u8]) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.outputs
            .insert(binding.to_string(), Value::String(encoded));
    }

    /// Sets an HTTP output binding.
    pub fn http(&mut self, binding: &str, response: HttpResponseData) {
        let value = serde_json::to_value(response).unwrap_or(Value::Null);
        self.outputs.insert(binding.to_string(), value);
    }
}

/// An HTTP output binding value (`{"statusCode", "body", "headers"}`); must be a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponseData {
    /// Status code; the host accepts a number or a numeric string.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// Response body.
    #[serde(default)]
    pub body: Value,
    /// Response headers.
    #[serde(default)]
    pub headers: Map<String, Value>,
}

impl HttpResponseData {
    /// A JSON response with the given status.
    pub fn json(status_code: u16, body: Value) -> Self {
        let mut headers = Map::new();
        headers.insert("Content-Type".into(), Value::from("application/json"));
        Self {
            status_code,
            body,
            headers,
        }
    }
}
