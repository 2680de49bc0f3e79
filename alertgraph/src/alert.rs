//! The alert shape of `ALERTS.md`, validated: every field is attacker-influenced, so sizes are
//! bounded, IPs parsed, times checked, and every rejection says why.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
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
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
    }
    let (h, min, sec, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let mut out = String::with_capacity(24);
    for (value, digits, after) in [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (h, 2, ':'),
        (min, 2, ':'),
        (sec, 2, '.'),
        (milli, 3, 'Z'),
    ] {
        for p in (0..digits).rev() {
            out.push(char::from(b'0' + (value / 10i64.pow(p) % 10) as u8));
        }
        out.push(after);
    }
    out
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day number since 1970-01-01 of a civil date (inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common UTC shape `YYYY-MM-DDTHH:MM:SS[.fff]Z` without a general parser; None for any
/// other shape (which then goes through chrono's full RFC 3339 parser).
fn parse_utc_fast(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let millis = match frac {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            digits
                .iter()
                .take(3)
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0i64, |n, &c| n * 10 + i64::from(c - b'0'))
        }
        _ => return None,
    };
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000 + millis)
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Some(ms) = parse_utc_fast(text) {
        return Ok(ms);
    }
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

/// One field of an incoming alert object, before validation: text (borrowed from the input
/// when it has no escapes), an unsigned integer, or anything else.
enum Field<'a> {
    Text(Cow<'a, str>),
    Unsigned(u64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for FieldVisitor<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'a>, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'a>, E> {
                Ok(Field::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Field<'a>, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field<'a>, E> {
                Ok(Field::Unsigned(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Field<'a>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Field<'a>, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

/// An alert object as read, every field optional and untyped: validation gives the reasons.
#[derive(Deserialize)]
struct RawAlert<'a> {
    #[serde(rename = "TimeGenerated", borrow)]
    time_generated: Option<Field<'a>>,
    #[serde(rename = "AlertId", borrow)]
    alert_id: Option<Field<'a>>,
    #[serde(rename = "AlertName", borrow)]
    alert_name: Option<Field<'a>>,
    #[serde(rename = "Severity", borrow)]
    severity: Option<Field<'a>>,
    #[serde(rename = "Domain", borrow)]
    domain: Option<Field<'a>>,
    #[serde(rename = "SrcIp", borrow)]
    src_ip: Option<Field<'a>>,
    #[serde(rename = "DstIp", borrow)]
    dst_ip: Option<Field<'a>>,
    #[serde(rename = "SrcHost", borrow)]
    src_host: Option<Field<'a>>,
    #[serde(rename = "DstHost", borrow)]
    dst_host: Option<Field<'a>>,
    #[serde(rename = "DstPort", borrow)]
    dst_port: Option<Field<'a>>,
    #[serde(rename = "Protocol", borrow)]
    protocol: Option<Field<'a>>,
    #[serde(rename = "Tactic", borrow)]
    tactic: Option<Field<'a>>,
}

/// A text field: absent, null and blank are "none"; too long, control characters and
/// non-strings are refused.
fn text_of<'f>(name: &str, field: &'f Option<Field<'_>>) -> Result<Option<&'f str>, String> {
    match field {
        None => Ok(None),
        Some(Field::Text(s)) => {
            // ASCII (the common case) in one pass; other text character by character.
            let (chars, control) = if s.is_ascii() {
                (s.len(), s.bytes().any(|b| b.is_ascii_control()))
            } else {
                (s.chars().count(), s.chars().any(char::is_control))
            };
            if chars > MAX_FIELD_CHARS {
                Err(format!(
                    "{name} is longer than {MAX_FIELD_CHARS} characters"
                ))
            } else if control {
                Err(format!("{name} contains control characters"))
            } else {
                let t = s.trim();
                Ok((!t.is_empty()).then_some(t))
            }
        }
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// The text of a field [`text_of`] accepted, trimmed, kept borrowed from the input when it was.
fn take_text(field: Option<Field<'_>>) -> Option<Cow<'_, str>> {
    let text = match field {
        Some(Field::Text(Cow::Borrowed(s))) => Cow::Borrowed(s.trim()),
        Some(Field::Text(Cow::Owned(s))) if s.trim().len() == s.len() => Cow::Owned(s),
        Some(Field::Text(Cow::Owned(s))) => Cow::Owned(s.trim().to_string()),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// Normalised address text. Rust's IPv4 parser accepts only the canonical dotted form, so
/// IPv4 text is kept as written; IPv6 is reformatted (zero compression, lower case).
fn ip_text(ip: IpAddr, original: Cow<'_, str>) -> Cow<'_, str> {
    match ip {
        IpAddr::V4(_) => original,
        IpAddr::V6(_) => Cow::Owned(ip.to_string()),
    }
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

impl<'a> RawAlert<'a> {
    fn validate(self, now_ms: Option<i64>) -> Result<AlertView<'a>, Rejected> {
        let alert_id = text_of("AlertId", &self.alert_id).ok().flatten();
        let reject = |reason: String| Rejected {
            alert_id: alert_id.map(str::to_string),
            reason,
        };
        let text = |name: &str, f| text_of(name, f).map_err(&reject);
        let required =
            |name: &str, f| text(name, f)?.ok_or_else(|| reject(format!("{name} is required")));
        required("AlertId", &self.alert_id)?;
        let time_text = required("TimeGenerated", &self.time_generated)?;
        let time_generated = parse_time(time_text).map_err(&reject)?;
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
        required("AlertName", &self.alert_name)?;
        let severity_text = required("Severity", &self.severity)?;
        let severity = Severity::parse(severity_text).ok_or_else(|| {
            reject(format!(
                "Severity {:?} is not Informational, Low, Medium or High",
                clip(severity_text)
            ))
        })?;
        let domain_text = required("Domain", &self.domain)?;
        let domain = if domain_text.eq_ignore_ascii_case("IT") {
            Domain::IT
        } else if domain_text.eq_ignore_ascii_case("OT") {
            Domain::OT
        } else {
            return Err(reject(format!(
                "Domain {:?} is not IT or OT",
                clip(&domain_text.to_ascii_uppercase())
            )));
        };
        let ip = |name: &str, f| -> Result<Option<IpAddr>, Rejected> {
            match text(name, f)? {
                None => Ok(None),
                Some(s) => s.parse::<IpAddr>().map(Some).map_err(|_| {
                    reject(format!(
                        "{name} {:?} is not an IPv4 or IPv6 address",
                        clip(s)
                    ))
                }),
            }
        };
        let src_addr =
            ip("SrcIp", &self.src_ip)?.ok_or_else(|| reject("SrcIp is required".into()))?;
        let dst_addr = ip("DstIp", &self.dst_ip)?;
        let dst_port = match &self.dst_port {
            None => None,
            Some(f) => Some(
                match f {
                    Field::Unsigned(n) => Some(*n),
                    Field::Text(s) => s.parse().ok(),
                    Field::Other => None,
                }
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| reject("DstPort must be an integer from 0 to 65535".into()))?,
            ),
        };
        for (name, f) in [
            ("SrcHost", &self.src_host),
            ("DstHost", &self.dst_host),
            ("Protocol", &self.protocol),
            ("Tactic", &self.tactic),
        ] {
            text(name, f)?;
        }
        // Every field is valid: move the text out (borrowed from the input where it was).
        let alert_id = take_text(self.alert_id).unwrap_or_default();
        let alert_name = take_text(self.alert_name).unwrap_or_default();
        let src_ip = ip_text(src_addr, take_text(self.src_ip).unwrap_or_default());
        let dst_ip = dst_addr.map(|a| ip_text(a, take_text(self.dst_ip).unwrap_or_default()));
        Ok(AlertView {
            time_generated,
            alert_id,
            alert_name,
            severity,
            domain,
            src_ip,
            dst_ip,
            src_host: take_text(self.src_host),
            dst_host: take_text(self.dst_host),
            dst_port,
            protocol: take_text(self.protocol),
            tactic: take_text(self.tactic),
        })
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
