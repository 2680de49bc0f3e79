//! The alert shape of `ALERTS.md`, validated: every field is attacker-influenced, so sizes are
//! bounded, IPs parsed, times checked, and every rejection says why.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// Longest text kept from any alert field (longer values are rejected, not truncated, so two
/// different alerts never collapse into one).
pub const MAX_FIELD_CHARS: usize = 256;

/// How far an alert's time may lie ahead of the reference clock.
pub const MAX_FUTURE_MS: i64 = 15 * 60 * 1000;

/// How far back an alert's time may lie behind the reference clock.
pub const MAX_PAST_MS: i64 = 30 * 24 * 3600 * 1000;

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Severity {
    /// Weight used in scoring.
    pub fn weight(self) -> f64 {
        match self {
            Severity::Informational => 0.0,
            Severity::Low => 1.0,
            Severity::Medium => 2.0,
            Severity::High => 3.0,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "informational" | "information" | "info" => Some(Severity::Informational),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            _ => None,
        }
    }
}

/// Which network an alert is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Domain {
    /// Enterprise IT.
    IT,
    /// Industrial network (PLC, HMI, historian, SCADA).
    OT,
}

/// A validated alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alert {
    /// Event time, unix milliseconds.
    #[serde(with = "time_ms")]
    pub time_generated: i64,
    /// Unique id.
    pub alert_id: String,
    /// Rule name.
    pub alert_name: String,
    /// Severity.
    pub severity: Severity,
    /// IT or OT.
    pub domain: Domain,
    /// Source address (normalised text).
    pub src_ip: String,
    /// Destination address, absent for host-only alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// Source host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_host: Option<String>,
    /// Destination host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_host: Option<String>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// Protocol (SMB, RDP, Modbus, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// MITRE ATT&CK tactic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tactic: Option<String>,
}

mod time_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_time(&text).map_err(serde::de::Error::custom)
    }
}

/// Formats unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("TimeGenerated {:?} is not RFC 3339: {e}", clip(text)))
}

/// Why an alert was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected {
    /// The AlertId when one could be read.
    pub alert_id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    out
}

impl Alert {
    /// Validates one alert object against `ALERTS.md`. `now_ms` is the reference clock for
    /// the future/past bounds (the function passes the wall clock; batch mode passes None).
    pub fn from_json(value: &Value, now_ms: Option<i64>) -> Result<Alert, Rejected> {
        let obj = value.as_object().ok_or_else(|| Rejected {
            alert_id: None,
            reason: "an alert must be a JSON object".into(),
        })?;
        let text = |name: &str| -> Result<Option<String>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => Err(format!(
                    "{name} is longer than {MAX_FIELD_CHARS} characters"
                )),
                Some(Value::String(s)) if s.chars().any(char::is_control) => {
                    Err(format!("{name} contains control characters"))
                }
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(format!("{name} must be a string")),
            }
        };
        let alert_id = text("AlertId").ok().flatten();
        let reject = |reason: String| Rejected {
            alert_id: alert_id.clone(),
            reason,
        };
        let required = |name: &str| {
            text(name)
                .map_err(&reject)?
                .ok_or_else(|| reject(format!("{name} is required")))
        };
        let alert_id_value = required("AlertId")?;
        let time_text = required("TimeGenerated")?;
        let time_generated = parse_time(&time_text).map_err(&reject)?;
        if let Some(now) = now_ms {
            if time_generated > now + MAX_FUTURE_MS {
                return Err(reject(format!(
                    "TimeGenerated {time_text} is more than 15 minutes in the future"
                )));
            }
            if time_generated < now - MAX_PAST_MS {
                return Err(reject(format!(
                    "TimeGenerated {time_text} is more than 30 days in the past"
                )));
            }
        }
        let alert_name = required("AlertName")?;
        let severity_text = required("Severity")?;
        let severity = Severity::parse(&severity_text).ok_or_else(|| {
            reject(format!(
                "Severity {:?} is not Informational, Low, Medium or High",
                clip(&severity_text)
            ))
        })?;
        let domain = match required("Domain")?.to_ascii_uppercase().as_str() {
            "IT" => Domain::IT,
            "OT" => Domain::OT,
            other => return Err(reject(format!("Domain {:?} is not IT or OT", clip(other)))),
        };
        let ip = |name: &str| -> Result<Option<String>, Rejected> {
            match text(name).map_err(&reject)? {
                None => Ok(None),
                Some(s) => s
                    .parse::<IpAddr>()
                    .map(|ip| Some(ip.to_string()))
                    .map_err(|_| {
                        reject(format!(
                            "{name} {:?} is not an IPv4 or IPv6 address",
                            clip(&s)
                        ))
                    }),
            }
        };
        let src_ip = ip("SrcIp")?.ok_or_else(|| reject("SrcIp is required".into()))?;
        let dst_ip = ip("DstIp")?;
        let dst_port = match obj.get("DstPort") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| reject("DstPort must be an integer from 0 to 65535".into()))?,
            ),
        };
        Ok(Alert {
            time_generated,
            alert_id: alert_id_value,
            alert_name,
            severity,
            domain,
            src_ip,
            dst_ip,
            src_host: text("SrcHost").map_err(&reject)?,
            dst_host: text("DstHost").map_err(&reject)?,
            dst_port,
            protocol: text("Protocol").map_err(&reject)?,
            tactic: text("Tactic").map_err(&reject)?,
        })
    }

    /// The alerts of an Event Hubs event body: one object or an array of them. Each element is
    /// validated on its own, so one bad alert does not take its neighbours down.
    pub fn from_body(body: &Value, now_ms: Option<i64>) -> Vec<Result<Alert, Rejected>> {
        match body {
            Value::Array(items) => items.iter().map(|v| Alert::from_json(v, now_ms)).collect(),
            one => vec![Alert::from_json(one, now_ms)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"TimeGenerated": "2026-11-20T10:00:00Z", "AlertId": "a1", "AlertName": "SMB lateral movement",
               "Severity": "High", "Domain": "IT", "SrcIp": "10.0.0.5", "DstIp": "10.0.0.9", "DstPort": 445,
               "Protocol": "SMB", "Tactic": "LateralMovement"})
    }

    fn reason(v: Value, now: Option<i64>) -> String {
        Alert::from_json(&v, now).unwrap_err().reason
    }

    #[test]
    fn valid_alert_round_trips() {
        let a = Alert::from_json(&good(), None).unwrap();
        assert_eq!(
            (a.severity, a.domain, a.dst_port),
            (Severity::High, Domain::IT, Some(445))
        );
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(Alert::from_json(&back, None).unwrap(), a);
    }

    #[test]
    fn each_bad_field_has_a_clear_reason() {
        let with = |k: &str, v: Value| {
            let mut g = good();
            g[k] = v;
            g
        };
        assert!(reason(with("SrcIp", json!("10.0.0.999")), None).contains("not an IPv4"));
        assert!(reason(with("DstIp", json!("evil.example")), None).contains("DstIp"));
        assert!(reason(with("Domain", json!("Cloud")), None).contains("not IT or OT"));
        assert!(reason(with("Severity", json!("Critical")), None).contains("Severity"));
        assert!(reason(
            with("AlertName", json!("x".repeat(MAX_FIELD_CHARS + 1))),
            None
        )
        .contains("longer than"));
        assert!(reason(with("AlertName", json!("a\u{1b}[31m")), None).contains("control"));
        assert!(reason(with("DstPort", json!(70000)), None).contains("DstPort"));
        assert!(reason(with("TimeGenerated", json!("yesterday")), None).contains("RFC 3339"));
        let mut no_id = good();
        no_id.as_object_mut().unwrap().remove("AlertId");
        assert_eq!(reason(no_id, None), "AlertId is required");
        assert!(reason(json!([1]), None).contains("object"));
    }

    #[test]
    fn times_far_from_now_are_rejected() {
        let t = parse_time("2026-11-20T10:00:00Z").unwrap();
        assert!(Alert::from_json(&good(), Some(t)).is_ok());
        assert!(reason(good(), Some(t - 3_600_000)).contains("future"));
        assert!(reason(good(), Some(t + 31 * 24 * 3_600_000)).contains("past"));
    }

    #[test]
    fn a_body_array_is_validated_element_by_element() {
        let body = json!([good(), {"AlertId": "bad"}, good()]);
        let results = Alert::from_body(&body, None);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        assert_eq!(
            results[1].as_ref().unwrap_err().alert_id.as_deref(),
            Some("bad")
        );
    }
}
