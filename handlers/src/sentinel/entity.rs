//! Entities of an incident (`Incidents_ListEntities`) and their kinds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An entity from `Incidents_ListEntities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// ARM id (`…/providers/Microsoft.SecurityInsights/Entities/{guid}`); other entities link
    /// to this one by it or by [`Entity::name`] (`hostEntityId`, `fileHashEntityIds`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Entity name (a GUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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

/// Longest indicator value kept; longer entity values are skipped as suspicious input.
pub const MAX_INDICATOR_LEN: usize = 2048;

impl Entity {
    /// An entity of `kind` with `properties` (a JSON object; anything else gives none), and
    /// no id.
    pub fn new(kind: &str, properties: Value) -> Self {
        Self {
            id: None,
            name: None,
            kind: kind.into(),
            properties: match properties {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        }
    }

    /// The entity's kind.
    pub fn entity_kind(&self) -> EntityKind {
        EntityKind::parse(&self.kind)
    }

    /// A property's trimmed text, when present, not empty and at most [`MAX_INDICATOR_LEN`].
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_INDICATOR_LEN)
    }

    /// The strings of an array property (at most `max`, each within [`MAX_INDICATOR_LEN`]).
    pub(super) fn strings(&self, name: &str, max: usize) -> Vec<String> {
        self.properties
            .get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_INDICATOR_LEN)
            .take(max)
            .map(str::to_string)
            .collect()
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
            "p1Sender",
            "sender",
            "malwareName",
            "appName",
            "resourceId",
            "name",
        ]
        .iter()
        .find_map(|f| self.field(f));
        main.unwrap_or("(unnamed)").chars().take(200).collect()
    }
}
