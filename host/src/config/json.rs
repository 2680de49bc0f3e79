//! Reading the app's JSON files: the error that names the file, and typed field readers.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A configuration problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// The file at fault.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A [`ConfigError`] naming `path`.
pub(super) fn err(path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads and parses one JSON file.
pub(super) fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(path, format!("not valid JSON: {e}")))
}

/// Parses a `hh:mm:ss` (optionally `d.hh:mm:ss`) TimeSpan as host.json writes durations.
pub fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    if m >= 60 || !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(s))
}

/// The `hh:mm:ss` TimeSpan at `pointer` in `v`, or `default` when absent.
pub(super) fn duration_at(
    v: &Value,
    pointer: &str,
    default: Duration,
    path: &Path,
) -> Result<Duration, ConfigError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => {
            parse_timespan(s).ok_or_else(|| err(path, format!("{pointer}: {s:?} is not hh:mm:ss")))
        }
        Some(other) => Err(err(
            path,
            format!("{pointer}: expected \"hh:mm:ss\", got {other}"),
        )),
    }
}

/// The non-negative integer at `pointer` in `v`, or `default` when absent.
pub(super) fn u64_at(
    v: &Value,
    pointer: &str,
    default: u64,
    path: &Path,
) -> Result<u64, ConfigError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_u64().ok_or_else(|| {
            err(
                path,
                format!("{pointer}: expected a non-negative integer, got {x}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_parse() {
        assert_eq!(parse_timespan("00:00:30"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_timespan("1.00:00:00"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_timespan("00:61:00"), None);
        assert_eq!(parse_timespan("30s"), None);
    }
}
