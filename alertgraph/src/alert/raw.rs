//! The untyped alert object as read, and its validation into an [`AlertView`].

use super::timestamp::parse_time;
use super::{
    clip, AlertExt, AlertView, Direction, Domain, Rejected, Severity, MAX_EXTRA,
    MAX_EXTRA_KEY_CHARS, MAX_FIELD_CHARS, MAX_FUTURE_MS, MAX_PAST_MS, MAX_TECHNIQUES,
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
    // Contract v2.
    #[serde(rename = "SignatureId", borrow)]
    signature_id: Option<Field<'a>>,
    #[serde(rename = "Category", borrow)]
    category: Option<Field<'a>>,
    #[serde(rename = "SrcPort", borrow)]
    src_port: Option<Field<'a>>,
    #[serde(rename = "FlowId", borrow)]
    flow_id: Option<Field<'a>>,
    #[serde(rename = "Account", borrow)]
    account: Option<Field<'a>>,
    #[serde(rename = "AccountDomain", borrow)]
    account_domain: Option<Field<'a>>,
    #[serde(rename = "ProcessImage", borrow)]
    process_image: Option<Field<'a>>,
    #[serde(rename = "CommandLineHash", borrow)]
    command_line_hash: Option<Field<'a>>,
    #[serde(rename = "LogonId", borrow)]
    logon_id: Option<Field<'a>>,
    #[serde(rename = "Sensor", borrow)]
    sensor: Option<Field<'a>>,
    #[serde(rename = "Direction", borrow)]
    direction: Option<Field<'a>>,
    #[serde(rename = "Techniques")]
    techniques: Option<serde_json::Value>,
    #[serde(rename = "Extra")]
    extra: Option<serde_json::Value>,
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

/// An id field (`SignatureId`, `FlowId`): text, or a non-negative integer written as text.
fn id_of(name: &str, field: &Option<Field<'_>>) -> Result<Option<String>, String> {
    match field {
        Some(Field::Unsigned(n)) => Ok(Some(n.to_string())),
        _ => Ok(text_of(name, field)?.map(str::to_string)),
    }
}

/// A port field: an integer (or its text) from 0 to 65535.
fn port_of(name: &str, field: &Option<Field<'_>>) -> Result<Option<u16>, String> {
    match field {
        None => Ok(None),
        Some(f) => match f {
            Field::Unsigned(n) => Some(*n),
            Field::Text(s) => s.trim().parse().ok(),
            Field::Other => None,
        }
        .and_then(|p| u16::try_from(p).ok())
        .map(Some)
        .ok_or_else(|| format!("{name} must be an integer from 0 to 65535")),
    }
}

/// A bounded text value inside a list or map field.
fn bounded_item(name: &str, text: &str, max_chars: usize) -> Result<String, String> {
    let t = text.trim();
    if t.chars().count() > max_chars {
        return Err(format!(
            "{name} has an item longer than {max_chars} characters"
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{name} has an item with control characters"));
    }
    Ok(t.to_string())
}

/// `Techniques`: an array of strings, or one comma-separated string; at most
/// [`MAX_TECHNIQUES`] ids of at most 32 characters.
fn techniques_of(value: Option<serde_json::Value>) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let items: Vec<String> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err("Techniques must be strings".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("Techniques must be an array of strings".into()),
    };
    let mut out = Vec::new();
    for item in items {
        let t = bounded_item("Techniques", &item, 32)?;
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > MAX_TECHNIQUES {
        return Err(format!("Techniques has more than {MAX_TECHNIQUES} items"));
    }
    Ok(out)
}

/// `Extra`: an object of strings, numbers or booleans, at most [`MAX_EXTRA`] entries.
fn extra_of(value: Option<serde_json::Value>) -> Result<Vec<(String, String)>, String> {
    use serde_json::Value;
    let map = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("Extra must be an object".into()),
    };
    if map.len() > MAX_EXTRA {
        return Err(format!("Extra has more than {MAX_EXTRA} fields"));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = bounded_item("Extra", &k, MAX_EXTRA_KEY_CHARS)?;
        let value = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(format!(
                    "Extra field {key:?} must be text, a number or a boolean"
                ))
            }
        };
        let value = bounded_item("Extra", &value, MAX_FIELD_CHARS)?;
        if !key.is_empty() && !value.is_empty() {
            out.push((key, value));
        }
    }
    Ok(out)
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
    pub(super) fn validate(mut self, now_ms: Option<i64>) -> Result<AlertView<'a>, Rejected> {
        let (techniques, extra) = (self.techniques.take(), self.extra.take());
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
        let src_addr = ip("SrcIp", &self.src_ip)?;
        if src_addr.is_none() && text("SrcHost", &self.src_host)?.is_none() {
            return Err(reject(
                "SrcIp (or, for a host known only by name, SrcHost) is required".into(),
            ));
        }
        let dst_addr = ip("DstIp", &self.dst_ip)?;
        let dst_port = port_of("DstPort", &self.dst_port).map_err(&reject)?;
        for (name, f) in [
            ("SrcHost", &self.src_host),
            ("DstHost", &self.dst_host),
            ("Protocol", &self.protocol),
            ("Tactic", &self.tactic),
        ] {
            text(name, f)?;
        }
        let ext = self.ext(techniques, extra, &reject)?;
        // Every field is valid: move the text out (borrowed from the input where it was).
        let alert_id = take_text(self.alert_id).unwrap_or_default();
        let alert_name = take_text(self.alert_name).unwrap_or_default();
        let src_ip = match src_addr {
            Some(a) => ip_text(a, take_text(self.src_ip).unwrap_or_default()),
            None => Cow::Borrowed(""),
        };
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
            ext,
        })
    }

    /// Contract v2's fields, validated; None when the alert carries none (v1).
    fn ext(
        &self,
        techniques: Option<serde_json::Value>,
        extra: Option<serde_json::Value>,
        reject: &impl Fn(String) -> Rejected,
    ) -> Result<Option<Box<AlertExt>>, Rejected> {
        let any = self.signature_id.is_some()
            || self.category.is_some()
            || self.src_port.is_some()
            || self.flow_id.is_some()
            || self.account.is_some()
            || self.account_domain.is_some()
            || self.process_image.is_some()
            || self.command_line_hash.is_some()
            || self.logon_id.is_some()
            || self.sensor.is_some()
            || self.direction.is_some()
            || techniques.is_some()
            || extra.is_some();
        if !any {
            return Ok(None);
        }
        let owned = |name: &str, f: &Option<Field<'_>>| -> Result<Option<String>, Rejected> {
            text_of(name, f)
                .map(|t| t.map(str::to_string))
                .map_err(reject)
        };
        let direction = match owned("Direction", &self.direction)? {
            None => None,
            Some(d) => Some(Direction::parse(&d).ok_or_else(|| {
                reject(format!(
                    "Direction {:?} is not request or response",
                    clip(&d)
                ))
            })?),
        };
        let ext = AlertExt {
            signature_id: id_of("SignatureId", &self.signature_id).map_err(reject)?,
            category: owned("Category", &self.category)?,
            src_port: port_of("SrcPort", &self.src_port).map_err(reject)?,
            flow_id: id_of("FlowId", &self.flow_id).map_err(reject)?,
            account: owned("Account", &self.account)?,
            account_domain: owned("AccountDomain", &self.account_domain)?,
            process_image: owned("ProcessImage", &self.process_image)?,
            command_line_hash: owned("CommandLineHash", &self.command_line_hash)?,
            logon_id: owned("LogonId", &self.logon_id)?,
            sensor: owned("Sensor", &self.sensor)?,
            direction,
            techniques: techniques_of(techniques).map_err(reject)?,
            extra: extra_of(extra).map_err(reject)?,
        };
        Ok((!ext.is_empty()).then(|| Box::new(ext)))
    }
}
