//! What triage can use from an entity: threat-intelligence indicators, workspace subjects, and
//! free text to scan for more indicators. Field names are those of the SecurityInsights entity
//! schemas (`common/EntityTypes.json`, api-version 2025-09-01); linked entities come as ids and
//! are resolved through [`Links`].

use super::entity::{Entity, EntityKind};
use super::links::Links;
use crate::ioc;
use serde::{Deserialize, Serialize};

/// A host as the workspace's tables name it: Defender's `DeviceName` and `SecurityEvent`'s
/// `Computer` hold the FQDN, older sources the short name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRef {
    /// Host name without its domain (lower case).
    pub name: String,
    /// Fully qualified name, when the entity gives the domain (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
}

impl HostRef {
    /// The FQDN, else the name.
    pub fn label(&self) -> &str {
        self.fqdn.as_deref().unwrap_or(&self.name)
    }
}

/// An account by the identifiers the workspace's tables can match exactly: a UPN
/// (`SigninLogs.UserPrincipalName`), an Azure AD object id (`SigninLogs.UserId`), a SID
/// (`SecurityEvent.TargetUserSid`), or a name with its NetBIOS domain together
/// (`TargetUserName` and `TargetDomainName`). A bare name is never asked about: it matches
/// every `administrator` in the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// User principal name (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Azure AD object id (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Security identifier (upper case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Account name, only together with `domain` (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// NetBIOS domain of `name` (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl AccountRef {
    /// A short label for findings: the UPN, else `domain\name`, else the SID or object id.
    pub fn label(&self) -> String {
        if let Some(upn) = &self.upn {
            return upn.clone();
        }
        if let (Some(n), Some(d)) = (&self.name, &self.domain) {
            return format!("{d}\\{n}");
        }
        self.sid
            .clone()
            .or_else(|| self.object_id.clone())
            .unwrap_or_else(|| "(account)".into())
    }

    fn is_askable(&self) -> bool {
        self.upn.is_some()
            || self.object_id.is_some()
            || self.sid.is_some()
            || (self.name.is_some() && self.domain.is_some())
    }
}

/// Something in the workspace an entity names, that the workspace can be asked about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum Subject {
    /// A host.
    Host(HostRef),
    /// An account.
    Account(AccountRef),
    /// An IP address.
    Ip(String),
    /// A domain (lower case).
    Domain(String),
}

impl Subject {
    /// The subject in words (`host vm1.contoso.com`).
    pub fn label(&self) -> String {
        match self {
            Subject::Host(h) => format!("host {}", h.label()),
            Subject::Account(a) => format!("account {}", a.label()),
            Subject::Ip(ip) => format!("ip {ip}"),
            Subject::Domain(d) => format!("domain {d}"),
        }
    }
}

/// An indicator for threat-intelligence lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Indicator {
    /// ipv4, ipv6, url, domain, filehash, email.
    pub kind: String,
    /// Canonical value ([`crate::ioc::normalise`]).
    pub value: String,
}

/// What triage can use from one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Indicators for threat intelligence.
    pub indicators: Vec<Indicator>,
    /// Subjects to ask the workspace about.
    pub subjects: Vec<Subject>,
    /// Values that are not read, and why (an address in octal, an account with no usable
    /// identifier, …).
    pub refused: Vec<String>,
    /// Free text to scan for more indicators: `(where, text)`.
    pub texts: Vec<(String, String)>,
}

impl Observed {
    fn add(&mut self, kind: &str, raw: &str, what: &str) -> Option<Indicator> {
        match ioc::normalise(kind, raw) {
            Ok(i) => {
                self.indicators.push(i.clone());
                Some(i)
            }
            Err(why) => {
                self.refused.push(format!("{what}: {why}"));
                None
            }
        }
    }

    fn ip(&mut self, raw: &str, what: &str) {
        if let Some(i) = self.add("ip", raw, what) {
            self.subjects.push(Subject::Ip(i.value));
        }
    }

    fn domain(&mut self, raw: &str, what: &str) {
        if let Some(i) = self.add("domain", raw, what) {
            self.subjects.push(Subject::Domain(i.value));
        }
    }

    fn email(&mut self, raw: &str, what: &str) {
        if let Some(e) = self.add("email", raw, what) {
            if let Some((_, d)) = e.value.rsplit_once('@') {
                let d = d.to_string();
                self.domain(&d, what);
            }
        }
    }

    fn url(&mut self, raw: &str, what: &str) {
        let Some(u) = self.add("url", raw, what) else {
            return;
        };
        match url::Url::parse(&u.value)
            .ok()
            .and_then(|p| p.host().map(|h| h.to_owned()))
        {
            Some(url::Host::Domain(d)) if ioc::is_dns_name(&d) => self.domain(&d, what),
            Some(url::Host::Ipv4(v4)) => self.ip(&v4.to_string(), what),
            Some(url::Host::Ipv6(v6)) => self.ip(&v6.to_string(), what),
            _ => {}
        }
        self.texts.push((
            format!("{what} {}", socwire_common::text::for_log(&u.value, 80)),
            u.value,
        ));
    }
}

/// The host a Host entity names.
fn host_ref(e: &Entity) -> Option<HostRef> {
    let f = |n: &str| e.field(n).map(str::to_ascii_lowercase);
    let host = f("hostName").or_else(|| f("netBiosName"))?;
    let (name, fqdn) = match host.split_once('.') {
        // Some sources put the FQDN in hostName.
        Some((short, _)) => (short.to_string(), Some(host.clone())),
        None => {
            let fqdn = f("dnsDomain").map(|d| format!("{host}.{}", d.trim_end_matches('.')));
            (host, fqdn)
        }
    };
    let fqdn = fqdn.filter(|q| ioc::is_dns_name(q) || q.split('.').all(|l| !l.is_empty()));
    Some(HostRef { name, fqdn })
}

/// The account an Account entity names.
fn account_ref(e: &Entity) -> AccountRef {
    let f = |n: &str| e.field(n).map(str::to_ascii_lowercase);
    let name = f("accountName");
    AccountRef {
        upn: match (&name, f("upnSuffix")) {
            (Some(n), Some(s)) => Some(format!("{n}@{s}")),
            _ => None,
        }
        .or_else(|| f("userPrincipalName")),
        object_id: f("aadUserId"),
        sid: e.field("sid").map(str::to_ascii_uppercase),
        domain: name.as_ref().and(f("ntDomain")),
        name: name.filter(|_| e.field("ntDomain").is_some()),
    }
}

/// What each entity kind with more than one field to read contributes.
impl Observed {
    /// An account the workspace can be asked about, or why it cannot.
    fn account(&mut self, e: &Entity, label: &str) {
        let a = account_ref(e);
        if a.is_askable() {
            self.subjects.push(Subject::Account(a));
        } else {
            self.refused.push(format!(
                "account {label}: no UPN, Azure AD object id, SID or domain; the workspace is not asked about a bare name"
            ));
        }
    }

    /// A mailbox's owner, by address or directory object id.
    fn mailbox(&mut self, e: &Entity) {
        let a = AccountRef {
            upn: e
                .field("upn")
                .filter(|u| u.contains('@'))
                .or_else(|| e.field("mailboxPrimaryAddress").filter(|u| u.contains('@')))
                .map(str::to_ascii_lowercase),
            object_id: e
                .field("externalDirectoryObjectId")
                .map(str::to_ascii_lowercase),
            ..Default::default()
        };
        if a.is_askable() {
            self.subjects.push(Subject::Account(a));
        }
    }

    /// A process's command line, and the host it ran on (through its link).
    fn process(&mut self, e: &Entity, links: &Links, label: &str) {
        if let Some(c) = e.field("commandLine") {
            self.texts
                .push((format!("command line of process {label}"), c.to_string()));
        }
        if let Some(me) = links.entities().iter().position(|x| std::ptr::eq(x, e)) {
            for host in links.linked(me, "hostEntityId") {
                self.subjects.extend(host_ref(host).map(Subject::Host));
            }
        }
    }

    /// A mail message's senders, sender domains, sender IP, URLs and recipient.
    fn mail_message(&mut self, e: &Entity) {
        for field in ["p1Sender", "p2Sender"] {
            if let Some(s) = e.field(field) {
                if s.contains('@') {
                    self.email(s, field);
                }
            }
        }
        for field in ["p1SenderDomain", "p2SenderDomain"] {
            if let Some(d) = e.field(field).filter(|d| ioc::is_dns_name(d)) {
                self.domain(d, field);
            }
        }
        if let Some(ip) = e.field("senderIP") {
            self.ip(ip, "sender IP");
        }
        for u in e.strings("urls", 16) {
            self.url(&u, "mail URL");
        }
        if let Some(r) = e.field("recipient").filter(|r| r.contains('@')) {
            self.subjects.push(Subject::Account(AccountRef {
                upn: Some(r.to_ascii_lowercase()),
                ..Default::default()
            }));
        }
    }

    /// A user-submitted mail's sender, sender IP and recipient.
    fn submission_mail(&mut self, e: &Entity) {
        match e.field("sender") {
            Some(s) if s.contains('@') => self.email(s, "sender"),
            Some(s) => self.refused.push(format!(
                "submission mail sender {}: not an e-mail address",
                socwire_common::text::for_log(s, 80)
            )),
            None => {}
        }
        if let Some(ip) = e.field("senderIp") {
            self.ip(ip, "sender IP");
        }
        if let Some(r) = e.field("recipient").filter(|r| r.contains('@')) {
            self.subjects.push(Subject::Account(AccountRef {
                upn: Some(r.to_ascii_lowercase()),
                ..Default::default()
            }));
        }
    }
}

impl Entity {
    /// The indicators this entity carries (without resolving links).
    pub fn indicators(&self) -> Vec<Indicator> {
        let one = [self.clone()];
        self.observe(&Links::new(&one)).indicators
    }

    /// Indicators, workspace subjects and free text of this entity, by kind; `links` holds
    /// the incident's entities, for the ones this one links to. Unknown kinds yield nothing
    /// (they are still listed in the report).
    pub fn observe(&self, links: &Links) -> Observed {
        let mut out = Observed::default();
        let f = |n: &str| self.field(n);
        let label = self.label();
        match self.entity_kind() {
            EntityKind::Ip => {
                if let Some(a) = f("address") {
                    out.ip(a, "ip address");
                }
            }
            EntityKind::Url => {
                if let Some(u) = f("url") {
                    out.url(u, "url");
                }
            }
            EntityKind::DnsResolution => {
                if let Some(d) = f("domainName") {
                    out.domain(d, "dns resolution");
                }
            }
            EntityKind::Host => match host_ref(self) {
                Some(h) => out.subjects.push(Subject::Host(h)),
                None => out
                    .refused
                    .push(format!("host {label}: no hostName or netBiosName")),
            },
            EntityKind::Account => out.account(self, &label),
            EntityKind::Mailbox => out.mailbox(self),
            EntityKind::FileHash => {
                if let Some(h) = f("hashValue") {
                    out.add("filehash", h, "file hash");
                }
            }
            EntityKind::Process => out.process(self, links, &label),
            EntityKind::MailMessage => out.mail_message(self),
            EntityKind::SubmissionMail => out.submission_mail(self),
            EntityKind::File
            | EntityKind::Malware
            | EntityKind::CloudApplication
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

    /// Entities as `Incidents_ListEntities` and `Entities_Get` return them, from the
    /// SecurityInsights REST specification's examples (see the fixture's `_source` fields).
    fn fixture(name: &str) -> Vec<Entity> {
        let text = match name {
            "examples" => include_str!("../../tests/fixtures/sentinel-entities.json"),
            _ => include_str!("../../tests/fixtures/sentinel-entities-linked.json"),
        };
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        serde_json::from_value(v["entities"].clone()).unwrap()
    }

    fn of<'a>(entities: &'a [Entity], kind: &str) -> &'a Entity {
        entities.iter().find(|e| e.kind == kind).unwrap()
    }

    #[test]
    fn each_entity_kind_is_read_under_its_rest_field_names() {
        let all = fixture("examples");
        let links = Links::new(&all);
        let o = |kind: &str| of(&all, kind).observe(&links);
        let values = |o: &Observed| -> Vec<(String, String)> {
            o.indicators
                .iter()
                .map(|i| (i.kind.clone(), i.value.clone()))
                .collect()
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());

        // SubmissionMail's field is `senderIp`; MailMessage's is `senderIP`.
        let sub = o("SubmissionMail");
        assert!(values(&sub).contains(&pair("ipv4", "1.4.35.34")), "{sub:?}");
        assert!(sub.refused[0].contains("not an e-mail address"), "{sub:?}");
        let mail = o("MailMessage");
        for want in [
            pair("ipv4", "1.23.34.43"),
            pair("email", "email@fake.com"),
            pair("domain", "fake.com"),
            pair("url", "http://moqbrarcwmnk.banxhdcojlg.biz"),
            pair("domain", "moqbrarcwmnk.banxhdcojlg.biz"),
        ] {
            assert!(values(&mail).contains(&want), "{want:?} not in {mail:?}");
        }
        assert!(values(&o("FileHash")).contains(&pair(
            "filehash",
            "e923636f1093c414aab39f846e9d7a372beefa7b628b28179197e539c56aa0f0"
        )));
        assert!(values(&o("Url")).contains(&pair("domain", "bing.com")));
        assert!(values(&o("Ip")).contains(&pair("ipv4", "10.3.2.8")));
        assert!(
            values(&o("DnsResolution")).is_empty(),
            "`domain` is not a DNS name"
        );

        // Hosts with their FQDN; accounts by their identifiers, never by a bare name.
        assert_eq!(
            o("Host").subjects,
            [Subject::Host(HostRef {
                name: "vm1".into(),
                fqdn: Some("vm1.contoso".into())
            })]
        );
        let account = match &o("Account").subjects[..] {
            [Subject::Account(a)] => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(account.upn.as_deref(), Some("administrator@contoso"));
        assert_eq!(
            account.object_id.as_deref(),
            Some("f7033626-2572-46b1-bba0-06646f4f95b3")
        );
        assert_eq!(account.sid.as_deref(), Some("S-1-5-18"));
        assert_eq!(
            (account.name.as_deref(), account.domain.as_deref()),
            (Some("administrator"), Some("domain"))
        );
        // The 2025-09-01 GetAllIncidentEntities example: a name and its NetBIOS domain, no
        // UPN suffix — asked by name and domain together, never as a UPN.
        let listed = Entity::new(
            "Account",
            serde_json::json!({"friendlyName": "administrator", "accountName": "administrator", "ntDomain": "domain"}),
        );
        assert_eq!(
            listed.observe(&links).subjects,
            [Subject::Account(AccountRef {
                name: Some("administrator".into()),
                domain: Some("domain".into()),
                ..Default::default()
            })]
        );
        let bare = Entity::new(
            "Account",
            serde_json::json!({"accountName": "administrator"}),
        );
        let bare = bare.observe(&links);
        assert!(
            bare.subjects.is_empty() && bare.refused[0].contains("bare name"),
            "{bare:?}"
        );
        let mailbox = o("Mailbox");
        assert!(
            matches!(&mailbox.subjects[..], [Subject::Account(a)] if a.object_id.as_deref() == Some("18cc8fdc-e169-4451-983a-bd027db286eb")),
            "{mailbox:?}"
        );
        // The process's command line is scanned; its image file is a link, here to an entity
        // the example does not include.
        let process = o("Process");
        assert_eq!(process.texts.len(), 1);
        let (_, issues) = links.relations();
        assert!(
            issues
                .iter()
                .any(|i| i.contains("bba7b47b-c1c1-4021-b568-5b07b9292f5e")),
            "{issues:?}"
        );
        // Kinds with nothing to look up are still read without failing.
        for kind in [
            "CloudApplication",
            "AzureResource",
            "IoTDevice",
            "Malware",
            "File",
            "RegistryValue",
            "SecurityGroup",
        ] {
            let e = of(&all, kind).observe(&links);
            assert!(e.indicators.is_empty(), "{kind}: {e:?}");
        }
    }

    #[test]
    fn linked_entities_resolve_within_the_incident_and_cycles_are_named() {
        let all = fixture("linked");
        let links = Links::new(&all);
        let (relations, issues) = links.relations();
        let named: Vec<(String, &str, String)> = relations
            .iter()
            .map(|r| (all[r.from].label(), r.link.as_str(), all[r.to].label()))
            .collect();
        for want in [
            ("cmd.exe", "image file", "cmd.exe"),
            ("cmd.exe", "host", "vm1"),
            ("cmd.exe", "account", "administrator"),
            ("Win32/Toga!rfn", "file", "cmd.exe"),
        ] {
            assert!(
                named
                    .iter()
                    .any(|(a, l, b)| (a.as_str(), *l, b.as_str()) == want),
                "{want:?} not in {named:?}"
            );
        }
        assert!(
            named
                .iter()
                .any(|(a, l, b)| a == "cmd.exe" && *l == "file hash" && b.starts_with("E923636F")),
            "{named:?}"
        );
        assert!(issues.iter().any(|i| i.contains("cycle")), "{issues:?}");
        assert!(
            issues
                .iter()
                .any(|i| i.contains("not among the incident's entities")),
            "{issues:?}"
        );
        // Resolution accepts the full ARM id as well as the name.
        assert!(links.resolve("/subscriptions/d0cfe6b2-9ac0-4464-9919-dccaee2e48c0/resourceGroups/myRg/providers/Microsoft.OperationalInsights/workspaces/myWorkspace/providers/Microsoft.SecurityInsights/entities/fed9fe89-dce8-40f2-bf44-70f23fe93b3c").is_some());
    }

    #[test]
    fn unknown_kinds_are_kept_and_values_are_normalised() {
        assert_eq!(
            EntityKind::parse("SomethingNew"),
            EntityKind::Other("SomethingNew".into())
        );
        assert_eq!(EntityKind::parse("mailmessage").as_str(), "MailMessage");
        let ip = Entity::new("Ip", serde_json::json!({"address": " 203.0.113.7 "}));
        assert_eq!(ip.indicators()[0].value, "203.0.113.7");
        let octal = Entity::new("Ip", serde_json::json!({"address": "0177.0.0.1"}));
        let o = octal.observe(&Links::new(std::slice::from_ref(&octal)));
        assert!(
            o.indicators.is_empty() && o.refused[0].contains("127.0.0.1"),
            "{o:?}"
        );
        let url = Entity::new(
            "Url",
            serde_json::json!({"url": "hxxps://Evil[.]Example[.]com/x"}),
        );
        let kinds: Vec<_> = url
            .indicators()
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect();
        assert!(
            kinds.contains(&("domain".into(), "evil.example.com".into())),
            "{kinds:?}"
        );
    }
}
