//! Sentinel incident model: the subset of the Microsoft.SecurityInsights REST shapes
//! (api-version 2025-09-01, SENTINEL.md §1) that triage reads and writes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Longest incident ARM id accepted; real ids are well under 400 characters.
pub const MAX_INCIDENT_ID_LEN: usize = 512;

/// Incident severity as Sentinel spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Lowest.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// Highest.
    High,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        };
        f.write_str(s)
    }
}

/// A validated incident ARM id:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{ws}/providers/Microsoft.SecurityInsights/incidents/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId {
    arm_id: String,
    workspace_path: String,
    name: String,
    /// Subscription, resource group, workspace, incident name: each checked by
    /// [`is_safe_segment`].
    segments: [String; 4],
}

/// Why an incident id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentIdError {
    /// Empty after trimming.
    #[error("incident id is empty")]
    Empty,
    /// Over [`MAX_INCIDENT_ID_LEN`].
    #[error("incident id is {0} bytes, over the {MAX_INCIDENT_ID_LEN}-byte limit")]
    TooLong(usize),
    /// Not of the ARM id shape.
    #[error("not a Sentinel incident ARM id (/subscriptions/…/workspaces/…/providers/Microsoft.SecurityInsights/incidents/…)")]
    Shape,
    /// A segment holds characters outside the ARM name alphabet.
    #[error("incident id segment has characters outside [A-Za-z0-9._()-]")]
    Characters,
}

/// The Sentinel workspace an incident GUID belongs to (app settings
/// `SOCWIRE_SENTINEL_SUBSCRIPTION_ID`, `SOCWIRE_SENTINEL_RESOURCE_GROUP`, `SOCWIRE_SENTINEL_WORKSPACE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRef {
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Log Analytics workspace name.
    pub workspace: String,
}

impl WorkspaceRef {
    /// `/subscriptions/…/workspaces/{ws}` of this workspace, validated as an incident id is.
    pub fn incident(&self, guid: &str) -> Result<IncidentId, IncidentIdError> {
        IncidentId::parse(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.OperationalInsights/workspaces/{}/providers/Microsoft.SecurityInsights/incidents/{}",
            self.subscription, self.resource_group, self.workspace, guid.trim()
        ))
    }
}

/// True for a name segment of an ARM id that is safe to put in a URL path: the ARM name
/// alphabet, and never `.` or `..` (which a URL resolver would turn into a different path).
/// `%` is outside the alphabet, so percent-encoded separators (`%2F`, `%2E`, `%5C`) never pass.
pub fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 256
        && !segment.chars().all(|c| c == '.')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._()-".contains(c))
}

impl IncidentId {
    /// Parses and validates an ARM id; segment names are matched case-insensitively, as ARM does.
    pub fn parse(text: &str) -> Result<Self, IncidentIdError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IncidentIdError::Empty);
        }
        if text.len() > MAX_INCIDENT_ID_LEN {
            return Err(IncidentIdError::TooLong(text.len()));
        }
        if text.contains('%') || text.contains('\\') || text.contains('?') || text.contains('#') {
            return Err(IncidentIdError::Characters);
        }
        let parts: Vec<&str> = text.trim_matches('/').split('/').collect();
        let expected = [
            (0, "subscriptions"),
            (2, "resourceGroups"),
            (4, "providers"),
            (5, "Microsoft.OperationalInsights"),
            (6, "workspaces"),
            (8, "providers"),
            (9, "Microsoft.SecurityInsights"),
            (10, "incidents"),
        ];
        if parts
            .iter()
            .any(|p| p.chars().all(|c| c == '.') && !p.is_empty())
        {
            return Err(IncidentIdError::Characters);
        }
        if parts.len() != 12
            || !text.starts_with('/')
            || expected
                .iter()
                .any(|(i, word)| !parts[*i].eq_ignore_ascii_case(word))
        {
            return Err(IncidentIdError::Shape);
        }
        if [1, 3, 7, 11].iter().any(|&i| !is_safe_segment(parts[i])) {
            return Err(IncidentIdError::Characters);
        }
        let segments = [parts[1], parts[3], parts[7], parts[11]].map(str::to_string);
        let name = segments[3].clone();
        let workspace_path = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.OperationalInsights/workspaces/{}",
            segments[0], segments[1], segments[2]
        );
        Ok(Self {
            arm_id: format!(
                "{workspace_path}/providers/Microsoft.SecurityInsights/incidents/{name}"
            ),
            workspace_path,
            name,
            segments,
        })
    }

    /// Parses an incident ARM id, or an incident GUID (name) when a workspace is configured.
    pub fn parse_or_guid(
        text: &str,
        workspace: Option<&WorkspaceRef>,
    ) -> Result<Self, IncidentIdError> {
        let t = text.trim();
        match workspace {
            Some(ws) if !t.starts_with('/') && uuid::Uuid::parse_str(t).is_ok() => ws.incident(t),
            _ => Self::parse(t),
        }
    }

    /// The canonical ARM id (segment names normalised to their documented case).
    pub fn arm_id(&self) -> &str {
        &self.arm_id
    }

    /// The validated path segments of the incident, in order, for building URLs segment by
    /// segment (never by joining strings and letting a resolver interpret them).
    pub fn path_segments(&self) -> [&str; 12] {
        [
            "subscriptions",
            &self.segments[0],
            "resourceGroups",
            &self.segments[1],
            "providers",
            "Microsoft.OperationalInsights",
            "workspaces",
            &self.segments[2],
            "providers",
            "Microsoft.SecurityInsights",
            "incidents",
            &self.segments[3],
        ]
    }

    /// The validated path segments of the workspace's Sentinel provider
    /// (`…/providers/Microsoft.SecurityInsights`).
    pub fn provider_segments(&self) -> [&str; 10] {
        let all = self.path_segments();
        [
            all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7], all[8], all[9],
        ]
    }

    /// The incident name (a GUID).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/subscriptions/…/workspaces/{ws}`.
    pub fn workspace_path(&self) -> &str {
        &self.workspace_path
    }

    /// A stable lower-case key for ledgers and de-duplication.
    pub fn key(&self) -> String {
        self.arm_id.to_ascii_lowercase()
    }
}

impl TryFrom<String> for IncidentId {
    type Error = IncidentIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IncidentId> for String {
    fn from(value: IncidentId) -> Self {
        value.arm_id
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arm_id)
    }
}

/// An incident resource as returned by `Incidents_Get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// ARM id.
    pub id: String,
    /// Incident name (GUID).
    pub name: String,
    /// Concurrency token, sent back in the PUT body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Incident properties.
    pub properties: IncidentProperties,
}

/// The incident properties triage uses; everything else is kept in `other` so a PUT does not
/// drop fields it did not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentProperties {
    /// Title (required by PUT).
    pub title: String,
    /// Severity (required by PUT).
    pub severity: Severity,
    /// Status: New, Active or Closed (required by PUT).
    pub status: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Incident number shown in the portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_number: Option<i64>,
    /// Every other property, passed through unchanged.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An entity from `Incidents_ListEntities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Entity kind: Ip, Url, Host, Account, FileHash, DnsResolution, …
    pub kind: String,
    /// Entity properties (address, url, hostName, hashValue, friendlyName, …).
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// The entity kinds Sentinel returns (`EntityKindEnum` in the SecurityInsights spec), and
/// `Other` for any kind this version does not know: kept, listed, never a failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// `Account`.
    Account,
    /// `AzureResource`.
    AzureResource,
    /// `CloudApplication`.
    CloudApplication,
    /// `DnsResolution`.
    DnsResolution,
    /// `File`.
    File,
    /// `FileHash`.
    FileHash,
    /// `Host`.
    Host,
    /// `IoTDevice`.
    IoTDevice,
    /// `Ip`.
    Ip,
    /// `Mailbox`.
    Mailbox,
    /// `MailCluster`.
    MailCluster,
    /// `MailMessage`.
    MailMessage,
    /// `Malware`.
    Malware,
    /// `Process`.
    Process,
    /// `RegistryKey`.
    RegistryKey,
    /// `RegistryValue`.
    RegistryValue,
    /// `SecurityGroup`.
    SecurityGroup,
    /// `SubmissionMail`.
    SubmissionMail,
    /// `Url`.
    Url,
    /// Any other kind, as Sentinel spelled it (bounded).
    Other(String),
}

impl EntityKind {
    /// The kind named by `text`, case-insensitively.
    pub fn parse(text: &str) -> Self {
        use EntityKind::*;
        match text.to_ascii_lowercase().as_str() {
            "account" => Account,
            "azureresource" => AzureResource,
            "cloudapplication" => CloudApplication,
            "dnsresolution" | "dns" | "domain" => DnsResolution,
            "file" => File,
            "filehash" => FileHash,
            "host" => Host,
            "iotdevice" => IoTDevice,
            "ip" => Ip,
            "mailbox" => Mailbox,
            "mailcluster" => MailCluster,
            "mailmessage" => MailMessage,
            "malware" => Malware,
            "process" => Process,
            "registrykey" => RegistryKey,
            "registryvalue" => RegistryValue,
            "securitygroup" => SecurityGroup,
            "submissionmail" => SubmissionMail,
            "url" => Url,
            _ => Other(text.chars().take(64).collect()),
        }
    }

    /// The kind as Sentinel spells it.
    pub fn as_str(&self) -> &str {
        use EntityKind::*;
        match self {
            Account => "Account",
            AzureResource => "AzureResource",
            CloudApplication => "CloudApplication",
            DnsResolution => "DnsResolution",
            File => "File",
            FileHash => "FileHash",
            Host => "Host",
            IoTDevice => "IoTDevice",
            Ip => "Ip",
            Mailbox => "Mailbox",
            MailCluster => "MailCluster",
            MailMessage => "MailMessage",
            Malware => "Malware",
            Process => "Process",
            RegistryKey => "RegistryKey",
            RegistryValue => "RegistryValue",
            SecurityGroup => "SecurityGroup",
            SubmissionMail => "SubmissionMail",
            Url => "Url",
            Other(k) => k,
        }
    }
}

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

/// Longest indicator value kept; longer entity values are skipped as suspicious input.
pub const MAX_INDICATOR_LEN: usize = 2048;

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
    /// The entity's kind.
    pub fn entity_kind(&self) -> EntityKind {
        EntityKind::parse(&self.kind)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_INDICATOR_LEN)
    }

    /// A short label for people: `friendlyName`, else the kind's main field (not escaped:
    /// callers escape for their medium).
    pub fn label(&self) -> String {
        let main = [
            "friendlyName",
            "address",
            "url",
            "domainName",
            "hostName",
            "accountName",
            "hashValue",
            "commandLine",
            "fileName",
            "mailboxPrimaryAddress",
            "sender",
            "appName",
            "resourceId",
            "name",
        ]
        .iter()
        .find_map(|f| self.field(f));
        main.unwrap_or("(unnamed)").chars().take(200).collect()
    }

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

    const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/soc-rg/providers/Microsoft.OperationalInsights/workspaces/soc-ws/providers/Microsoft.SecurityInsights/Incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

    #[test]
    fn parses_arm_id_case_insensitively_and_normalises() {
        let id = IncidentId::parse(ID).unwrap();
        assert_eq!(id.name(), "73e01a99-5cd7-4139-a149-9f2736ff2ab5");
        assert!(id.arm_id().contains("/incidents/"));
        assert_eq!(
            IncidentId::parse(&ID.to_lowercase()).unwrap().key(),
            id.key()
        );
    }

    #[test]
    fn rejects_bad_ids_with_reasons() {
        assert_eq!(IncidentId::parse("  "), Err(IncidentIdError::Empty));
        assert_eq!(
            IncidentId::parse("/subscriptions/x"),
            Err(IncidentIdError::Shape)
        );
        let injected = ID.replace("soc-ws", "ws' or 1==1");
        assert_eq!(
            IncidentId::parse(&injected),
            Err(IncidentIdError::Characters)
        );
        let long = format!("{ID}{}", "a".repeat(600));
        assert!(matches!(
            IncidentId::parse(&long),
            Err(IncidentIdError::TooLong(_))
        ));
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for bad in [
            ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", ".."),
            ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", "."),
            ID.replace("soc-ws", ".."),
            ID.replace("soc-rg", "..."),
            ID.replace("73e01a99-5cd7", "..%2Fcomments%2Fx"),
            ID.replace("73e01a99-5cd7", "%2E%2E"),
            ID.replace("73e01a99-5cd7", "a%5Cb"),
            ID.replace("73e01a99-5cd7", "a\\b"),
            format!("{ID}/../../x"),
            format!("{ID}?x=1"),
        ] {
            assert!(IncidentId::parse(&bad).is_err(), "{bad}");
        }
        let id = IncidentId::parse(ID).unwrap();
        assert_eq!(id.path_segments()[11], id.name());
        assert_eq!(
            id.path_segments().join("/"),
            id.arm_id().trim_start_matches('/')
        );
    }

    #[test]
    fn a_guid_with_workspace_settings_is_an_incident_id() {
        let ws = WorkspaceRef {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            resource_group: "soc-rg".into(),
            workspace: "soc-ws".into(),
        };
        let id =
            IncidentId::parse_or_guid("73e01a99-5cd7-4139-a149-9f2736ff2ab5", Some(&ws)).unwrap();
        assert_eq!(id.key(), IncidentId::parse(ID).unwrap().key());
        assert!(IncidentId::parse_or_guid("73e01a99-5cd7-4139-a149-9f2736ff2ab5", None).is_err());
        assert!(IncidentId::parse_or_guid("../x", Some(&ws)).is_err());
    }

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
