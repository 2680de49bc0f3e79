//! Seeded generators of IT/OT alert streams with labelled attack chains, for the demo, the
//! tests, the benches and the evaluation of ranked rows against the labels. Two families from
//! two different written specs (see each module): A, the one the engine was first built on, and
//! B, written afterwards to check that the method generalises. Labels go to a separate list:
//! the engine never sees them.

mod family_a;
mod family_b;

use crate::alert::{Alert, Domain, Severity};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Which generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// One flat site; chains with rule names of their own.
    A,
    /// Three plants, random-pair lateral noise, admin paths, a busy day; chains that reuse the
    /// noisy rules and leave host-only alerts on every host they reach.
    B,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "a" | "A" => Ok(Family::A),
            "b" | "B" => Ok(Family::B),
            _ => Err(format!("{s:?}: the generator family is a or b")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenConfig {
    /// Total alerts (noise fills whatever the chains do not use).
    pub alerts: usize,
    /// Injected attack chains.
    pub chains: usize,
    /// Seed: the same seed gives the same stream.
    pub seed: u64,
    /// First alert time (unix ms).
    pub start_ms: i64,
    /// Time span of the stream (ms).
    pub span_ms: i64,
    /// Which generator.
    pub family: Family,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            alerts: 10_000,
            chains: 10,
            seed: 1,
            start_ms: 1_795_132_800_000,
            span_ms: 24 * 3600 * 1000,
            family: Family::A,
        }
    }
}

/// One injected chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainLabel {
    /// Chain number.
    pub chain: u32,
    /// Hops between hosts.
    pub hops: u32,
    /// Ends inside OT.
    pub crosses_it_ot: bool,
    /// The chain's alerts.
    pub alert_ids: Vec<String>,
}

/// A generated stream.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Alerts in time order.
    pub alerts: Vec<Alert>,
    /// The chains' labels.
    pub labels: Vec<ChainLabel>,
}

/// SplitMix64: tiny, fast and stable across versions, so a seed means the same data forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// An alert before ids are drawn.
pub(crate) struct Draft {
    pub(crate) time: i64,
    pub(crate) name: &'static str,
    pub(crate) severity: Severity,
    pub(crate) domain: Domain,
    pub(crate) src: String,
    pub(crate) dst: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) protocol: Option<&'static str>,
    pub(crate) tactic: Option<&'static str>,
    pub(crate) chain: Option<u32>,
    /// A hop of its chain (counted in the label).
    pub(crate) hop: bool,
    /// The account it ran as (contract v2), where the family gives identities.
    pub(crate) account: Option<String>,
}

/// Low with probability `low`, Medium with `medium`, else High.
pub(crate) fn severity(rng: &mut Rng, low: f64, medium: f64) -> Severity {
    let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    if x < low {
        Severity::Low
    } else if x < low + medium {
        Severity::Medium
    } else {
        Severity::High
    }
}

/// Generates a stream.
pub fn generate(cfg: GenConfig) -> Generated {
    let mut rng = Rng::new(cfg.seed);
    let mut drafts = match cfg.family {
        Family::A => family_a::drafts(&cfg, &mut rng),
        Family::B => family_b::drafts(&cfg, &mut rng),
    };
    drafts.sort_by_key(|d| d.time);
    let mut labels: Vec<ChainLabel> = (0..cfg.chains as u32)
        .map(|chain| ChainLabel {
            chain,
            hops: 0,
            crosses_it_ot: false,
            alert_ids: Vec::new(),
        })
        .collect();
    let mut used = HashSet::new();
    let alerts = drafts
        .into_iter()
        .map(|d| {
            let mut id = format!("{:016x}", rng.next_u64());
            while !used.insert(id.clone()) {
                id = format!("{:016x}", rng.next_u64());
            }
            if let Some(c) = d.chain {
                let label = &mut labels[c as usize];
                label.alert_ids.push(id.clone());
                label.hops += u32::from(d.hop);
                label.crosses_it_ot |= d.domain == Domain::OT && d.hop;
            }
            Alert {
                time_generated: d.time,
                alert_id: id,
                alert_name: d.name.into(),
                severity: d.severity,
                domain: d.domain,
                src_ip: d.src,
                dst_ip: d.dst,
                src_host: None,
                dst_host: None,
                dst_port: d.port,
                protocol: d.protocol.map(Into::into),
                tactic: d.tactic.map(Into::into),
                ext: crate::alert::AlertExt {
                    account: d.account,
                    ..Default::default()
                },
            }
        })
        .collect();
    Generated { alerts, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_labels_cover_the_chains() {
        let cfg = GenConfig {
            alerts: 2_000,
            chains: 5,
            seed: 7,
            ..GenConfig::default()
        };
        let a = generate(cfg);
        let b = generate(cfg);
        assert_eq!(a.alerts, b.alerts);
        assert_eq!(a.alerts.len(), 2_000);
        assert!(a
            .alerts
            .windows(2)
            .all(|w| w[0].time_generated <= w[1].time_generated));
        assert_eq!(a.labels.len(), 5);
        assert!(a
            .labels
            .iter()
            .all(|l| (2..=6).contains(&l.hops) && l.alert_ids.len() >= l.hops as usize));
        let c = generate(GenConfig { seed: 8, ..cfg });
        assert_ne!(a.alerts, c.alerts);
    }
}
