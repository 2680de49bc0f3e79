//! Family B's rule tables, traffic weight and draft builders.

use super::{DAY, HOUR};
use crate::alert::{Domain, Severity};
use crate::generate::{severity, Draft, Rng};

pub(super) const ENDPOINT_RULES: [(&str, &str); 3] = [
    ("Suspicious PowerShell", "Execution"),
    ("Credential dumping heuristic", "CredentialAccess"),
    ("LOLBin execution", "DefenseEvasion"),
];

/// A network draft.
#[allow(clippy::too_many_arguments)]
pub(super) fn net(
    time: i64,
    name: &'static str,
    severity: Severity,
    domain: Domain,
    src: String,
    dst: String,
    port: u16,
    protocol: &'static str,
    tactic: Option<&'static str>,
    chain: Option<u32>,
    hop: bool,
) -> Draft {
    Draft {
        time,
        name,
        severity,
        domain,
        src,
        dst: Some(dst),
        port: Some(port),
        protocol: Some(protocol),
        tactic,
        chain,
        hop,
        account: None,
    }
}

pub(super) fn endpoint(rng: &mut Rng, time: i64, host: String, chain: Option<u32>) -> Draft {
    let (name, tactic) = *rng.pick(&ENDPOINT_RULES);
    Draft {
        time,
        name,
        severity: severity(rng, 0.2, 0.4),
        domain: Domain::IT,
        src: host,
        dst: None,
        port: None,
        protocol: None,
        tactic: Some(tactic),
        chain,
        hop: false,
        account: None,
    }
}

/// Traffic weight at `t`: diurnal, and the busy second day of a long stream.
pub(super) fn weight(t: i64, t0: i64, span: i64) -> f64 {
    let hour = t.rem_euclid(DAY) / HOUR;
    let diurnal = if (8..18).contains(&hour) { 3.0 } else { 1.0 };
    let busy = if span >= 3 * DAY && (t - t0) / DAY == 1 {
        10.0
    } else {
        1.0
    };
    diurnal * busy
}

/// A background time drawn with the traffic weight (rejection sampling).
pub(super) fn background_time(rng: &mut Rng, t0: i64, span: i64) -> i64 {
    let max = 30.0;
    loop {
        let t = t0 + rng.below(span as usize) as i64;
        if rng.chance(weight(t, t0, span) / max) {
            return t;
        }
    }
}

pub(super) const LONG_TAIL: [&str; 40] = [
    "Rule-01 unusual service",
    "Rule-02 registry run key",
    "Rule-03 scheduled task",
    "Rule-04 WMI subscription",
    "Rule-05 unsigned driver",
    "Rule-06 token manipulation",
    "Rule-07 shadow copy deletion",
    "Rule-08 LSASS access",
    "Rule-09 DCSync attempt",
    "Rule-10 Kerberos downgrade",
    "Rule-11 rare parent process",
    "Rule-12 encoded command",
    "Rule-13 remote thread",
    "Rule-14 hollowed process",
    "Rule-15 AMSI bypass",
    "Rule-16 browser credential read",
    "Rule-17 mailbox rule",
    "Rule-18 archive staging",
    "Rule-19 DNS tunnelling",
    "Rule-20 ICMP tunnel",
    "Rule-21 rare SMB pipe",
    "Rule-22 RPC to unusual host",
    "Rule-23 new local admin",
    "Rule-24 firewall change",
    "Rule-25 log cleared",
    "Rule-26 USB mass storage",
    "Rule-27 print spooler abuse",
    "Rule-28 BITS job",
    "Rule-29 certutil download",
    "Rule-30 rundll32 network",
    "Rule-31 MSHTA execution",
    "Rule-32 WinRM from workstation",
    "Rule-33 PsExec pattern",
    "Rule-34 SSH from Windows",
    "Rule-35 rare user agent",
    "Rule-36 TOR exit contact",
    "Rule-37 cloud storage upload",
    "Rule-38 password in command line",
    "Rule-39 disabled defender",
    "Rule-40 timestomping",
];
