//! Builds invocation requests exactly as the Functions host encodes them (PROTOCOL.md §0–1)
//! and reads the handler's answer, base64 quirk included (§2).

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

/// The host's encoding of a scalar: JSON text inside a JSON string (`"\"hello\""`, `"1"`).
pub fn encoded(value: impl serde::Serialize) -> Value {
    Value::String(serde_json::to_string(&value).unwrap_or_default())
}

/// An ISO-8601 timestamp as the host writes DateTimeOffset values.
pub fn iso(ms: i64) -> Value {
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

/// The `sys` entry.
pub fn sys(function: &str, now_ms: i64) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": iso(now_ms),
        "RandGuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// A request envelope.
pub fn request(data: Map<String, Value>, metadata: Map<String, Value>) -> Value {
    json!({ "Data": data, "Metadata": metadata })
}

/// The handler's answer, parsed.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// `Outputs`.
    pub outputs: Map<String, Value>,
    /// `Logs`.
    pub logs: Vec<String>,
    /// `ReturnValue`.
    pub return_value: Option<Value>,
}

impl Answer {
    /// Parses a 2xx body; the host fails the invocation when it is not JSON.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.is_empty() {
            return Ok(Self::default());
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            let raw: String = String::from_utf8_lossy(body).chars().take(200).collect();
            format!("handler answered invalid JSON ({e}): {raw:?}")
        })?;
        let obj = v.as_object().ok_or("handler answer is not a JSON object")?;
        let get = |k: &str| {
            obj.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Ok(Self {
            outputs: get("Outputs")
                .and_then(|o| o.as_object().cloned())
                .unwrap_or_default(),
            logs: get("Logs")
                .and_then(|l| l.as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .map(|l| {
                    l.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| l.to_string())
                })
                .collect(),
            return_value: get("ReturnValue").filter(|v| !v.is_null()),
        })
    }

    /// The value for an output binding (`$return` reads ReturnValue).
    pub fn output(&self, binding: &str) -> Option<&Value> {
        if binding == "$return" {
            return self.return_value.as_ref();
        }
        self.outputs.get(binding)
    }
}

/// The messages an output binding receives for the handler's `value`, by the host's rule
/// (azure-functions-host, `HttpScriptInvocationResultExtensions.GetBindingValue`): with
/// `dataType: binary` the value goes to the binding unchanged; otherwise a value that is a
/// whole string holding valid base64 is decoded to bytes (`Convert.FromBase64String`), and any
/// other value goes unchanged. A collector binding then takes an array as one message per
/// element, each as it is: a string element is its text, never decoded; a JSON value is its
/// JSON text.
pub fn output_messages(value: &Value, binary: bool) -> Vec<Vec<u8>> {
    let as_is = |v: &Value| match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    };
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(as_is).collect(),
        Value::String(s) if !binary => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(bytes) => vec![bytes],
            Err(_) => vec![s.as_bytes().to_vec()],
        },
        one => vec![as_is(one)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_json_text_in_a_string() {
        assert_eq!(encoded("hello"), json!("\"hello\""));
        assert_eq!(encoded(3), json!("3"));
        assert_eq!(encoded(vec!["a", "b"]), json!("[\"a\",\"b\"]"));
    }

    /// azure-functions-host `HttpScriptInvocationResultExtensions.GetBindingValue`: only a
    /// whole-string output is tried as base64; `dataType: binary` passes values unchanged; an
    /// array's strings are never decoded.
    #[test]
    fn outputs_are_decoded_as_the_host_does() {
        assert_eq!(
            output_messages(&json!("dGVzdA=="), false),
            vec![b"test".to_vec()]
        );
        assert_eq!(
            output_messages(&json!("hello world"), false),
            vec![b"hello world".to_vec()]
        );
        assert_eq!(
            output_messages(&json!("dGVzdA=="), true),
            vec![b"dGVzdA==".to_vec()]
        );
        assert_eq!(
            output_messages(&json!(["dGVzdA==", {"a": 1}, 7]), false),
            vec![b"dGVzdA==".to_vec(), b"{\"a\":1}".to_vec(), b"7".to_vec()]
        );
        assert_eq!(
            output_messages(&json!({"a": 1}), true),
            vec![b"{\"a\":1}".to_vec()]
        );
        assert!(output_messages(&Value::Null, false).is_empty());
    }

    #[test]
    fn answer_parse_is_case_insensitive_and_rejects_non_json() {
        let a =
            Answer::parse(br#"{"outputs":{"q":["m"]},"logs":["x"],"returnValue":null}"#).unwrap();
        assert_eq!(a.logs, vec!["x"]);
        assert!(a.output("q").is_some() && a.output("$return").is_none());
        assert!(Answer::parse(b"<html>")
            .unwrap_err()
            .contains("invalid JSON"));
    }
}
