//! Retry policies, as host.json and function.json declare them.

use super::json::{duration_at, err, ConfigError};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A retry policy (`fixedDelay` or `exponentialBackoff`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `None` = until it succeeds (`-1`).
    pub max_retry_count: Option<u32>,
    /// Delay strategy.
    pub strategy: RetryStrategy,
}

/// How long to wait between retries.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryStrategy {
    /// The same delay every time.
    Fixed(Duration),
    /// Doubling from `min` up to `max`.
    Exponential {
        /// First delay.
        min: Duration,
        /// Cap.
        max: Duration,
    },
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        match &self.strategy {
            RetryStrategy::Fixed(d) => *d,
            RetryStrategy::Exponential { min, max } => {
                let factor = 2u32.saturating_pow(retry.min(20));
                min.saturating_mul(factor).min(*max)
            }
        }
    }
}

/// Parses a `retry` object; `None` when there is none.
pub(super) fn parse_retry(
    v: Option<&Value>,
    path: &Path,
) -> Result<Option<RetryPolicy>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let strategy = v.get("strategy").and_then(Value::as_str).unwrap_or("");
    let max = v
        .get("maxRetryCount")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            err(
                path,
                "retry.maxRetryCount is required (-1 = until it succeeds)",
            )
        })?;
    let max_retry_count = if max < 0 { None } else { Some(max as u32) };
    // The host refuses a strategy without its intervals (azure-functions-host,
    // `Utility.ValidateRetryOptions`: ArgumentNullException for DelayInterval, MinimumInterval,
    // MaximumInterval); there is no default to fall back on.
    let required = |field: &str| -> Result<Duration, ConfigError> {
        if v.get(field).is_none_or(Value::is_null) {
            return Err(err(
                path,
                format!("retry.{field} is required with strategy {strategy:?} (the host refuses the function without it)"),
            ));
        }
        duration_at(v, &format!("/{field}"), Duration::ZERO, path)
    };
    let strategy = match strategy {
        "fixedDelay" => RetryStrategy::Fixed(required("delayInterval")?),
        "exponentialBackoff" => RetryStrategy::Exponential {
            min: required("minimumInterval")?,
            max: required("maximumInterval")?,
        },
        other => {
            return Err(err(
                path,
                format!("retry.strategy {other:?}: use fixedDelay or exponentialBackoff"),
            ))
        }
    };
    Ok(Some(RetryPolicy {
        max_retry_count,
        strategy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_without_its_intervals_is_refused_like_the_host_does() {
        use serde_json::json;
        let p = Path::new("f/function.json");
        for (policy, missing) in [
            (
                json!({"strategy": "fixedDelay", "maxRetryCount": 3}),
                "delayInterval",
            ),
            (
                json!({"strategy": "exponentialBackoff", "maxRetryCount": 3, "minimumInterval": "00:00:01"}),
                "maximumInterval",
            ),
            (
                json!({"strategy": "exponentialBackoff", "maxRetryCount": 3, "maximumInterval": "00:01:00"}),
                "minimumInterval",
            ),
        ] {
            let e = parse_retry(Some(&policy), p).unwrap_err().to_string();
            assert!(e.contains(&format!("retry.{missing} is required")), "{e}");
        }
        let ok = json!({"strategy": "fixedDelay", "maxRetryCount": 3, "delayInterval": "00:00:05"});
        assert_eq!(
            parse_retry(Some(&ok), p).unwrap().unwrap().strategy,
            RetryStrategy::Fixed(Duration::from_secs(5))
        );
    }

    #[test]
    fn exponential_retry_doubles_and_caps() {
        let p = RetryPolicy {
            max_retry_count: Some(3),
            strategy: RetryStrategy::Exponential {
                min: Duration::from_secs(1),
                max: Duration::from_secs(5),
            },
        };
        assert_eq!(p.delay(0), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(4));
        assert_eq!(p.delay(3), Duration::from_secs(5));
    }
}
