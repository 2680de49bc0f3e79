//! Family B, written from its own spec after the v2 method was chosen and before any tuning,
//! to check that the method holds on a stream it was not built on.
//!
//! Spec.
//! - Topology: three plants. Each has 120 workstations (172.16.p.10-129), 15 servers
//!   (172.17.p.1-15), a jump host (172.18.0.p), a scanner (172.18.1.p), an engineering
//!   workstation (172.16.p.250) and an OT cell (192.168.10+p.x: 2 HMIs, a historian, 12 PLCs).
//!   Shared: 3 domain controllers (172.19.0.x), 4 file servers (172.19.1.x), 300 IPv6 internet
//!   addresses (2001:db8::x).
//! - Background rule mix: "NTLM relay heuristic", High, LateralMovement, between random IT
//!   hosts of any plant (14 %); "Anomalous SMB write", Medium/High, LateralMovement, random
//!   pairs, half to file servers (8 %); scanner sweeps of the own plant (12 %); password spray /
//!   Kerberoasting against the DCs (10 %); recurring admin paths: jump host → one of six fixed
//!   servers, then that server → its fixed second-hop server minutes later, "Remote PowerShell",
//!   half tagged LateralMovement (10 %); HMI → six fixed PLCs Modbus polling and historian OPC-UA
//!   (14 %); the EWS programming five fixed PLCs ("S7 program download", Medium/High) and two
//!   fixed engineers RDP-ing to the EWS ("RDP session to EWS") daily (3 %); host-only endpoint
//!   alerts on random IT hosts ("Suspicious PowerShell", "Credential dumping heuristic", "LOLBin
//!   execution", often High) (18 %); outbound TLS beacons (6 %); a long tail of 40 rarely
//!   firing rules, host-only or between random pairs (5 %).
//! - Time: three times more traffic 08:00-18:00 than at night; in streams of three days or
//!   more, the second day carries ten times the traffic of the others.
//! - Attacks: patient zero is a random workstation, half the time after a beacon (the
//!   background beacon rule) from the internet. 2 to 5 hops to random workstations or servers
//!   (never DCs, file servers, jump hosts), 10 to 120 min apart, each hop "NTLM relay
//!   heuristic" (50 %), "Anomalous SMB write" (25 %) or "Service installed remotely" (25 %; it
//!   also fires in the background at 0.2 %); 1 to 3 host-only endpoint alerts (background
//!   rules) on each reached host 1 to 25 min after the hop. Half the chains then RDP to their
//!   plant's EWS ("RDP session to EWS") and download a program to one or two PLCs ("S7 program
//!   download"): the same rules as the benign engineering traffic. Severities random.
//! - Identities (contract v2's Account; added for issue #20, after the rest of the spec): each
//!   workstation has its own user (`user-p-i`), and what it sends or raises runs as that user;
//!   servers' own alerts run as `SYSTEM`; the admin paths run as their plant's admin account
//!   (`admin-p`, on the jump host and both servers of a path); scanners as `svc-scan`; the EWS
//!   programming as `eng-p`; OT polling carries none. An attack runs as patient zero's user
//!   throughout: every hop and every endpoint alert on the hosts it reaches (a stolen
//!   credential reused host to host).

mod rules;
mod topology;

use super::{severity, Draft, GenConfig, Rng};
use crate::alert::{Domain, Severity};
use rules::{background_time, endpoint, net, LONG_TAIL};
use topology::{plant_host, Net, PLANTS};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The user a host's own activity runs as: a workstation's user, else `SYSTEM`.
fn user_of(host: &str) -> String {
    match host.strip_prefix("172.16.") {
        Some(rest) if !rest.ends_with(".250") => format!("user-{}", rest.replace('.', "-")),
        _ => "SYSTEM".to_string(),
    }
}

/// The plant (third octet) of a 172.x.p.y address.
fn plant_of(host: &str) -> &str {
    host.split('.').nth(2).unwrap_or("0")
}

/// Accounts by the spec's identity rules (no random draws: the stream is otherwise unchanged).
fn assign_accounts(drafts: &mut [Draft]) {
    let mut zero: Vec<Option<String>> = Vec::new();
    for d in drafts.iter_mut() {
        if let Some(c) = d.chain {
            let c = c as usize;
            if zero.len() <= c {
                zero.resize(c + 1, None);
            }
            // Chains come first, each in order: its first alert leaves patient zero.
            let user = zero[c].get_or_insert_with(|| user_of(&d.src)).clone();
            d.account = Some(user);
            continue;
        }
        d.account = match d.name {
            "Remote PowerShell" => {
                let p = if d.src.starts_with("172.18.0.") {
                    d.src
                        .rsplit('.')
                        .next()
                        .map(|n| n.parse::<usize>().unwrap_or(1) - 1)
                } else {
                    plant_of(&d.src).parse().ok()
                };
                Some(format!("admin-{}", p.unwrap_or(0)))
            }
            "Port sweep" => Some("svc-scan".into()),
            "S7 program download" => Some(format!("eng-{}", plant_of(&d.src))),
            "Modbus read anomaly" | "OPC-UA session anomaly" => None,
            _ if d.domain == Domain::OT => None,
            _ => Some(user_of(&d.src)),
        };
    }
}

/// The drafts of a family B stream (chains first).
#[allow(
    clippy::too_many_lines,
    reason = "the chains' steps as data, one draft each: a table read top to bottom"
)]
pub(super) fn drafts(cfg: &GenConfig, rng: &mut Rng) -> Vec<Draft> {
    let net_map = Net::new();
    let n = &net_map;
    let mut drafts: Vec<Draft> = Vec::with_capacity(cfg.alerts);
    let t0 = cfg.start_ms;
    let span = cfg.span_ms.max(HOUR);

    for chain in 0..cfg.chains as u32 {
        let c = Some(chain);
        let plant = &n.plants[rng.below(PLANTS)];
        let mut t = t0 + rng.below((span * 3 / 4) as usize) as i64;
        let mut at = rng.pick(&plant.workstations).clone();
        let mut visited = vec![at.clone()];
        if rng.chance(0.5) {
            let from = at.clone();
            let to = rng.pick(&n.internet).clone();
            let sev = severity(rng, 0.5, 0.4);
            drafts.push(net(
                t,
                "Rare outbound TLS",
                sev,
                Domain::IT,
                from,
                to,
                443,
                "TLS",
                Some("CommandAndControl"),
                c,
                false,
            ));
        }
        let hops = 2 + rng.below(4);
        for _ in 0..hops {
            t += 10 * MIN + rng.below((110 * MIN) as usize) as i64;
            let mut to = n.it_host(rng);
            while visited.contains(&to) {
                to = n.it_host(rng);
            }
            let x = rng.below(4);
            let (name, protocol, port) = match x {
                0 | 1 => ("NTLM relay heuristic", "SMB", 445),
                2 => ("Anomalous SMB write", "SMB", 445),
                _ => ("Service installed remotely", "RPC", 135),
            };
            let sev = severity(rng, 0.3, 0.4);
            drafts.push(net(
                t,
                name,
                sev,
                Domain::IT,
                at.clone(),
                to.clone(),
                port,
                protocol,
                Some("LateralMovement"),
                c,
                true,
            ));
            for _ in 0..1 + rng.below(3) {
                let when = t + MIN + rng.below((24 * MIN) as usize) as i64;
                drafts.push(endpoint(rng, when, to.clone(), c));
            }
            visited.push(to.clone());
            at = to;
        }
        if rng.chance(0.5) {
            t += 10 * MIN + rng.below((60 * MIN) as usize) as i64;
            let sev = severity(rng, 0.5, 0.3);
            drafts.push(net(
                t,
                "RDP session to EWS",
                sev,
                Domain::IT,
                at.clone(),
                plant.ews.clone(),
                3389,
                "RDP",
                Some("LateralMovement"),
                c,
                true,
            ));
            for _ in 0..1 + rng.below(2) {
                t += 5 * MIN + rng.below((40 * MIN) as usize) as i64;
                let plc = rng.pick(&plant.plcs).clone();
                let sev = severity(rng, 0.2, 0.4);
                drafts.push(net(
                    t,
                    "S7 program download",
                    sev,
                    Domain::OT,
                    plant.ews.clone(),
                    plc,
                    102,
                    "S7",
                    Some("Execution"),
                    c,
                    true,
                ));
            }
        }
    }

    // Fixed relationships the background repeats.
    let admin: Vec<Vec<(String, String)>> = n
        .plants
        .iter()
        .map(|p| {
            (0..6)
                .map(|_| (rng.pick(&p.servers).clone(), rng.pick(&p.servers).clone()))
                .collect()
        })
        .collect();
    let polled: Vec<Vec<Vec<String>>> = n
        .plants
        .iter()
        .map(|p| {
            p.hmis
                .iter()
                .map(|_| (0..6).map(|_| rng.pick(&p.plcs).clone()).collect())
                .collect()
        })
        .collect();
    let programmed: Vec<Vec<String>> = n
        .plants
        .iter()
        .map(|p| (0..5).map(|_| rng.pick(&p.plcs).clone()).collect())
        .collect();
    let engineers: Vec<Vec<String>> = n
        .plants
        .iter()
        .map(|p| (0..2).map(|_| rng.pick(&p.workstations).clone()).collect())
        .collect();

    while drafts.len() < cfg.alerts {
        let time = background_time(rng, t0, span);
        let p = rng.below(PLANTS);
        let plant = &n.plants[p];
        let kind = rng.below(100);
        match kind {
            0..=13 => {
                let (a, b) = (n.it_host(rng), n.it_host(rng));
                if a != b {
                    drafts.push(net(
                        time,
                        "NTLM relay heuristic",
                        Severity::High,
                        Domain::IT,
                        a,
                        b,
                        445,
                        "SMB",
                        Some("LateralMovement"),
                        None,
                        false,
                    ));
                }
            }
            14..=21 => {
                let a = n.it_host(rng);
                let b = if rng.chance(0.5) {
                    rng.pick(&n.file_servers).clone()
                } else {
                    n.it_host(rng)
                };
                let sev = severity(rng, 0.0, 0.6);
                if a != b {
                    drafts.push(net(
                        time,
                        "Anomalous SMB write",
                        sev,
                        Domain::IT,
                        a,
                        b,
                        445,
                        "SMB",
                        Some("LateralMovement"),
                        None,
                        false,
                    ));
                }
            }
            22..=33 => {
                let to = plant_host(plant, rng);
                let sev = if rng.chance(0.7) {
                    Severity::Informational
                } else {
                    Severity::Low
                };
                drafts.push(net(
                    time,
                    "Port sweep",
                    sev,
                    Domain::IT,
                    plant.scanner.clone(),
                    to,
                    [22u16, 135, 445, 3389][rng.below(4)],
                    "TCP",
                    Some("Discovery"),
                    None,
                    false,
                ));
            }
            34..=43 => {
                let name = if rng.chance(0.6) {
                    "Password spray"
                } else {
                    "Kerberoasting heuristic"
                };
                let sev = severity(rng, 0.6, 0.35);
                let from = rng.pick(&plant.workstations).clone();
                let dc = rng.pick(&n.dcs).clone();
                drafts.push(net(
                    time,
                    name,
                    sev,
                    Domain::IT,
                    from,
                    dc,
                    88,
                    "Kerberos",
                    Some("CredentialAccess"),
                    None,
                    false,
                ));
            }
            44..=53 => {
                let (first, second) = rng.pick(&admin[p]).clone();
                let tactic = if rng.chance(0.5) {
                    Some("LateralMovement")
                } else {
                    None
                };
                let sev = severity(rng, 0.5, 0.5);
                drafts.push(net(
                    time,
                    "Remote PowerShell",
                    sev,
                    Domain::IT,
                    plant.jump.clone(),
                    first.clone(),
                    5985,
                    "WinRM",
                    tactic,
                    None,
                    false,
                ));
                if first != second && drafts.len() < cfg.alerts {
                    let later = time + MIN + rng.below((15 * MIN) as usize) as i64;
                    drafts.push(net(
                        later,
                        "Remote PowerShell",
                        sev,
                        Domain::IT,
                        first,
                        second,
                        5985,
                        "WinRM",
                        tactic,
                        None,
                        false,
                    ));
                }
            }
            54..=67 => {
                if rng.chance(0.8) {
                    let h = rng.below(plant.hmis.len());
                    let plc = rng.pick(&polled[p][h]).clone();
                    let sev = if rng.chance(0.9) {
                        Severity::Informational
                    } else {
                        Severity::Low
                    };
                    drafts.push(net(
                        time,
                        "Modbus read anomaly",
                        sev,
                        Domain::OT,
                        plant.hmis[h].clone(),
                        plc,
                        502,
                        "Modbus",
                        None,
                        None,
                        false,
                    ));
                } else {
                    let plc = rng.pick(&plant.plcs).clone();
                    drafts.push(net(
                        time,
                        "OPC-UA browse",
                        Severity::Informational,
                        Domain::OT,
                        plant.historian.clone(),
                        plc,
                        4840,
                        "OPC-UA",
                        Some("Collection"),
                        None,
                        false,
                    ));
                }
            }
            68..=70 => {
                if rng.chance(0.7) {
                    let plc = rng.pick(&programmed[p]).clone();
                    let sev = severity(rng, 0.0, 0.6);
                    drafts.push(net(
                        time,
                        "S7 program download",
                        sev,
                        Domain::OT,
                        plant.ews.clone(),
                        plc,
                        102,
                        "S7",
                        Some("Execution"),
                        None,
                        false,
                    ));
                } else {
                    let from = rng.pick(&engineers[p]).clone();
                    let sev = severity(rng, 0.6, 0.3);
                    drafts.push(net(
                        time,
                        "RDP session to EWS",
                        sev,
                        Domain::IT,
                        from,
                        plant.ews.clone(),
                        3389,
                        "RDP",
                        Some("LateralMovement"),
                        None,
                        false,
                    ));
                }
            }
            71..=88 => {
                let host = n.it_host(rng);
                drafts.push(endpoint(rng, time, host, None));
            }
            89..=94 => {
                let from = rng.pick(&plant.workstations).clone();
                let to = rng.pick(&n.internet).clone();
                let sev = severity(rng, 0.5, 0.4);
                drafts.push(net(
                    time,
                    "Rare outbound TLS",
                    sev,
                    Domain::IT,
                    from,
                    to,
                    443,
                    "TLS",
                    Some("CommandAndControl"),
                    None,
                    false,
                ));
            }
            _ => {
                if rng.chance(0.04) {
                    let (a, b) = (n.it_host(rng), n.it_host(rng));
                    if a != b {
                        drafts.push(net(
                            time,
                            "Service installed remotely",
                            Severity::Medium,
                            Domain::IT,
                            a,
                            b,
                            135,
                            "RPC",
                            Some("LateralMovement"),
                            None,
                            false,
                        ));
                    }
                    continue;
                }
                let name = *rng.pick(&LONG_TAIL);
                let host = n.it_host(rng);
                let sev = severity(rng, 0.4, 0.4);
                if rng.chance(0.5) {
                    drafts.push(Draft {
                        time,
                        name,
                        severity: sev,
                        domain: Domain::IT,
                        src: host,
                        dst: None,
                        port: None,
                        protocol: None,
                        tactic: Some("Execution"),
                        chain: None,
                        hop: false,
                        account: None,
                    });
                } else {
                    let other = n.it_host(rng);
                    if other != host {
                        drafts.push(net(
                            time,
                            name,
                            sev,
                            Domain::IT,
                            host,
                            other,
                            445,
                            "SMB",
                            Some("LateralMovement"),
                            None,
                            false,
                        ));
                    }
                }
            }
        }
    }
    assign_accounts(&mut drafts);
    drafts
}
