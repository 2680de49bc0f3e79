//! The untyped alert object as read, and its validation into an [`AlertView`].

use super::timestamp::parse_time;
use super::{
    clip, AlertView, Domain, Rejected, Severity, MAX_FIELD_CHARS, MAX_FUTURE_MS, MAX_PAST_MS,
};
use serde::Deserialize;
use std::borrow::Cow;
use std::net::IpAddr;

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
pub(super) struct RawAlert<'a> {
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
            // Printable ASCII (the common case) in one pass without a branch per byte (the
            // compiler vectorises it); other text character by character.
            let printable = s
                .bytes()
                .fold(true, |ok, b| ok & (b.wrapping_sub(b' ') < 95));
            if s.len() <= MAX_FIELD_CHARS && printable {
                let t = s.trim_ascii();
                return Ok((!t.is_empty()).then_some(t));
            }
            let (chars, control) = (s.chars().count(), s.chars().any(char::is_control));
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

impl<'a> RawAlert<'a> {
    pub(super) fn validate(self, now_ms: Option<i64>) -> Result<AlertView<'a>, Rejected> {
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
