//! The alert shape of `ALERTS.md`, validated: every field is attacker-influenced, so sizes are
//! bounded, IPs parsed, times checked, and every rejection says why.

mod raw;
mod timestamp;

use raw::RawAlert;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use timestamp::time_ms;
pub use timestamp::{format_time, TimeText};

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
        [
            ("high", Severity::High),
            ("medium", Severity::Medium),
            ("low", Severity::Low),
            ("informational", Severity::Informational),
            ("information", Severity::Informational),
            ("info", Severity::Informational),
        ]
        .into_iter()
        .find_map(|(name, severity)| text.eq_ignore_ascii_case(name).then_some(severity))
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
    /// Source address (normalised text); empty when the alert names its source only by
    /// `src_host` (contract v2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    /// Contract v2's optional sensor detail.
    #[serde(flatten)]
    pub ext: AlertExt,
}

/// Whether an alert's packet went from client to server (a request) or back (a response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Client to server (the attacker's probe, exploit or command).
    Request,
    /// Server to client (what a victim answered).
    Response,
}

impl Direction {
    fn parse(text: &str) -> Option<Self> {
        [
            ("request", Direction::Request),
            ("to_server", Direction::Request),
            ("response", Direction::Response),
            ("to_client", Direction::Response),
        ]
        .into_iter()
        .find_map(|(name, d)| text.eq_ignore_ascii_case(name).then_some(d))
    }
}

/// Most MITRE technique ids an alert carries.
pub const MAX_TECHNIQUES: usize = 16;
/// Most extra fields an alert carries through to its row.
pub const MAX_EXTRA: usize = 16;
/// Longest extra-field name.
pub const MAX_EXTRA_KEY_CHARS: usize = 64;

/// Contract v2 (`ALERTS.md`): what sensors know beyond the v1 fields. Every field is optional
/// and bounded like the v1 text fields (at most [`MAX_FIELD_CHARS`] characters, no control
/// characters); longer values are refused, never cut.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlertExt {
    /// Rule id at the sensor (Suricata signature id, Wazuh rule id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_id: Option<String>,
    /// Rule category (Suricata classtype text, Wazuh groups, Sentinel alert type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Sensor flow id (alerts of one connection share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// Account the activity ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// That account's domain (NT domain or UPN suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_domain: Option<String>,
    /// Process image (file name or path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_image: Option<String>,
    /// Hash of the process command line (the line itself may hold secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line_hash: Option<String>,
    /// Logon session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logon_id: Option<String>,
    /// MITRE ATT&CK technique ids (at most [`MAX_TECHNIQUES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub techniques: Vec<String>,
    /// Sensor or product that raised the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// Request or response, when the sensor says (otherwise inferred by the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Further fields carried through to the row (URL, user agent, DNS name…), at most
    /// [`MAX_EXTRA`], names of at most [`MAX_EXTRA_KEY_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "extra_map")]
    pub extra: Vec<(String, String)>,
}

impl AlertExt {
    /// True when no v2 field is set.
    pub fn is_empty(&self) -> bool {
        *self == AlertExt::default()
    }
}

/// `Extra` as a JSON object (in the order given).
mod extra_map {
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(items: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(items.len()))?;
        for (k, v) in items {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect())
    }
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
        if !value.is_object() {
            return Err(Rejected {
                alert_id: None,
                reason: "an alert must be a JSON object".into(),
            });
        }
        match RawAlert::deserialize(value) {
            Ok(raw) => raw.validate(now_ms).map(AlertView::into_owned),
            Err(e) => Err(Rejected {
                alert_id: None,
                reason: format!("not a valid alert object: {e}"),
            }),
        }
    }

    /// Parses and validates one JSON text (a JSON lines line) without building a JSON tree:
    /// the fast path of batch mode.
    pub fn from_json_str(text: &str, now_ms: Option<i64>) -> Result<Alert, Rejected> {
        AlertView::parse(text, now_ms).map(AlertView::into_owned)
    }

    /// This alert as a view (borrowed text), as [`crate::Engine::ingest_view`] takes it.
    pub fn view(&self) -> AlertView<'_> {
        AlertView {
            time_generated: self.time_generated,
            alert_id: Cow::Borrowed(&self.alert_id),
            alert_name: Cow::Borrowed(&self.alert_name),
            severity: self.severity,
            domain: self.domain,
            src_ip: Cow::Borrowed(&self.src_ip),
            dst_ip: self.dst_ip.as_deref().map(Cow::Borrowed),
            src_host: self.src_host.as_deref().map(Cow::Borrowed),
            dst_host: self.dst_host.as_deref().map(Cow::Borrowed),
            dst_port: self.dst_port,
            protocol: self.protocol.as_deref().map(Cow::Borrowed),
            tactic: self.tactic.as_deref().map(Cow::Borrowed),
            ext: (!self.ext.is_empty()).then(|| Box::new(self.ext.clone())),
        }
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

/// A validated alert whose text stays borrowed from the input where it can (no escapes, IPv4):
/// batch mode reads a JSON lines file without copying each field. [`Alert`] owns its text.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView<'a> {
    /// Event time, unix milliseconds.
    pub time_generated: i64,
    /// Unique id.
    pub alert_id: Cow<'a, str>,
    /// Rule name.
    pub alert_name: Cow<'a, str>,
    /// Severity.
    pub severity: Severity,
    /// IT or OT.
    pub domain: Domain,
    /// Source address (normalised text).
    pub src_ip: Cow<'a, str>,
    /// Destination address, absent for host-only alerts.
    pub dst_ip: Option<Cow<'a, str>>,
    /// Source host name.
    pub src_host: Option<Cow<'a, str>>,
    /// Destination host name.
    pub dst_host: Option<Cow<'a, str>>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Protocol.
    pub protocol: Option<Cow<'a, str>>,
    /// MITRE ATT&CK tactic.
    pub tactic: Option<Cow<'a, str>>,
    /// Contract v2's fields, when the alert carries any.
    pub ext: Option<Box<AlertExt>>,
}

impl<'a> AlertView<'a> {
    /// Parses and validates one JSON text (a JSON lines line), borrowing from it.
    pub fn parse(text: &'a str, now_ms: Option<i64>) -> Result<Self, Rejected> {
        match serde_json::from_str::<RawAlert<'a>>(text) {
            Ok(raw) => raw.validate(now_ms),
            Err(e) => Err(Rejected {
                alert_id: None,
                reason: if e.is_data() {
                    "an alert must be a JSON object with known fields of the right shape".into()
                } else {
                    format!("not JSON: {e}")
                },
            }),
        }
    }

    /// The owned alert.
    pub fn into_owned(self) -> Alert {
        let own = |t: Option<Cow<'_, str>>| t.map(Cow::into_owned);
        Alert {
            time_generated: self.time_generated,
            alert_id: self.alert_id.into_owned(),
            alert_name: self.alert_name.into_owned(),
            severity: self.severity,
            domain: self.domain,
            src_ip: self.src_ip.into_owned(),
            dst_ip: own(self.dst_ip),
            src_host: own(self.src_host),
            dst_host: own(self.dst_host),
            dst_port: self.dst_port,
            protocol: own(self.protocol),
            tactic: own(self.tactic),
            ext: self.ext.map(|e| *e).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp::{parse_time, parse_utc_fast};
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
    fn a_view_borrows_plain_text_and_reads_as_the_owned_alert() {
        let line = r#"{"TimeGenerated":"2026-11-20T10:00:00Z","AlertId":" a1 ","AlertName":"SMB \u0041","Severity":"High","Domain":"IT","SrcIp":"10.0.0.5","DstIp":"2001:DB8:0:0::1","Protocol":"SMB"}"#;
        let view = AlertView::parse(line, None).unwrap();
        assert!(matches!(view.alert_id, Cow::Borrowed("a1")));
        assert!(matches!(view.src_ip, Cow::Borrowed("10.0.0.5")));
        assert_eq!(view.alert_name, "SMB A"); // an escape: owned
        assert_eq!(view.dst_ip.as_deref(), Some("2001:db8::1"));
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            view.clone().into_owned(),
            Alert::from_json(&value, None).unwrap()
        );
        assert_eq!(view.into_owned().view().into_owned().alert_id, "a1");
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
    fn the_fast_time_path_agrees_with_chrono() {
        for text in [
            "2026-11-20T10:00:00Z",
            "2024-02-29T23:59:59.999Z",
            "1999-12-31T00:00:00.5Z",
            "2026-01-01T00:00:00.123456Z",
        ] {
            let chrono = chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis();
            assert_eq!(parse_utc_fast(text), Some(chrono), "{text}");
            assert_eq!(
                format_time(chrono),
                chrono::DateTime::from_timestamp_millis(chrono)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()
            );
        }
        assert_eq!(parse_utc_fast("2026-02-30T00:00:00Z"), None);
        assert!(parse_time("2026-02-30T00:00:00Z").is_err());
        assert_eq!(
            parse_time("2026-11-20T11:00:00+01:00"),
            parse_time("2026-11-20T10:00:00Z")
        );
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
