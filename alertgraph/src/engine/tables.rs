//! Interning tables and per-rule counters: the engine's [`Strings`] and [`RuleCounts`].

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Interned short strings (protocols, tactics, alert names); index 0 is "none".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Strings {
    pub(crate) values: Vec<Arc<str>>,
    #[serde(skip)]
    index: HashMap<Arc<str>, u32>,
    limit: usize,
}

impl Strings {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            values: vec!["".into()],
            index: HashMap::new(),
            limit,
        }
    }

    pub(super) fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        if self.values.len() >= self.limit {
            return 0; // an attacker cannot grow this table without bound
        }
        let i = self.values.len() as u32;
        let s: Arc<str> = s.into();
        self.values.push(s.clone());
        self.index.insert(s, i);
        i
    }

    pub(super) fn reindex(&mut self) {
        self.index = self
            .values
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
    }

    pub(crate) fn get(&self, i: u32) -> Option<&str> {
        self.shared(i).map(|s| &**s)
    }

    /// The interned text itself, to share.
    pub(crate) fn shared(&self, i: u32) -> Option<&Arc<str>> {
        (i != 0).then(|| &self.values[i as usize])
    }
}

/// Alerts per rule in the window, and the tail mass a rule's rarity is judged by: the
/// alerts of every rule at most about as rare as it (power-of-two classes of count). Forty
/// rules that each fire rarely are, together, not rare; one rule that fires rarely is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RuleCounts {
    counts: Vec<u32>,
    /// Distinct nodes that sent each rule in the window.
    senders: Vec<u32>,
    /// Alerts per class (class = bit length of the rule's count).
    mass: Vec<u64>,
}

impl RuleCounts {
    pub(super) fn new() -> Self {
        Self {
            counts: Vec::new(),
            senders: Vec::new(),
            mass: vec![0; 33],
        }
    }

    fn class(count: u32) -> usize {
        (32 - count.leading_zeros()) as usize
    }

    pub(super) fn change(&mut self, rule: u32, up: bool) {
        let r = rule as usize;
        if self.counts.len() <= r {
            self.counts.resize(r + 1, 0);
        }
        let before = self.counts[r];
        let after = if up { before + 1 } else { before - 1 };
        self.mass[Self::class(before)] -= u64::from(before);
        self.mass[Self::class(after)] += u64::from(after);
        self.counts[r] = after;
    }

    /// A node started (`up`) or stopped sending `rule` in the window.
    pub(super) fn sender(&mut self, rule: u32, up: bool) {
        let r = rule as usize;
        if self.senders.len() <= r {
            self.senders.resize(r + 1, 0);
        }
        if up {
            self.senders[r] += 1;
        } else {
            self.senders[r] -= 1;
        }
    }

    /// Distinct senders of `rule` per alert of it in the window (1 when it has none): near 1
    /// for a rule any host may send, small for one a few hosts send over and over.
    pub(crate) fn spread(&self, rule: u32) -> f64 {
        let count = self.count(rule);
        if count == 0 {
            return 1.0;
        }
        f64::from(self.senders.get(rule as usize).copied().unwrap_or(0).max(1)) / f64::from(count)
    }

    /// Alerts of `rule` in the window.
    pub(crate) fn count(&self, rule: u32) -> u32 {
        self.counts.get(rule as usize).copied().unwrap_or(0)
    }

    /// Alerts in the window of rules at most as frequent as `count` (same class or rarer).
    pub(crate) fn tail(&self, count: u32) -> u64 {
        self.mass[..=Self::class(count)].iter().sum()
    }

    pub(super) fn clear(&mut self) {
        *self = Self::new();
    }
}
