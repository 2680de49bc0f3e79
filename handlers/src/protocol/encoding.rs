//! The Functions host's value encoding, both ways.
//!
//! The host writes every Data/Metadata value that is not a POCO as `JsonConvert.SerializeObject(v)`
//! *inside* a JSON string: a string arrives as `"\"hello\""`, a number as `"1"`, an array as
//! `"[...]"` (PROTOCOL.md §0). [`Encoded`] accepts both that form and the plain one, and writes
//! the host's form back, so fixtures captured from the host round-trip exactly.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Decodes a possibly double-encoded value: a JSON string whose text parses as JSON becomes
/// the parsed value (repeatedly, at most twice); anything else is returned unchanged.
pub fn decode_value(value: &Value) -> Value {
    let mut current = value.clone();
    for _ in 0..2 {
        match &current {
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(parsed) => current = parsed,
                Err(_) => break,
            },
            _ => break,
        }
    }
    current
}

/// A value as the host encodes it: `T` serialized to JSON text inside a JSON string, or `T`
/// itself when the host passed an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded<T>(pub T);

impl<T> Encoded<T> {
    /// The decoded value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Encoded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        // Try the value as it stands, then the decoded text, then (for String targets) the raw text.
        if let Ok(v) = T::deserialize(&raw) {
            if !matches!(raw, Value::String(_)) {
                return Ok(Encoded(v));
            }
        }
        if let Value::String(text) = &raw {
            if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                if let Ok(v) = T::deserialize(&parsed) {
                    return Ok(Encoded(v));
                }
                if let Value::String(inner) = &parsed {
                    if let Ok(again) = serde_json::from_str::<Value>(inner) {
                        if let Ok(v) = T::deserialize(&again) {
                            return Ok(Encoded(v));
                        }
                    }
                }
            }
        }
        T::deserialize(&raw)
            .map(Encoded)
            .map_err(serde::de::Error::custom)
    }
}

impl<T: Serialize> Serialize for Encoded<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = serde_json::to_value(&self.0).map_err(serde::ser::Error::custom)?;
        match value {
            Value::Object(_) => value.serialize(serializer),
            other => {
                let text = serde_json::to_string(&other).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(&text)
            }
        }
    }
}

/// Serde helpers for optional encoded fields.
pub mod opt {
    use super::Encoded;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Deserializes an optional host-encoded value.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        Ok(Option::<Encoded<T>>::deserialize(deserializer)?.map(Encoded::into_inner))
    }

    /// Serializes an optional value in the host's encoding.
    pub fn serialize<S, T>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Serialize + Clone,
    {
        value.clone().map(Encoded).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn double_encoded_string_decodes_and_re_encodes() {
        let raw = json!("\"hello\"");
        let v: Encoded<String> = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(v.0, "hello");
        assert_eq!(serde_json::to_value(&v).unwrap(), raw);
    }

    #[test]
    fn plain_text_that_is_not_json_stays_text() {
        let v: Encoded<String> = serde_json::from_value(json!("/subscriptions/x")).unwrap();
        assert_eq!(v.0, "/subscriptions/x");
    }

    #[test]
    fn numbers_accepted_as_numbers_or_numeric_strings() {
        let a: Encoded<u32> = serde_json::from_value(json!("3")).unwrap();
        let b: Encoded<u32> = serde_json::from_value(json!(3)).unwrap();
        assert_eq!((a.0, b.0), (3, 3));
        assert!(serde_json::from_value::<Encoded<u32>>(json!("three")).is_err());
    }

    #[test]
    fn decode_value_unwraps_json_text() {
        assert_eq!(decode_value(&json!("{\"a\":1}")), json!({"a":1}));
        assert_eq!(decode_value(&json!("\"{\\\"a\\\":1}\"")), json!({"a":1}));
        assert_eq!(decode_value(&json!("plain")), json!("plain"));
    }
}
