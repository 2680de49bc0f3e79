//! What triage can use from an entity: threat-intelligence indicators and workspace subjects.

use super::entity::{Entity, EntityKind, MAX_INDICATOR_LEN};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Something in the workspace an entity names, that the workspace can be asked about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum Subject {
    /// A host name (lower case).
    Host(String),
    /// An account (UPN or name, lower case).
    Account(String),
    /// An IP address.
    Ip(String),
    /// A domain (lower case).
    Domain(String),
}

/// An indicator extracted from an entity for threat-intelligence lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Indicator {
    /// ipv4, ipv6, url, domain, filehash, email.
    pub kind: String,
    /// Normalised value (lower case where case does not matter).
    pub value: String,
}

impl Indicator {
    fn new(kind: &str, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

/// What triage can use from one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Indicators for threat intelligence.
    pub indicators: Vec<Indicator>,
    /// Subjects to ask the workspace about.
    pub subjects: Vec<Subject>,
}

fn domain_of_email(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && is_domain(domain)).then(|| domain.to_ascii_lowercase())
}

/// True for a plausible DNS name: labels of letters, digits, `-` and `_`, at least one dot.
pub fn is_domain(text: &str) -> bool {
    let text = text.trim_end_matches('.');
    text.len() <= 253
        && text.contains('.')
        && text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn ip_indicator(text: &str) -> Option<Indicator> {
    let addr = text.trim().parse::<std::net::IpAddr>().ok()?;
    let kind = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
    Some(Indicator::new(kind, addr.to_string()))
}

fn url_indicators(text: &str, out: &mut Observed) {
    out.indicators.push(Indicator::new("url", text.trim()));
    if let Some(host) = url::Url::parse(text.trim())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    {
        match ip_indicator(host.trim_matches(['[', ']'])) {
            Some(ip) => {
                out.subjects.push(Subject::Ip(ip.value.clone()));
                out.indicators.push(ip);
            }
            None if is_domain(&host) => {
                out.subjects.push(Subject::Domain(host.clone()));
                out.indicators.push(Indicator::new("domain", host));
            }
            None => {}
        }
    }
}

fn hash_indicator(text: &str) -> Option<Indicator> {
    let hash = text.trim();
    (matches!(hash.len(), 32 | 40 | 64) && hash.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| Indicator::new("filehash", hash.to_ascii_lowercase()))
}

impl Entity {
    /// The indicators this entity carries that threat intelligence can look up.
    pub fn indicators(&self) -> Vec<Indicator> {
        self.observe().indicators
    }

    /// Indicators and workspace subjects of this entity, by kind. Unknown kinds yield nothing
    /// (they are still listed in the report).
    pub fn observe(&self) -> Observed {
        let mut out = Observed::default();
        let f = |n: &str| self.field(n);
        match self.entity_kind() {
            EntityKind::Ip => {
                if let Some(ip) = f("address").and_then(ip_indicator) {
                    out.subjects.push(Subject::Ip(ip.value.clone()));
                    out.indicators.push(ip);
                }
            }
            EntityKind::Url => {
                if let Some(url) = f("url") {
                    url_indicators(url, &mut out);
                }
            }
            EntityKind::DnsResolution => {
                if let Some(domain) = f("domainName").filter(|d| is_domain(d)) {
                    let d = domain.trim_end_matches('.').to_ascii_lowercase();
                    out.subjects.push(Subject::Domain(d.clone()));
                    out.indicators.push(Indicator::new("domain", d));
                }
                if let Some(ips) = self.properties.get("ipAddresses").and_then(Value::as_array) {
                    for ip in ips.iter().take(16) {
                        let text = ip
                            .as_str()
                            .or_else(|| ip.pointer("/properties/address").and_then(Value::as_str))
                            .or_else(|| ip.get("address").and_then(Value::as_str));
                        if let Some(i) = text.and_then(ip_indicator) {
                            out.indicators.push(i);
                        }
                    }
                }
            }
            EntityKind::Host => {
                if let Some(host) = f("hostName").or_else(|| f("netBiosName")) {
                    out.subjects.push(Subject::Host(host.to_ascii_lowercase()));
                }
                if let (Some(host), Some(domain)) = (f("hostName"), f("dnsDomain")) {
                    let fqdn = format!("{host}.{domain}").to_ascii_lowercase();
                    if is_domain(&fqdn) {
                        out.subjects.push(Subject::Host(fqdn));
                    }
                }
            }
            EntityKind::Account => {
                let upn = match (f("accountName"), f("upnSuffix")) {
                    (Some(n), Some(s)) => Some(format!("{n}@{s}")),
                    _ => None,
                };
                if let Some(account) = upn
                    .as_deref()
                    .or_else(|| f("userPrincipalName"))
                    .or_else(|| f("accountName"))
                    .or_else(|| f("name"))
                {
                    out.subjects
                        .push(Subject::Account(account.to_ascii_lowercase()));
                }
            }
            EntityKind::FileHash => {
                if let Some(h) = f("hashValue").and_then(hash_indicator) {
                    out.indicators.push(h);
                }
            }
            EntityKind::File => {
                if let Some(hashes) = self.properties.get("fileHashes").and_then(Value::as_array) {
                    for h in hashes.iter().take(8) {
                        let text = h
                            .pointer("/properties/hashValue")
                            .or_else(|| h.get("hashValue"))
                            .and_then(Value::as_str);
                        if let Some(i) = text.and_then(hash_indicator) {
                            out.indicators.push(i);
                        }
                    }
                }
            }
            EntityKind::Process => {
                if let Some(host) = self
                    .properties
                    .get("host")
                    .and_then(|h| {
                        h.pointer("/properties/hostName")
                            .or_else(|| h.get("hostName"))
                    })
                    .and_then(Value::as_str)
                {
                    out.subjects.push(Subject::Host(host.to_ascii_lowercase()));
                }
                if let Some(h) = self
                    .properties
                    .get("imageFile")
                    .and_then(|i| i.pointer("/properties/fileHashes/0/properties/hashValue"))
                    .and_then(Value::as_str)
                    .and_then(hash_indicator)
                {
                    out.indicators.push(h);
                }
            }
            EntityKind::MailMessage | EntityKind::SubmissionMail => {
                for field in ["sender", "p1Sender", "p2Sender", "senderDetail"] {
                    if let Some(d) = f(field).and_then(domain_of_email) {
                        out.subjects.push(Subject::Domain(d.clone()));
                        out.indicators.push(Indicator::new("domain", d));
                    }
                }
                if let Some(ip) = f("senderIP").and_then(ip_indicator) {
                    out.subjects.push(Subject::Ip(ip.value.clone()));
                    out.indicators.push(ip);
                }
                if let Some(urls) = self.properties.get("urls").and_then(Value::as_array) {
                    for u in urls.iter().filter_map(Value::as_str).take(16) {
                        if u.len() <= MAX_INDICATOR_LEN {
                            url_indicators(u, &mut out);
                        }
                    }
                }
                if let Some(r) = f("recipient") {
                    out.subjects.push(Subject::Account(r.to_ascii_lowercase()));
                }
            }
            EntityKind::Mailbox => {
                if let Some(addr) = f("mailboxPrimaryAddress").or_else(|| f("upn")) {
                    out.subjects
                        .push(Subject::Account(addr.to_ascii_lowercase()));
                }
            }
            EntityKind::Malware => {
                for file in self
                    .properties
                    .get("files")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .take(8)
                {
                    let entity = Entity {
                        kind: "File".into(),
                        properties: file
                            .get("properties")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default(),
                    };
                    out.indicators.extend(entity.observe().indicators);
                }
            }
            EntityKind::CloudApplication
            | EntityKind::AzureResource
            | EntityKind::IoTDevice
            | EntityKind::MailCluster
            | EntityKind::RegistryKey
            | EntityKind::RegistryValue
            | EntityKind::SecurityGroup
            | EntityKind::Other(_) => {}
        }
        out.indicators.sort();
        out.indicators.dedup();
        out.subjects.sort();
        out.subjects.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_kind_is_read_and_unknown_kinds_are_kept() {
        let e = |kind: &str, props: Value| Entity {
            kind: kind.into(),
            properties: props.as_object().unwrap().clone(),
        };
        use serde_json::json;
        let cases = [
            (
                e(
                    "Host",
                    json!({"hostName":"FIN-WS-042","dnsDomain":"corp.example"}),
                ),
                0,
                2,
            ),
            (
                e(
                    "Account",
                    json!({"accountName":"j.doe","upnSuffix":"corp.example"}),
                ),
                0,
                1,
            ),
            (
                e(
                    "DnsResolution",
                    json!({"domainName":"Evil.Example.","ipAddresses":[{"properties":{"address":"203.0.113.9"}}]}),
                ),
                2,
                1,
            ),
            (
                e(
                    "FileHash",
                    json!({"algorithm":"MD5","hashValue":"44D88612FEA8A8F36DE82E1278ABB02F"}),
                ),
                1,
                0,
            ),
            (
                e(
                    "File",
                    json!({"fileName":"x.exe","fileHashes":[{"properties":{"hashValue":"44d88612fea8a8f36de82e1278abb02f"}}]}),
                ),
                1,
                0,
            ),
            (
                e(
                    "Process",
                    json!({"commandLine":"powershell -enc","host":{"properties":{"hostName":"HR-LT-007"}}}),
                ),
                0,
                1,
            ),
            (
                e(
                    "MailMessage",
                    json!({"sender":"a@phish.example","urls":["http://phish.example/x"],"recipient":"b@corp.example"}),
                ),
                2,
                2,
            ),
            (
                e("Mailbox", json!({"mailboxPrimaryAddress":"b@corp.example"})),
                0,
                1,
            ),
            (e("CloudApplication", json!({"appName":"Office 365"})), 0, 0),
            (
                e("AzureResource", json!({"resourceId":"/subscriptions/x"})),
                0,
                0,
            ),
            (e("Url", json!({"url":"http://198.51.100.7/a"})), 2, 1),
            (e("SomethingNew", json!({"friendlyName":"?"})), 0, 0),
        ];
        for (entity, indicators, subjects) in cases {
            let o = entity.observe();
            assert_eq!(
                (o.indicators.len(), o.subjects.len()),
                (indicators, subjects),
                "{}: {o:?}",
                entity.kind
            );
        }
        assert_eq!(
            EntityKind::parse("SomethingNew"),
            EntityKind::Other("SomethingNew".into())
        );
        assert_eq!(EntityKind::parse("mailmessage").as_str(), "MailMessage");
    }

    #[test]
    fn entities_yield_normalised_indicators() {
        let ip: Entity =
            serde_json::from_str(r#"{"kind":"Ip","properties":{"address":" 203.0.113.7 "}}"#)
                .unwrap();
        assert_eq!(ip.indicators()[0].value, "203.0.113.7");
        let bad_ip: Entity =
            serde_json::from_str(r#"{"kind":"Ip","properties":{"address":"999.1.1.1"}}"#).unwrap();
        assert!(bad_ip.indicators().is_empty());
        let url: Entity =
            serde_json::from_str(r#"{"kind":"Url","properties":{"url":"https://Evil.Example/x"}}"#)
                .unwrap();
        let kinds: Vec<_> = url
            .indicators()
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect();
        assert!(kinds.contains(&("domain".into(), "evil.example".into())));
    }
}
