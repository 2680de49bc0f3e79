//! What past windows saw, beyond the window itself: for each (pair, kind), (host, kind) and kind,
//! the last day it was seen and on how many days, over about five weeks, in a table of fixed
//! size. Weekly maintenance or monthly patching is new the first time and routine the second.
//!
//! Keys are keyed hashes of the text (addresses, rule and protocol), so the profile survives
//! the window's own tables, which reuse their indexes. The table is set-associative: a key
//! lives in one set of [`WAYS`] places; a new key takes an empty or expired place, or the one
//! seen least recently. Its size never grows: [`History::held_bytes`] is fixed by the capacity.

use serde::{Deserialize, Serialize};

/// Days a sighting counts.
pub const HISTORY_DAYS: u16 = 35;
/// Places per set.
const WAYS: usize = 8;
const DAY_MS: i64 = 86_400_000;

/// The profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct History {
    /// Key hashes (0 = empty).
    keys: Vec<u64>,
    /// Per place: last day seen (low 16 bits) and days seen (high 16 bits).
    seen: Vec<u32>,
    /// Seeds of the key hash (kept with the profile: keys hashed before a restore match those
    /// hashed after it).
    seeds: [u64; 4],
    /// Places taken over from a key still within its five weeks (the profile was full).
    pub(crate) displaced: u64,
    /// Sightings recorded.
    pub(crate) recorded: u64,
}

/// A key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// Last day seen (days since 1970, modulo 2^16).
    pub(crate) last_day: u16,
    /// Days it was seen on.
    pub(crate) days: u16,
}

/// A day number of unix milliseconds.
pub(crate) fn day_of(ms: i64) -> u16 {
    ms.div_euclid(DAY_MS) as u16
}

impl History {
    /// A profile of `entries` places (rounded up to whole sets), keyed by `seed` (0: random).
    pub(crate) fn new(entries: usize, seed: u64) -> Self {
        let sets = entries.div_ceil(WAYS).max(1);
        let r = if seed == 0 {
            ahash::RandomState::new()
        } else {
            ahash::RandomState::with_seeds(seed, seed ^ 0x9e37, seed ^ 0x79b9, seed ^ 0x7f4a)
        };
        History {
            keys: vec![0; sets * WAYS],
            seen: vec![0; sets * WAYS],
            seeds: [10u64, 11, 12, 13].map(|i| r.hash_one(i)),
            displaced: 0,
            recorded: 0,
        }
    }

    /// Bytes the profile holds.
    pub(crate) fn held_bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.seen.capacity() * 4
    }

    /// The key of `parts` (never 0).
    pub(crate) fn key(&self, parts: &[&str]) -> u64 {
        let [a, b, c, d] = self.seeds;
        ahash::RandomState::with_seeds(a, b, c, d)
            .hash_one(parts)
            .max(1)
    }

    fn set(&self, key: u64) -> std::ops::Range<usize> {
        let sets = self.keys.len() / WAYS;
        let start = (key % sets as u64) as usize * WAYS;
        start..start + WAYS
    }

    fn age(today: u16, day: u16) -> u16 {
        today.wrapping_sub(day)
    }

    /// Records a sighting of `key` on `day`.
    pub(crate) fn record(&mut self, key: u64, day: u16) {
        self.recorded += 1;
        let set = self.set(key);
        if let Some(i) = set.clone().find(|&i| self.keys[i] == key) {
            let (last, days) = (self.seen[i] as u16, (self.seen[i] >> 16) as u16);
            if last != day && Self::age(day, last) < 0x8000 {
                self.seen[i] = u32::from(day) | u32::from(days.saturating_add(1)) << 16;
            }
            return;
        }
        // An empty place, else the one seen longest ago.
        let victim = set.clone().find(|&i| self.keys[i] == 0).unwrap_or_else(|| {
            set.max_by_key(|&i| Self::age(day, self.seen[i] as u16))
                .expect("a set has places")
        });
        if self.keys[victim] != 0 && Self::age(day, self.seen[victim] as u16) < HISTORY_DAYS {
            self.displaced += 1;
        }
        self.keys[victim] = key;
        self.seen[victim] = u32::from(day) | 1 << 16;
    }

    /// What the profile holds of `key` as of `today`: seen within the last five weeks.
    pub(crate) fn get(&self, key: u64, today: u16) -> Option<Sighting> {
        let i = self.set(key).find(|&i| self.keys[i] == key)?;
        let last_day = self.seen[i] as u16;
        (Self::age(today, last_day) < HISTORY_DAYS).then(|| Sighting {
            last_day,
            days: (self.seen[i] >> 16) as u16,
        })
    }

    /// Seen on a day before `today`, within the last five weeks.
    pub(crate) fn seen_before(&self, key: u64, today: u16) -> bool {
        self.get(key, today)
            .is_some_and(|s| s.last_day != today || s.days > 1)
    }
}

impl super::Engine {
    /// The history keys of an alert on `src` → `dst` of rule `name` on `protocol`: the pair
    /// with the kind, the subject with the kind, and the kind.
    pub(super) fn history_keys(&self, src: u32, dst: u32, name: u32, protocol: u32) -> [u64; 3] {
        let text = |n: u32| &*self.nodes[n as usize].ip;
        let rule = self.names.get(name).unwrap_or_default();
        let protocol = self.protocols.get(protocol).unwrap_or_default();
        [
            self.history
                .key(&["pair", text(src), text(dst), rule, protocol]),
            self.history.key(&["host", text(dst), rule, protocol]),
            self.history.key(&["kind", rule, protocol]),
        ]
    }

    /// Records what an emitted row saw in the history profile, once per pair and kind.
    pub(super) fn remember_row(&mut self, part: &[u32]) {
        let mut done: Vec<(u32, u32, u32, u32, u16)> = Vec::new();
        for &s in part {
            let slot = self.slot(s);
            let key = (
                slot.src,
                slot.dst,
                slot.name,
                slot.protocol,
                day_of(slot.time),
            );
            if done.contains(&key) || done.len() >= 256 {
                continue;
            }
            done.push(key);
            for k in self.history_keys(key.0, key.1, key.2, key.3) {
                self.history.record(k, key.4);
            }
        }
    }

    /// Whether this pair carried this kind on an earlier day within five weeks.
    pub(super) fn pair_kind_seen_before(
        &self,
        src: u32,
        dst: u32,
        name: u32,
        protocol: u32,
        time: i64,
    ) -> bool {
        let text = |n: u32| &*self.nodes[n as usize].ip;
        let rule = self.names.get(name).unwrap_or_default();
        let protocol = self.protocols.get(protocol).unwrap_or_default();
        let key = self
            .history
            .key(&["pair", text(src), text(dst), rule, protocol]);
        self.history.seen_before(key, day_of(time))
    }

    /// Whether the profile holds anything yet.
    pub(super) fn has_history(&self) -> bool {
        self.history.recorded > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_seen_before_on_a_later_day_until_five_weeks_pass() {
        let mut h = History::new(64, 0);
        let k = h.key(&["10.0.0.1", "10.0.0.2", "PLC program download"]);
        h.record(k, 100);
        assert!(!h.seen_before(k, 100), "the first day is not 'before'");
        assert!(h.seen_before(k, 107));
        assert!(h.seen_before(k, 134));
        assert!(!h.seen_before(k, 135), "35 days later it is forgotten");
        h.record(k, 107);
        assert_eq!(
            h.get(k, 107),
            Some(Sighting {
                last_day: 107,
                days: 2
            })
        );
        assert!(h.seen_before(k, 107), "seen on two days");
    }

    #[test]
    fn the_table_never_grows_and_keeps_the_recent() {
        let mut h = History::new(64, 0);
        let bytes = h.held_bytes();
        for day in 0..30u16 {
            for i in 0..1000u32 {
                let k = h.key(&[&i.to_string(), &day.to_string()]);
                h.record(k, day);
            }
        }
        assert_eq!(h.held_bytes(), bytes);
        assert!(h.displaced > 0, "a full table displaces");
        let recent = h.key(&["999", "29"]);
        assert!(h.get(recent, 29).is_some(), "the newest key is held");
    }
}
