//! Rendering the workspace's typed [`Question`]s as KQL for the Log Analytics query API. Every
//! value that comes from an incident is written as a KQL string literal by [`kql_string`], so
//! no input can change the shape of a query; the tables, columns and operators are fixed here.

use crate::ports::Question;

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

/// The KQL for `question`.
pub fn render(question: &Question) -> String {
    let take = MAX_ROWS + 1;
    match question {
        Question::RecentAlertsForHost { host, days } => format!(
            "SecurityAlert\n| where TimeGenerated > ago({days}d)\n| where CompromisedEntity =~ {h} or Entities has {h}\n| summarize arg_max(TimeGenerated, *) by SystemAlertId\n| project TimeGenerated, AlertName, AlertSeverity, ProviderName, SystemAlertId\n| order by TimeGenerated desc\n| take {take}",
            h = kql_string(host)
        ),
        Question::SigninsForAccount { account, days } => format!(
            "SigninLogs\n| where TimeGenerated > ago({days}d)\n| where UserPrincipalName =~ {a}\n| summarize Total = count(), Failures = countif(ResultType != \"0\"), IPs = make_set(IPAddress, 20), Last = max(TimeGenerated)\n| take {take}",
            a = kql_string(account)
        ),
        Question::FirstSeenIp { ip, days } => format!(
            "union isfuzzy=true\n (SigninLogs | where TimeGenerated > ago({days}d) | where IPAddress == {v} | project TimeGenerated),\n (CommonSecurityLog | where TimeGenerated > ago({days}d) | where SourceIP == {v} or DestinationIP == {v} | project TimeGenerated),\n (DeviceNetworkEvents | where TimeGenerated > ago({days}d) | where RemoteIP == {v} | project TimeGenerated)\n| summarize FirstSeen = min(TimeGenerated), Count = count()\n| take {take}",
            v = kql_string(ip)
        ),
        Question::FirstSeenDomain { domain, days } => format!(
            "union isfuzzy=true\n (DnsEvents | where TimeGenerated > ago({days}d) | where Name =~ {v} | project TimeGenerated),\n (DeviceNetworkEvents | where TimeGenerated > ago({days}d) | where RemoteUrl has {v} | project TimeGenerated)\n| summarize FirstSeen = min(TimeGenerated), Count = count()\n| take {take}",
            v = kql_string(domain)
        ),
        Question::ProcessesOnHost { host, days } => format!(
            "DeviceProcessEvents\n| where TimeGenerated > ago({days}d)\n| where DeviceName =~ {h}\n| summarize Count = count(), Last = max(TimeGenerated) by FileName, ProcessCommandLine\n| top {take} by Count desc",
            h = kql_string(host)
        ),
        Question::ThreatIndicator { indicator } => {
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
                    host: v.into(),
                    days: 7,
                },
                Question::SigninsForAccount {
                    account: v.into(),
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
                    host: v.into(),
                    days: 2,
                },
                Question::ThreatIndicator {
                    indicator: Indicator {
                        kind: "domain".into(),
                        value: v.into(),
                    },
                },
                Question::ThreatIndicator {
                    indicator: Indicator {
                        kind: "ipv4".into(),
                        value: v.into(),
                    },
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
                    values.iter().any(|v| v == value),
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
    fn literals_escape_quotes_backslashes_and_newlines() {
        assert_eq!(kql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(kql_string("x\ny|z;w"), "\"x\\ny|z;w\"");
    }
}
