//! Family A (the first generator, the one the v1 engine was tuned on).
//!
//! Spec: one flat site of 600 workstations (10.1.x) and 60 servers (10.2.x), two domain
//! controllers, three jump hosts, two scanners, 8 HMIs, 40 PLCs, a historian and one
//! engineering workstation (EWS); 254 internet addresses. Background: scanners sweeping hosts
//! (20 %), failed logons against the DCs (25 %), admin sessions from jump hosts to ten fixed
//! servers each, some tagged LateralMovement, 15 % of them hopping on server to server (15 %),
//! HMI/historian polling of fixed PLCs (25 %), the EWS programming four PLCs (3 %), outbound
//! beacons (7 %) and host-only suspicious-process alerts (5 %); uniform over the span.
//! Chains walk 2 to 6 hops through workstations and servers at increasing times (2 to 87 min
//! apart) with lateral-movement rule names of their own, optional phishing first and share
//! enumeration before a hop; about 40 % end on a PLC over an industrial protocol.

use super::{severity, Draft, GenConfig, Rng};
use crate::alert::{Domain, Severity};

struct Net {
    workstations: Vec<String>,
    servers: Vec<String>,
    dcs: Vec<String>,
    jump_hosts: Vec<String>,
    scanners: Vec<String>,
    hmis: Vec<String>,
    plcs: Vec<String>,
    historian: String,
    ews: String,
    internet: Vec<String>,
}

impl Net {
    fn new() -> Self {
        let range = |prefix: &str, n: usize| {
            (1..=n)
                .map(|i| format!("{prefix}.{}.{}", i / 250, i % 250 + 1))
                .collect::<Vec<_>>()
        };
        Self {
            workstations: range("10.1", 600),
            servers: range("10.2", 60),
            dcs: vec!["10.9.0.10".into(), "10.9.0.11".into()],
            jump_hosts: vec!["10.9.1.5".into(), "10.9.1.6".into(), "10.9.1.7".into()],
            scanners: vec!["10.9.2.20".into(), "10.9.2.21".into()],
            hmis: range("10.20", 8)
                .into_iter()
                .map(|s| s.replacen("10.20.0", "10.20.1", 1))
                .collect(),
            plcs: range("10.21", 40),
            historian: "10.20.3.1".into(),
            ews: "10.1.250.9".into(),
            internet: (1..=200)
                .map(|i| format!("203.0.113.{i}"))
                .chain((1..=54).map(|i| format!("198.51.100.{i}")))
                .collect(),
        }
    }
}

const IT_LATERAL: [(&str, u16); 4] = [("SMB", 445), ("RDP", 3389), ("WinRM", 5985), ("SSH", 22)];
const OT_ATTACK: [(&str, u16); 3] = [("Modbus", 502), ("S7", 102), ("DNP3", 20000)];
const LATERAL_NAMES: [&str; 5] = [
    "Suspicious SMB session",
    "Remote service creation",
    "RDP logon from unusual host",
    "WinRM remote command",
    "Pass-the-hash attempt",
];

/// The drafts of a family A stream (chains first).
#[allow(
    clippy::too_many_lines,
    reason = "the chains' steps as data, one draft each: a table read top to bottom"
)]
pub(super) fn drafts(cfg: &GenConfig, rng: &mut Rng) -> Vec<Draft> {
    let net = Net::new();
    let mut drafts: Vec<Draft> = Vec::with_capacity(cfg.alerts);
    let t0 = cfg.start_ms;
    let span = cfg.span_ms.max(60_000);

    // Chains first, so their size is known.
    for chain in 0..cfg.chains as u32 {
        let hops = 2 + rng.below(5); // 2..=6
        let into_ot = rng.chance(0.4);
        let mut t = t0 + rng.below((span * 3 / 4) as usize) as i64;
        let mut path: Vec<String> = vec![rng.pick(&net.workstations).clone()];
        if rng.chance(0.3) {
            // Initial access from outside.
            let from = rng.pick(&net.internet).clone();
            drafts.push(Draft {
                time: t,
                name: "Phishing link clicked",
                severity: severity(rng, 0.5, 0.4),
                domain: Domain::IT,
                src: from,
                dst: Some(path[0].clone()),
                port: Some(443),
                protocol: Some("HTTP"),
                tactic: Some("InitialAccess"),
                chain: Some(chain),
                hop: false,
                account: None,
            });
        }
        for hop in 0..hops {
            t += 120_000 + rng.below(85 * 60_000) as i64;
            let last_hop = hop + 1 == hops;
            let from = path.last().cloned().unwrap_or_default();
            let (to, domain, (protocol, port)) = if last_hop && into_ot {
                (
                    rng.pick(&net.plcs).clone(),
                    Domain::OT,
                    *rng.pick(&OT_ATTACK),
                )
            } else {
                let pool = if rng.chance(0.6) {
                    &net.servers
                } else {
                    &net.workstations
                };
                let mut to = rng.pick(pool).clone();
                while path.contains(&to) {
                    to = rng.pick(pool).clone();
                }
                (to, Domain::IT, *rng.pick(&IT_LATERAL))
            };
            if rng.chance(0.35) {
                // Discovery on the hop's target first.
                drafts.push(Draft {
                    time: t - 30_000,
                    name: "Network share enumeration",
                    severity: Severity::Low,
                    domain,
                    src: from.clone(),
                    dst: Some(to.clone()),
                    port: Some(445),
                    protocol: Some("SMB"),
                    tactic: Some("Discovery"),
                    chain: Some(chain),
                    hop: false,
                    account: None,
                });
            }
            let tactic = if domain == Domain::OT {
                *rng.pick(&["ImpairProcessControl", "Execution", "LateralMovement"])
            } else {
                *rng.pick(&[
                    "LateralMovement",
                    "LateralMovement",
                    "LateralMovement",
                    "CredentialAccess",
                    "Execution",
                ])
            };
            let name = if domain == Domain::OT {
                "Unauthorized PLC write"
            } else {
                *rng.pick(&LATERAL_NAMES)
            };
            drafts.push(Draft {
                time: t,
                name,
                severity: severity(rng, 0.4, 0.4),
                domain,
                src: from,
                dst: Some(to.clone()),
                port: Some(port),
                protocol: Some(protocol),
                tactic: Some(tactic),
                chain: Some(chain),
                hop: true,
                account: None,
            });
            path.push(to);
        }
    }

    // Fixed relationships the noise repeats.
    let admin_targets: Vec<Vec<String>> = net
        .jump_hosts
        .iter()
        .map(|_| (0..10).map(|_| rng.pick(&net.servers).clone()).collect())
        .collect();
    let polled: Vec<Vec<String>> = net
        .hmis
        .iter()
        .map(|_| (0..5).map(|_| rng.pick(&net.plcs).clone()).collect())
        .collect();
    let ews_plcs: Vec<String> = (0..4).map(|_| rng.pick(&net.plcs).clone()).collect();

    while drafts.len() < cfg.alerts {
        let time = t0 + rng.below(span as usize) as i64;
        let kind = rng.below(100);
        let d = match kind {
            0..=19 => Draft {
                time,
                name: "Port scan detected",
                severity: if rng.chance(0.7) {
                    Severity::Informational
                } else {
                    Severity::Low
                },
                domain: Domain::IT,
                src: rng.pick(&net.scanners).clone(),
                dst: Some(if rng.chance(0.8) {
                    rng.pick(&net.workstations).clone()
                } else {
                    rng.pick(&net.servers).clone()
                }),
                port: Some([22u16, 80, 135, 443, 445, 3389][rng.below(6)]),
                protocol: Some("TCP"),
                tactic: Some("Discovery"),
                chain: None,
                hop: false,
                account: None,
            },
            20..=44 => Draft {
                time,
                name: "Multiple failed logons",
                severity: severity(rng, 0.8, 0.18),
                domain: Domain::IT,
                src: if rng.chance(0.02) {
                    net.ews.clone()
                } else {
                    rng.pick(&net.workstations).clone()
                },
                dst: Some(rng.pick(&net.dcs).clone()),
                port: Some(88),
                protocol: Some("Kerberos"),
                tactic: Some("CredentialAccess"),
                chain: None,
                hop: false,
                account: None,
            },
            45..=59 => {
                let j = rng.below(net.jump_hosts.len());
                let target = rng.pick(&admin_targets[j]).clone();
                let (protocol, port) = *rng.pick(&IT_LATERAL[1..]);
                if rng.chance(0.15) {
                    // Backup job hopping on from the administered server.
                    Draft {
                        time,
                        name: "Remote service creation",
                        severity: Severity::Low,
                        domain: Domain::IT,
                        src: target,
                        dst: Some(rng.pick(&admin_targets[j]).clone()),
                        port: Some(445),
                        protocol: Some("SMB"),
                        tactic: Some("Execution"),
                        chain: None,
                        hop: false,
                        account: None,
                    }
                } else {
                    Draft {
                        time,
                        name: if rng.chance(0.5) {
                            "RDP logon from unusual host"
                        } else {
                            "Remote admin session"
                        },
                        severity: severity(rng, 0.7, 0.25),
                        domain: Domain::IT,
                        src: net.jump_hosts[j].clone(),
                        dst: Some(target),
                        port: Some(port),
                        protocol: Some(protocol),
                        tactic: if rng.chance(0.3) {
                            Some("LateralMovement")
                        } else {
                            None
                        },
                        chain: None,
                        hop: false,
                        account: None,
                    }
                }
            }
            60..=84 => {
                let from_historian = rng.chance(0.2);
                let h = rng.below(net.hmis.len());
                Draft {
                    time,
                    name: if from_historian {
                        "OPC-UA session anomaly"
                    } else {
                        "Unexpected Modbus function code"
                    },
                    severity: if rng.chance(0.85) {
                        Severity::Informational
                    } else {
                        Severity::Low
                    },
                    domain: Domain::OT,
                    src: if from_historian {
                        net.historian.clone()
                    } else {
                        net.hmis[h].clone()
                    },
                    dst: Some(rng.pick(&polled[h]).clone()),
                    port: Some(if from_historian { 4840 } else { 502 }),
                    protocol: Some(if from_historian { "OPC-UA" } else { "Modbus" }),
                    tactic: None,
                    chain: None,
                    hop: false,
                    account: None,
                }
            }
            85..=87 => Draft {
                time,
                name: "PLC program download",
                severity: severity(rng, 0.5, 0.45),
                domain: Domain::OT,
                src: net.ews.clone(),
                dst: Some(rng.pick(&ews_plcs).clone()),
                port: Some(102),
                protocol: Some("S7"),
                tactic: Some("Execution"),
                chain: None,
                hop: false,
                account: None,
            },
            88..=94 => Draft {
                time,
                name: "Suspicious outbound connection",
                severity: severity(rng, 0.5, 0.35),
                domain: Domain::IT,
                src: rng.pick(&net.workstations).clone(),
                dst: Some(rng.pick(&net.internet).clone()),
                port: Some(443),
                protocol: Some("HTTP"),
                tactic: Some("CommandAndControl"),
                chain: None,
                hop: false,
                account: None,
            },
            _ => Draft {
                time,
                name: "Suspicious process",
                severity: severity(rng, 0.3, 0.5),
                domain: Domain::IT,
                src: rng.pick(&net.workstations).clone(),
                dst: None,
                port: None,
                protocol: None,
                tactic: Some("Execution"),
                chain: None,
                hop: false,
                account: None,
            },
        };
        drafts.push(d);
    }
    drafts
}
