//! What an alert says about the attack: the stage it speaks of, and which of its two hosts it is
//! evidence about. Read from the public taxonomies the sensors use, in this order (the first that
//! speaks decides):
//!
//! 1. Emerging Threats / Snort GPL rule families in the signature name (`ET ATTACK_RESPONSE`,
//!    `ET TROJAN`, `ET EXPLOIT`, `ET SCAN`, `ET POLICY`, …; Proofpoint's published ET category
//!    list);
//! 2. Suricata's classification types (`classification.config`: "A Network Trojan was detected",
//!    "Successful Administrator Privilege Gain", "Web Application Attack", …);
//! 3. the MITRE ATT&CK tactic (Enterprise and ICS tactic names, as Sentinel and Wazuh give them);
//! 4. words in the rule name that name a stage (for sensors that give only a description:
//!    Wazuh, AMiner, custom analytics) — "sudo to ROOT", "changed UID", "web shell", "beacon",
//!    "exfiltration", "brute force", "scan", … A name that says "attempt" or "possible" never
//!    claims more than an attempt.
//!
//! Nothing here weighs an alert by itself: the engine counts a stage only for kinds that are rare
//! in the window (a rule that fires on every host all day is routine, whatever it is called).

use crate::alert::Direction;
use serde::{Deserialize, Serialize};

/// The attack stage an alert speaks of, roughly in kill-chain order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[repr(u8)]
pub enum Stage {
    /// Says nothing about an attack (policy, information, housekeeping).
    #[default]
    None = 0,
    /// Scanning, discovery, information leaks.
    Recon = 1,
    /// An attack that may or may not have worked (exploit attempt, brute force, web attack).
    Attempt = 2,
    /// A hop between internal hosts (lateral movement).
    Lateral = 3,
    /// Code ran on the host (shell, web shell, malicious process, persistence).
    Execution = 4,
    /// Credentials taken.
    Credential = 5,
    /// Privilege gained.
    Privilege = 6,
    /// The host talks to its controller (trojan, C2, backdoor).
    Control = 7,
    /// Data leaves.
    Exfiltration = 8,
    /// Harm done (ransomware, wiping, process control impaired).
    Impact = 9,
}

impl Stage {
    /// Evidence that the host it is about is compromised (what the issue calls compromise or
    /// post-exploitation evidence).
    pub fn is_compromise(self) -> bool {
        self >= Stage::Execution
    }

    /// An attack directed at the host it is about (what a campaign is made of).
    pub fn is_attack(self) -> bool {
        matches!(self, Stage::Recon | Stage::Attempt | Stage::Lateral)
    }

    /// Short name for reasons.
    pub fn name(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Recon => "reconnaissance",
            Stage::Attempt => "attack attempt",
            Stage::Lateral => "lateral movement",
            Stage::Execution => "execution",
            Stage::Credential => "credential access",
            Stage::Privilege => "privilege escalation",
            Stage::Control => "command and control",
            Stage::Exfiltration => "exfiltration",
            Stage::Impact => "impact",
        }
    }

    /// The stage of a bit index (inverse of `self as u8`).
    pub fn from_index(i: u8) -> Stage {
        [
            Stage::None,
            Stage::Recon,
            Stage::Attempt,
            Stage::Lateral,
            Stage::Execution,
            Stage::Credential,
            Stage::Privilege,
            Stage::Control,
            Stage::Exfiltration,
            Stage::Impact,
        ]
        .get(usize::from(i))
        .copied()
        .unwrap_or_default()
    }
}

/// Which host of a network alert the alert is evidence about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subject {
    /// The destination: the target of a request (a probe, an exploit, a hop).
    #[default]
    Destination,
    /// The source: the host whose output or traffic gave it away (an attack response, a beacon,
    /// an exfiltration), or the server answering a request.
    Source,
}

/// What an alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Class {
    /// The stage it speaks of.
    pub stage: Stage,
    /// The host it is about.
    pub subject: Subject,
}

/// Ports of common services: traffic from one of these to a port outside the list is a server
/// answering (a response), when the sensor does not say.
fn is_service_port(port: u16) -> bool {
    port < 1024
        || [
            1433, 1521, 2049, 3306, 3389, 5432, 5900, 5985, 5986, 6379, 8000, 8080, 8443, 8888,
            9200, 27017, 4840, 20000, 44818, 47808, 2404,
        ]
        .contains(&port)
}

/// Whether a network alert is a response, from what the sensor said or from its ports: a
/// service port answering a client's ephemeral one.
pub fn infer_direction(
    given: Option<Direction>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
) -> Direction {
    match (given, src_port, dst_port) {
        (Some(d), _, _) => d,
        (None, Some(s), Some(d)) if is_service_port(s) && !is_service_port(d) => {
            Direction::Response
        }
        _ => Direction::Request,
    }
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

/// The stage named by an ET/GPL rule family in a signature name, and whether the family speaks
/// about the responding host.
fn from_rule_family(name: &str) -> Option<Class> {
    let upper_words: Vec<&str> = name.split_whitespace().take(2).collect();
    let family = match upper_words.as_slice() {
        [vendor, family, ..] if ["ET", "GPL", "ETPRO"].contains(vendor) => *family,
        _ => return None,
    };
    let lower = name.to_ascii_lowercase();
    let about_source = Class {
        stage: Stage::Execution,
        subject: Subject::Source,
    };
    Some(match family {
        "ATTACK_RESPONSE" => Class {
            stage: if contains_any(&lower, &["root", "privilege", "admin"]) {
                Stage::Privilege
            } else if contains_any(&lower, &["passwd", "shadow", "credential", "password"]) {
                Stage::Credential
            } else {
                Stage::Execution
            },
            ..about_source
        },
        "TROJAN" | "MALWARE" | "MOBILE_MALWARE" | "CNC" | "BOTCC" | "WORM" | "COINMINER"
        | "ADWARE_PUP" => Class {
            stage: Stage::Control,
            ..about_source
        },
        "EXPLOIT" | "EXPLOIT_KIT" | "WEB_SERVER" | "WEB_SPECIFIC_APPS" | "SHELLCODE" | "SQL"
        | "DOS" | "VOIP" | "SCADA" | "SCADA_SPECIAL" | "NETBIOS" | "RPC" | "TELNET" | "FTP"
        | "IMAP" | "POP3" | "SMTP" | "SNMP" | "TFTP" | "WEB_CLIENT" | "ACTIVEX" | "PHISHING"
        | "CURRENT_EVENTS" | "ATTACK" => Class {
            stage: Stage::Attempt,
            subject: Subject::Destination,
        },
        "SCAN" => Class {
            stage: Stage::Recon,
            subject: Subject::Destination,
        },
        "POLICY" | "INFO" | "HUNTING" | "DNS" | "CHAT" | "GAMES" | "P2P" | "USER_AGENTS"
        | "TOR" | "DROP" | "CINS" | "COMPROMISED" | "DSHIELD" | "INAPPROPRIATE" | "MISC"
        | "ICMP" | "ICMP_INFO" | "JA3" => Class::default(),
        _ => return None,
    })
}

/// The stage of a Suricata classification type (its description text).
fn from_classtype(category: &str) -> Option<Stage> {
    let c = category.to_ascii_lowercase();
    Some(match c.as_str() {
        "a network trojan was detected"
        | "malware command and control activity detected"
        | "targeted malicious activity was detected"
        | "domain observed used for c2 detected"
        | "crypto currency mining activity detected" => Stage::Control,
        "successful administrator privilege gain" | "successful user privilege gain" => {
            Stage::Privilege
        }
        "successful credential theft detected" => Stage::Credential,
        "executable code was detected" => Stage::Execution,
        "attempted administrator privilege gain"
        | "attempted user privilege gain"
        | "unsuccessful user privilege gain"
        | "web application attack"
        | "attempted denial of service"
        | "detection of a denial of service attack"
        | "denial of service"
        | "misc attack"
        | "exploit kit activity detected"
        | "attempt to login by a default username and password"
        | "access to a potentially vulnerable web application"
        | "possible social engineering attempted"
        | "a client was using an unusual port"
        | "a suspicious string was detected" => Stage::Attempt,
        "detection of a network scan"
        | "attempted information leak"
        | "information leak"
        | "large scale information leak"
        | "decode of an rpc query"
        | "potentially bad traffic"
        | "generic protocol command decode"
        | "device retrieving external ip address detected" => Stage::Recon,
        "misc activity"
        | "not suspicious traffic"
        | "unknown traffic"
        | "potential corporate privacy violation"
        | "generic icmp event"
        | "a suspicious filename was detected"
        | "a tcp connection was detected"
        | "a system call was detected"
        | "a system call was detected in the network traffic"
        | "detection of a non-standard protocol or event" => Stage::None,
        _ => return None,
    })
}

/// The stage of a MITRE ATT&CK tactic name (Enterprise and ICS), spelt with or without spaces.
fn from_tactic(tactic: &str) -> Option<Stage> {
    let t: String = tactic
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match t.as_str() {
        "reconnaissance" | "discovery" | "collection" => Stage::Recon,
        "initialaccess" | "resourcedevelopment" | "preattack" => Stage::Attempt,
        "lateralmovement" => Stage::Lateral,
        "execution" | "persistence" | "defenseevasion" | "evasion" => Stage::Execution,
        "credentialaccess" => Stage::Credential,
        "privilegeescalation" => Stage::Privilege,
        "commandandcontrol" => Stage::Control,
        "exfiltration" => Stage::Exfiltration,
        "impact" | "inhibitresponsefunction" | "impairprocesscontrol" => Stage::Impact,
        _ => return None,
    })
}

/// Words in a rule name that name a stage, strongest first.
const NAME_WORDS: [(Stage, &[&str]); 9] = [
    (
        Stage::Impact,
        &[
            "ransom",
            "wiper",
            "data destruction",
            "defacement",
            "plc stop",
        ],
    ),
    (
        Stage::Exfiltration,
        &[
            "exfiltrat",
            "dns tunnel",
            "data theft",
            "data transfer to external",
        ],
    ),
    (
        Stage::Control,
        &[
            "command and control",
            "c2 ",
            "beacon",
            "backdoor",
            "botnet",
            "trojan",
            "reverse shell",
        ],
    ),
    (
        Stage::Privilege,
        &[
            "privilege escalation",
            "sudo to root",
            "successful sudo",
            "executed sudo",
            "changed uid",
            "setuid",
            "root shell",
            "added to admin",
            "new local admin",
        ],
    ),
    (
        Stage::Credential,
        &[
            "credential dump",
            "password dump",
            "hash dump",
            "mimikatz",
            "lsass",
            "dcsync",
        ],
    ),
    (
        Stage::Execution,
        &[
            "web shell",
            "webshell",
            "shell spawn",
            "code execution",
            "command execution",
            "malicious process",
        ],
    ),
    (
        Stage::Lateral,
        &[
            "lateral movement",
            "psexec",
            "pass the hash",
            "pass-the-hash",
            "remote service creation",
        ],
    ),
    (
        Stage::Attempt,
        &[
            "attempt",
            "exploit",
            "brute force",
            "web attack",
            "injection",
            "password spray",
            "multiple failed",
            "authentication failure",
            "login failed",
        ],
    ),
    (
        Stage::Recon,
        &[
            "scan",
            "enumeration",
            "discovery",
            "reconnaissance",
            "sweep",
            "400 error",
            "probe",
        ],
    ),
];

fn from_name_words(name: &str) -> Option<Stage> {
    let lower = name.to_ascii_lowercase();
    let stage = NAME_WORDS
        .iter()
        .find(|(_, words)| contains_any(&lower, words))
        .map(|(s, _)| *s)?;
    // "Possible …" and "… attempt" claim no more than an attempt.
    if stage.is_compromise() && contains_any(&lower, &["attempt", "possible"]) {
        return Some(Stage::Attempt);
    }
    Some(stage)
}

/// Classifies an alert by its rule name, category and tactic (see the module text).
pub fn classify(name: &str, category: Option<&str>, tactic: Option<&str>) -> Class {
    if let Some(c) = from_rule_family(name) {
        return c;
    }
    let stage = category
        .and_then(from_classtype)
        .or_else(|| tactic.and_then(from_tactic))
        .or_else(|| from_name_words(name))
        .unwrap_or_default();
    let subject = match stage {
        Stage::Control | Stage::Exfiltration => Subject::Source,
        _ => Subject::Destination,
    };
    Class { stage, subject }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, category: Option<&str>, tactic: Option<&str>) -> Stage {
        classify(name, category, tactic).stage
    }

    #[test]
    fn rule_families_decide_first() {
        let c = classify(
            "GPL ATTACK_RESPONSE id check returned root",
            Some("Potentially Bad Traffic"),
            None,
        );
        assert_eq!((c.stage, c.subject), (Stage::Privilege, Subject::Source));
        let c = classify(
            "ET TROJAN Windows dir Microsoft Windows DOS prompt command exit OUTBOUND",
            Some("A Network Trojan was detected"),
            None,
        );
        assert_eq!((c.stage, c.subject), (Stage::Control, Subject::Source));
        assert_eq!(
            stage(
                "ET POLICY curl User-Agent Outbound",
                Some("Attempted Information Leak"),
                None
            ),
            Stage::None
        );
        assert_eq!(
            stage("ET SCAN Possible Nmap User-Agent Observed", None, None),
            Stage::Recon
        );
        assert_eq!(
            stage("ET WEB_SERVER Possible CVE-2014-6271 Attempt", None, None),
            Stage::Attempt
        );
    }

    #[test]
    fn categories_tactics_and_words_follow() {
        assert_eq!(
            stage("SURICATA X", Some("Successful User Privilege Gain"), None),
            Stage::Privilege
        );
        assert_eq!(
            stage("Custom rule", None, Some("Command And Control")),
            Stage::Control
        );
        assert_eq!(
            stage("Wazuh: Successful sudo to ROOT executed.", None, None),
            Stage::Privilege
        );
        assert_eq!(
            stage("Wazuh: User successfully changed UID.", None, None),
            Stage::Privilege
        );
        assert_eq!(
            stage("Wazuh: Web server 400 error code.", None, None),
            Stage::Recon
        );
        assert_eq!(
            stage("Possible web shell upload", None, None),
            Stage::Attempt,
            "a possible compromise is an attempt"
        );
        assert_eq!(
            stage("Dovecot Authentication Success.", None, None),
            Stage::None
        );
    }

    #[test]
    fn a_service_port_answering_an_ephemeral_port_is_a_response() {
        assert_eq!(
            infer_direction(None, Some(80), Some(51234)),
            Direction::Response
        );
        assert_eq!(
            infer_direction(None, Some(51234), Some(80)),
            Direction::Request
        );
        assert_eq!(
            infer_direction(Some(Direction::Request), Some(80), Some(51234)),
            Direction::Request
        );
        assert_eq!(infer_direction(None, None, Some(80)), Direction::Request);
    }
}
