//! Interning tables and per-rule counters: the engine's [`Strings`], [`Kinds`] and
//! [`RuleCounts`].

use crate::{FastMap, TextMap};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Puts `item` at a free index of `items` (the last freed), or at a new one at the end.
pub(super) fn put<T>(items: &mut Vec<T>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(i) => {
            items[i as usize] = item;
            i
        }
        None => {
            items.push(item);
            (items.len() - 1) as u32
        }
    }
}

/// Interned short strings (protocols, tactics, alert names) held by the engine's alerts,
/// counted, so a string leaves the table with the last alert that named it (alert names that
/// carry entity values would otherwise fill it in a long-running stream); index 0 is "none".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Strings {
    pub(crate) values: Vec<Arc<str>>,
    /// Alerts held that name each value.
    refs: Vec<u32>,
    /// Indexes no value holds, for reuse.
    free: Vec<u32>,
    #[serde(skip)]
    index: TextMap<u32>,
    limit: usize,
    /// Bytes of the text held (with each value's allocation header).
    pub(super) text_bytes: usize,
}

impl Strings {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            values: vec!["".into()],
            refs: vec![0],
            free: Vec::new(),
            index: TextMap::default(),
            limit,
            text_bytes: 0,
        }
    }

    /// The index of `s`, counting one more alert that names it; 0 ("none") for no text, and
    /// when `limit` strings are held at once (an attacker cannot grow the table without bound).
    pub(super) fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&i) = self.index.get(s) {
            self.refs[i as usize] += 1;
            return i;
        }
        if self.values.len() - self.free.len() >= self.limit {
            return 0;
        }
        let s: Arc<str> = s.into();
        self.text_bytes += super::memory::text_bytes(&s);
        let i = put(&mut self.values, &mut self.free, s.clone());
        self.refs.resize(self.values.len(), 0);
        self.refs[i as usize] = 1;
        self.index.insert(s, i);
        i
    }

    /// One alert that named `i` is gone; the value leaves the table with the last (true then).
    pub(super) fn release(&mut self, i: u32) -> bool {
        if i == 0 {
            return false;
        }
        let refs = &mut self.refs[i as usize];
        *refs -= 1;
        if *refs == 0 {
            let value = std::mem::replace(&mut self.values[i as usize], "".into());
            self.text_bytes -= super::memory::text_bytes(&value);
            self.index.remove(&value);
            self.free.push(i);
            return true;
        }
        false
    }

    pub(super) fn reindex(&mut self) {
        self.index = self
            .values
            .iter()
            .zip(&self.refs)
            .enumerate()
            .skip(1)
            .filter(|(_, (_, &refs))| refs > 0)
            .map(|(i, (v, _))| (v.clone(), i as u32))
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

/// Alert kinds, (rule name, protocol) → id, for the alerts in the window: a kind leaves the
/// table when its last alert leaves the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Kinds {
    ids: FastMap<(u32, u32), u32>,
    /// The key of each id (unused ids: their last key).
    keys: Vec<(u32, u32)>,
    free: Vec<u32>,
}

impl Kinds {
    /// The id of `key`, a new one when it has none; None when `limit` kinds are held.
    pub(super) fn id(&mut self, key: (u32, u32), limit: usize) -> Option<u32> {
        if let Some(&k) = self.ids.get(&key) {
            return Some(k);
        }
        if self.ids.len() >= limit {
            return None;
        }
        let k = put(&mut self.keys, &mut self.free, key);
        self.ids.insert(key, k);
        Some(k)
    }

    /// Kind `k` has no alert in the window any more.
    pub(super) fn release(&mut self, k: u32) {
        if self.ids.remove(&self.keys[k as usize]).is_some() {
            self.free.push(k);
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        super::memory::map_bytes(self.ids.capacity(), 16)
            + self.keys.capacity() * 8
            + self.free.capacity() * 4
    }

    /// Kinds held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
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

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        (self.counts.capacity() + self.senders.capacity()) * 4 + self.mass.capacity() * 8
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

#[cfg(test)]
mod tests {
    use super::Strings;

    #[test]
    fn a_string_leaves_with_its_last_holder_and_its_index_is_reused() {
        let mut t = Strings::new(3);
        let a = t.intern(Some("a"));
        assert_eq!(t.intern(Some("a")), a);
        let b = t.intern(Some("b"));
        assert_eq!(t.intern(Some("c")), 0, "full: two held besides \"none\"");
        t.release(a);
        assert_eq!(t.get(a), Some("a"), "one holder left");
        t.release(a);
        let c = t.intern(Some("c"));
        assert_eq!(c, a, "a's index is reused");
        assert_eq!((t.get(b), t.get(c)), (Some("b"), Some("c")));
        assert_eq!(t.intern(None), 0);
        t.reindex();
        assert_eq!(
            t.intern(Some("c")),
            c,
            "the index is rebuilt from held values"
        );
    }
}
