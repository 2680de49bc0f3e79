//! Rendering the workspace's typed [`Question`]s as KQL for the Log Analytics query API. Every
//! value that comes from an incident is written as a KQL string literal by [`kql_string`], so
//! no input can change the shape of a query; the tables, columns and operators are fixed here.

use crate::ports::{Question, TiTable};
use crate::sentinel::HostRef;

/// Most rows any question asks for.
pub const MAX_ROWS: usize = 50;

/// `value` as a KQL double-quoted string literal: `\` and `"` escaped, control characters
/// written as escapes (`\n`, `\r`, `\t`, `\uXXXX`). Inside a literal, `|`, `;`, `'` and
/// comment markers are plain characters.
pub fn kql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A KQL condition matching `column` to a host as tables store it: the FQDN, the short name,
/// or any FQDN that starts with the short name (Defender's `DeviceName` and `SecurityEvent`'s
/// `Computer` hold FQDNs; a Host entity often has no `dnsDomain`).
fn host_match(column: &str, host: &HostRef) -> String {
    let mut terms = Vec::new();
    if let Some(fqdn) = &host.fqdn {
        terms.push(format!("{column} =~ {}", kql_string(fqdn)));
    }
    terms.push(format!("{column} =~ {}", kql_string(&host.name)));
    terms.push(format!(
        "{column} startswith {}",
        kql_string(&format!("{}.", host.name))
    ));
    format!("({})", terms.join(" or "))
}

/// `union isfuzzy=true` of `parts` (a missing table is skipped, with a partial-error
/// warning), or the one part alone.
fn union(parts: Vec<String>) -> String {
    match parts.len() {
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!(
            "union isfuzzy=true\n{}",
            parts
                .iter()
                .map(|p| format!(" ({p})"))
                .collect::<Vec<_>>()
                .join(",\n")
        ),
    }
}

/// The condition on `ThreatIntelIndicators` rows for an indicator of `kind`.
fn observable_match(kind: &str, v: &str) -> String {
    let keys = match kind {
        "ipv4" | "ipv6" => r#"ObservableKey in ("ipv4-addr:value", "ipv6-addr:value")"#,
        "domain" => r#"ObservableKey == "domain-name:value""#,
        "url" => r#"ObservableKey == "url:value""#,
        "filehash" => r#"ObservableKey startswith "file:hashes""#,
        _ => r#"ObservableKey == "email-addr:value""#,
    };
    format!("{keys} and ObservableValue =~ {v}")
}

/// The KQL for `question`.
pub fn render(question: &Question) -> String {
    let take = MAX_ROWS + 1;
    match question {
        Question::RecentAlertsForHost { host, days } => format!(
            "SecurityAlert\n| where TimeGenerated > ago({days}d)\n| where {} or Entities has {}\n| summarize arg_max(TimeGenerated, *) by SystemAlertId\n| project TimeGenerated, AlertName, AlertSeverity, ProviderName, SystemAlertId\n| order by TimeGenerated desc\n| take {take}",
            host_match("CompromisedEntity", host),
            kql_string(&host.name)
        ),
        Question::SigninsForAccount { account, days } => {
            let mut parts = Vec::new();
            let mut aad = Vec::new();
            if let Some(upn) = &account.upn {
                aad.push(format!("UserPrincipalName =~ {}", kql_string(upn)));
            }
            if let Some(oid) = &account.object_id {
                aad.push(format!("UserId =~ {}", kql_string(oid)));
            }
            if !aad.is_empty() {
                parts.push(format!(
                    "SigninLogs | where TimeGenerated > ago({days}d) | where {} | project TimeGenerated, Failed = ResultType != \"0\", IPAddress",
                    aad.join(" or ")
                ));
            }
            let mut windows = Vec::new();
            if let Some(sid) = &account.sid {
                windows.push(format!("TargetUserSid =~ {}", kql_string(sid)));
            }
            if let (Some(name), Some(domain)) = (&account.name, &account.domain) {
                windows.push(format!(
                    "(TargetUserName =~ {} and TargetDomainName =~ {})",
                    kql_string(name),
                    kql_string(domain)
                ));
            }
            if !windows.is_empty() {
                parts.push(format!(
                    "SecurityEvent | where TimeGenerated > ago({days}d) | where EventID in (4624, 4625) | where {} | project TimeGenerated, Failed = EventID == 4625, IPAddress",
                    windows.join(" or ")
                ));
            }
            format!(
                "{}\n| summarize Total = count(), Failures = countif(Failed), IPs = make_set(IPAddress, 20), Last = max(TimeGenerated)\n| take {take}",
                union(parts)
            )
        }
        Question::FirstSeenIp { ip, days } => format!(
            "union isfuzzy=true\n (SigninLogs | where TimeGenerated > ago({days}d) | where IPAddress == {v} | project TimeGenerated),\n (CommonSecurityLog | where TimeGenerated > ago({days}d) | where SourceIP == {v} or DestinationIP == {v} | project TimeGenerated),\n (DeviceNetworkEvents | where TimeGenerated > ago({days}d) | where RemoteIP == {v} | project TimeGenerated)\n| summarize FirstSeen = min(TimeGenerated), Count = count()\n| take {take}",
            v = kql_string(ip)
        ),
        Question::FirstSeenDomain { domain, days } => format!(
            "union isfuzzy=true\n (DnsEvents | where TimeGenerated > ago({days}d) | where Name =~ {v} | project TimeGenerated),\n (DeviceNetworkEvents | where TimeGenerated > ago({days}d) | where RemoteUrl has {v} | project TimeGenerated)\n| summarize FirstSeen = min(TimeGenerated), Count = count()\n| take {take}",
            v = kql_string(domain)
        ),
        Question::ProcessesOnHost { host, days } => format!(
            "{}\n| summarize Count = count(), Last = max(TimeGenerated) by FileName, ProcessCommandLine, Source\n| top {take} by Count desc",
            union(vec![
                format!(
                    "DeviceProcessEvents | where TimeGenerated > ago({days}d) | where {} | project TimeGenerated, FileName, ProcessCommandLine, Source = \"DeviceProcessEvents\"",
                    host_match("DeviceName", host)
                ),
                format!(
                    "SecurityEvent | where TimeGenerated > ago({days}d) | where EventID == 4688 | where {} | project TimeGenerated, FileName = tostring(split(NewProcessName, \"\\\\\")[-1]), ProcessCommandLine = CommandLine, Source = \"SecurityEvent 4688\"",
                    host_match("Computer", host)
                ),
            ])
        ),
        Question::ThreatIndicator {
            indicator,
            table: TiTable::ThreatIntelIndicators,
        } => format!(
            "ThreatIntelIndicators\n| where TimeGenerated > ago(90d)\n| where {}\n| summarize arg_max(TimeGenerated, *) by Id\n| where IsActive == true and (isnull(ValidUntil) or ValidUntil > now())\n| project Id, ObservableKey, ObservableValue, Confidence, ValidUntil, SourceSystem, IsActive, Description = tostring(Data.description)\n| take {take}",
            observable_match(&indicator.kind, &kql_string(&indicator.value))
        ),
        Question::ThreatIndicator {
            indicator,
            table: TiTable::ThreatIntelligenceIndicator,
        } => {
            let v = kql_string(&indicator.value);
            let column = match indicator.kind.as_str() {
                "ipv4" | "ipv6" => format!("NetworkIP == {v} or NetworkSourceIP == {v} or NetworkDestinationIP == {v} or EmailSourceIpAddress == {v}"),
                "domain" => format!("DomainName =~ {v} or EmailSenderAddress endswith strcat(\"@\", {v})"),
                "url" => format!("Url == {v}"),
                "filehash" => format!("FileHashValue =~ {v}"),
                _ => format!("EmailSenderAddress =~ {v}"),
            };
            format!(
                "ThreatIntelligenceIndicator\n| where TimeGenerated > ago(90d)\n| where {column}\n| summarize arg_max(TimeGenerated, *) by IndicatorId\n| where Active == true and ExpirationDateTime > now()\n| project IndicatorId, Description, ConfidenceScore, Action, ThreatType, SourceSystem, ExpirationDateTime\n| take {take}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::Indicator;

    /// Reads one KQL double-quoted literal from the start of `text`; returns its value and the
    /// rest of the text. A test-side parser, so the escaping is checked by decoding.
    fn read_literal(text: &str) -> Option<(String, &str)> {
        let mut chars = text.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, &text[i + 1..])),
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String =
                            (0..4).filter_map(|_| chars.next().map(|c| c.1)).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                },
                c if c.is_control() => return None,
                c => out.push(c),
            }
        }
        None
    }

    /// The query with every string literal replaced by `S`, and the literals' values.
    fn structure(query: &str) -> (String, Vec<String>) {
        let mut shape = String::new();
        let mut values = Vec::new();
        let mut rest = query;
        while let Some(pos) = rest.find('"') {
            shape.push_str(&rest[..pos]);
            let (value, after) = read_literal(&rest[pos..]).expect("every literal closes");
            values.push(value);
            shape.push('S');
            rest = after;
        }
        shape.push_str(rest);
        (shape, values)
    }

    const HOSTILE: &[&str] = &[
        "plain-host",
        "a\" or 1==1 | take 100000 //",
        "back\\slash\\\" | evil",
        "new\nline\r\n| project secret",
        "semi; drop | union *",
        "tab\tand \u{0007} bell and 'single'",
        "unicode é ☃ \u{202e}",
    ];

    #[test]
    fn every_hostile_value_stays_one_literal_and_round_trips() {
        let questions = |v: &str| {
            vec![
                Question::RecentAlertsForHost {
                    host: HostRef {
                        name: v.into(),
                        fqdn: Some(format!("{v}.corp")),
                    },
                    days: 7,
                },
                Question::SigninsForAccount {
                    account: crate::sentinel::AccountRef {
                        upn: Some(v.into()),
                        object_id: Some(v.into()),
                        sid: Some(v.into()),
                        name: Some(v.into()),
                        domain: Some(v.into()),
                    },
                    days: 2,
                },
                Question::FirstSeenIp {
                    ip: v.into(),
                    days: 30,
                },
                Question::FirstSeenDomain {
                    domain: v.into(),
                    days: 30,
                },
                Question::ProcessesOnHost {
                    host: HostRef {
                        name: v.into(),
                        fqdn: None,
                    },
                    days: 2,
                },
                Question::ThreatIndicator {
                    indicator: Indicator {
                        kind: "domain".into(),
                        value: v.into(),
                    },
                    table: TiTable::ThreatIntelIndicators,
                },
                Question::ThreatIndicator {
                    indicator: Indicator {
                        kind: "ipv4".into(),
                        value: v.into(),
                    },
                    table: TiTable::ThreatIntelIndicators,
                },
                Question::ThreatIndicator {
                    indicator: Indicator {
                        kind: "ipv4".into(),
                        value: v.into(),
                    },
                    table: TiTable::ThreatIntelligenceIndicator,
                },
            ]
        };
        let baseline: Vec<String> = questions("x")
            .iter()
            .map(|q| structure(&render(q)).0)
            .collect();
        for value in HOSTILE {
            for (q, base) in questions(value).iter().zip(&baseline) {
                let rendered = render(q);
                let (shape, values) = structure(&rendered);
                assert_eq!(&shape, base, "the query's shape changed for {value:?}");
                assert!(
                    values
                        .iter()
                        .any(|v| v == value || v.strip_suffix('.') == Some(value)),
                    "{value:?} did not round-trip: {values:?}"
                );
                assert!(
                    !rendered.contains('\u{0007}'),
                    "control characters are escaped"
                );
            }
        }
    }

    #[test]
    fn threat_intelligence_reads_the_current_table_and_honours_activity_and_expiry() {
        let q = |table| {
            render(&Question::ThreatIndicator {
                indicator: Indicator {
                    kind: "ipv4".into(),
                    value: "8.8.8.8".into(),
                },
                table,
            })
        };
        let current = q(TiTable::ThreatIntelIndicators);
        assert!(current.starts_with("ThreatIntelIndicators\n"), "{current}");
        for part in [
            r#"ObservableKey in ("ipv4-addr:value", "ipv6-addr:value") and ObservableValue =~ "8.8.8.8""#,
            "summarize arg_max(TimeGenerated, *) by Id",
            "IsActive == true and (isnull(ValidUntil) or ValidUntil > now())",
            "Confidence",
        ] {
            assert!(current.contains(part), "{part} not in {current}");
        }
        assert!(!current.contains("ThreatIntelligenceIndicator"));
        assert!(
            q(TiTable::ThreatIntelligenceIndicator).starts_with("ThreatIntelligenceIndicator\n")
        );
    }

    #[test]
    fn hosts_match_by_fqdn_or_name_prefix_and_processes_fall_back_to_4688() {
        let host = HostRef {
            name: "vm1".into(),
            fqdn: None,
        };
        let kql = render(&Question::ProcessesOnHost { host, days: 2 });
        assert!(kql.contains(r#"DeviceName startswith "vm1.""#), "{kql}");
        assert!(
            kql.contains("EventID == 4688") && kql.contains(r#"Computer startswith "vm1.""#),
            "{kql}"
        );
        assert!(kql.starts_with("union isfuzzy=true"), "{kql}");
        // An account with only a name is never asked about; one with a SID goes to SecurityEvent.
        let sid_only = render(&Question::SigninsForAccount {
            account: crate::sentinel::AccountRef {
                sid: Some("S-1-5-21-1-2-3-500".into()),
                ..Default::default()
            },
            days: 2,
        });
        assert!(
            sid_only.starts_with("SecurityEvent") && sid_only.contains("TargetUserSid =~"),
            "{sid_only}"
        );
        assert!(!sid_only.contains("UserPrincipalName"), "{sid_only}");
    }

    #[test]
    fn literals_escape_quotes_backslashes_and_newlines() {
        assert_eq!(kql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(kql_string("x\ny|z;w"), "\"x\\ny|z;w\"");
    }
}
