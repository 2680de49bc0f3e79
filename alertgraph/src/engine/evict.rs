//! Eviction and final rows: alerts leaving the window, groups emitted whole or in parts, the
//! count/byte bound, the end of a stream, and group-id compaction.

use super::score::score_row;
use super::state::SlotList;
use super::{memory, Engine, NO_GROUP, NO_KIND};
use crate::classify::Stage;
use crate::subgraph::Subgraph;
use std::cmp::Reverse;

impl Engine {
    /// Takes `s` out of the window's background; it waits in its group.
    fn leave_window(&mut self, s: u32) {
        self.uncount(s);
        self.wait(s);
    }

    /// Takes `s` out of the background counters.
    fn uncount(&mut self, s: u32) {
        let slot = self.slot(s);
        let (src, dst, name, kind, counted) =
            (slot.src, slot.dst, slot.name, slot.kind, slot.counted_pair);
        let (stage, evidence, account, opened) =
            (slot.stage, slot.evidence, slot.account, slot.opened);
        let subject = &mut self.nodes[dst as usize];
        if super::counts_as_stage(stage, evidence) {
            subject.stages[stage as usize] -= 1;
        }
        subject.evidence -= u32::from(evidence);
        self.count_account(src, account, false);
        let attack = src != dst && matches!(stage, Stage::Recon | Stage::Attempt);
        if opened {
            self.nodes[src as usize].opened -= 1;
        } else if counted && src != dst {
            self.nodes[src as usize].repeated -= 1;
        }
        self.rules.change(name, false);
        self.count_kind(src, kind, false);
        self.nodes[src as usize].sent -= 1;
        if counted {
            if let Some(p) = self.pairs.get_mut(&(src, dst)) {
                if src != dst && kind != NO_KIND && !p.count_kind(kind, false) {
                    p.spilled -= 1;
                    let key = (src, dst, kind);
                    if let Some(c) = self.pair_kinds.get_mut(&key) {
                        *c -= 1;
                        if *c == 0 {
                            self.pair_kinds.remove(&key);
                        }
                    }
                }
                if attack {
                    p.attacks -= 1;
                    if p.attacks == 0 {
                        self.nodes[src as usize].attacked -= 1;
                    }
                }
                if src != dst && p.count == 1 {
                    self.nodes[src as usize].singles -= 1;
                } else if src != dst && p.count == 2 {
                    self.nodes[src as usize].singles += 1;
                }
                p.count -= 1;
                if p.count == 0 {
                    self.pairs.remove(&(src, dst));
                    if src != dst {
                        self.nodes[src as usize].degree -= 1;
                        self.nodes[dst as usize].degree -= 1;
                        self.distinct_pairs -= 1;
                    }
                }
            }
        }
    }

    /// Puts `s` (out of the window) in its group's waiting part and queues the group's check.
    fn wait(&mut self, s: u32) {
        let slot = self.slot(s);
        let (time, group) = (slot.time, slot.group);
        let root = self.find(group);
        let hold = self.hold_ms();
        let g = &mut self.groups[root as usize];
        let mut pending = g.pending;
        pending.push(s, &mut self.slots);
        let g = &mut self.groups[root as usize];
        g.pending = pending;
        g.pending_oldest = g.pending_oldest.min(time);
        let due = g.newest.min(g.pending_oldest.saturating_add(hold));
        if due < g.scheduled {
            g.scheduled = due;
            self.checks.push(Reverse((due, root)));
        }
    }

    /// Emits `root`'s waiting alerts as a row when due: all of them when the group closed
    /// (its newest alert left the window), the waiting part when it has straddled the window
    /// edge for half a window, or at once when `forced`.
    fn check(&mut self, root: u32, cutoff: i64, forced: bool, out: &mut Vec<Subgraph>) {
        self.check_counted(root, cutoff, forced, false, out);
    }

    /// [`Engine::check`]; `counted` when the waiting alerts are still in the background.
    fn check_counted(
        &mut self,
        root: u32,
        cutoff: i64,
        forced: bool,
        counted: bool,
        out: &mut Vec<Subgraph>,
    ) {
        let hold = self.hold_ms();
        let g = &mut self.groups[root as usize];
        g.scheduled = i64::MAX;
        if g.live == 0 || g.pending.len == 0 {
            return;
        }
        let closed = g.newest < cutoff;
        if closed || forced || g.pending_oldest < cutoff.saturating_sub(hold) {
            let list = std::mem::replace(&mut g.pending, SlotList::EMPTY);
            g.pending_oldest = i64::MAX;
            g.live -= list.len;
            let closes = g.live == 0;
            let star = g.star;
            if closes {
                if let Some(h) = star {
                    if self.stars.get(&h) == Some(&root) {
                        self.stars.remove(&h);
                    }
                }
            }
            self.emit(list, counted, star, out);
        } else {
            let due = g.newest.min(g.pending_oldest.saturating_add(hold));
            g.scheduled = due;
            self.checks.push(Reverse((due, root)));
        }
    }

    /// Emits the row of `list` (a group's waiting alerts) and frees its alerts.
    fn emit(&mut self, list: SlotList, counted: bool, star: Option<u32>, out: &mut Vec<Subgraph>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        list.collect_into(&self.slots, &mut scratch.part);
        scratch.part.sort_unstable_by(|&a, &b| {
            let (x, y) = (self.slot(a), self.slot(b));
            x.time.cmp(&y.time).then_with(|| x.id.cmp(&y.id))
        });
        out.push(score_row(self, counted, star, &mut scratch));
        self.remember_row(&scratch.part);
        for &s in &scratch.part {
            let slot = self.slots[s as usize].take().expect("live slot");
            self.seen.remove(&slot.hash);
            self.bytes -= memory::text_bytes(&slot.id);
            self.release(slot.src);
            self.release(slot.dst);
            if self.names.release(slot.name) {
                self.forget_name(slot.name);
            }
            self.protocols.release(slot.protocol);
            self.tactics.release(slot.tactic);
            self.free_slots.push(s);
        }
        self.scratch = scratch;
    }

    /// Emits the rows that are final now: groups that closed, parts of groups that straddle
    /// the window edge, and, when the count or byte bound is exceeded, the oldest alerts early
    /// (counted in [`Engine::early_evictions`]). Cheap when nothing is due.
    pub fn evict(&mut self) -> Vec<Subgraph> {
        let mut out = Vec::new();
        let cutoff = self.window_start();
        while let Some(&s) = self.window.front() {
            if self.slot(s).time >= cutoff {
                break;
            }
            self.window.pop_front();
            self.leave_window(s);
        }
        while let Some(&Reverse((due, g))) = self.checks.peek() {
            if due >= cutoff {
                break;
            }
            self.checks.pop();
            let root = self.find(g);
            self.check(root, cutoff, false, &mut out);
        }
        if self.held() > self.cfg.max_alerts || self.held_bytes() > self.cfg.max_bytes {
            self.evict_early(cutoff, &mut out);
        }
        self.compact_groups();
        out
    }

    /// The bound is exceeded: emit waiting parts oldest first, then move the oldest tenth of
    /// the window out and emit it, until the engine is at 90 % of its bound.
    ///
    /// A little at a time (a hundredth of the window per step, down to 95 % of the bound), so
    /// the rows emitted at once stay few. Bytes: what the tables hold is worked down; when
    /// their allocations still exceed the bound (they grew for a larger window), they are given
    /// back to the allocator.
    fn evict_early(&mut self, cutoff: i64, out: &mut Vec<Subgraph>) {
        let target_alerts = self.cfg.max_alerts / 20 * 19;
        let target_bytes = self.cfg.max_bytes / 20 * 19;
        let over = |e: &Self| e.held() > target_alerts || e.live_bytes() > target_bytes;
        let before = self.held();
        self.emitting_early = true;
        while over(self) {
            if let Some(Reverse((_, g))) = self.checks.pop() {
                let root = self.find(g);
                self.check(root, cutoff, true, out);
                continue;
            }
            let chunk = (self.window.len() / 100).max(1);
            let mut roots = Vec::new();
            for _ in 0..chunk {
                let Some(s) = self.window.pop_front() else {
                    break;
                };
                self.leave_window(s);
                roots.push(self.slot(s).group);
            }
            if roots.is_empty() {
                break;
            }
            for g in roots {
                let root = self.find(g);
                self.check(root, cutoff, true, out);
            }
        }
        self.emitting_early = false;
        if self.held_bytes() > self.cfg.max_bytes {
            self.shrink();
        }
        if self.held() < before {
            self.early.times += 1;
            self.early.alerts += (before - self.held()) as u64;
        }
    }

    /// Emits every group still held, as at the end of a stream, scored against the window as
    /// it stands; the engine is empty afterwards.
    pub fn finish(&mut self) -> Vec<Subgraph> {
        let mut out = Vec::new();
        let window = std::mem::take(&mut self.window);
        // Rows are scored against the window as it stood (their own alerts still counted).
        self.finishing = Some(window.len());
        for &s in &window {
            self.wait(s);
        }
        while let Some(Reverse((_, g))) = self.checks.pop() {
            let root = self.find(g);
            self.check_counted(root, i64::MAX, true, true, &mut out);
        }
        self.finishing = None;
        self.pairs.clear();
        self.rules.clear();
        self.clear_kinds();
        self.accounts.clear();
        self.node_accounts.clear();
        self.distinct_pairs = 0;
        self.stars.clear();
        self.compact_groups();
        out
    }

    /// Frees merged-away and emitted group ids once they outnumber the groups in use, so
    /// group memory stays proportional to the alerts held (amortised O(1) per alert).
    fn compact_groups(&mut self) {
        let in_use = self.groups.len() - self.free_groups.len();
        if in_use < 2 * self.groups_after_compaction + 4096 {
            return;
        }
        self.compact_groups_now();
    }

    /// [`Engine::compact_groups`] whatever the count: afterwards no free group id is named
    /// anywhere.
    pub(super) fn compact_groups_now(&mut self) {
        let n = self.groups.len();
        self.point_at_roots();
        // A group id stays when it is a live root. What names an emitted group (a pair whose
        // alerts in the window joined other groups, a remembered incoming alert) names no
        // group from now on, which `live_root` reads as it read the emitted group: "none".
        // Nothing is removed, so compaction never changes what the engine decides.
        let mut keep = vec![false; n];
        for s in self.slots.iter().flatten() {
            keep[s.group as usize] = true;
        }
        self.forget_groups_not_kept(&keep);
        self.free_groups = (0..n as u32).rev().filter(|&g| !keep[g as usize]).collect();
        self.groups_after_compaction = n - self.free_groups.len();
    }

    /// Points every group id held (slots, pairs, incoming alerts, evidence, episodes, stars,
    /// scheduled checks) at the root of its group.
    fn point_at_roots(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(g) = self.slots[i].as_ref().map(|s| s.group) {
                let root = self.find(g);
                self.slots[i].as_mut().expect("live slot").group = root;
            }
        }
        let pairs: Vec<((u32, u32), u32)> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.group != NO_GROUP)
            .map(|(k, p)| (*k, p.group))
            .collect();
        for (k, g) in pairs {
            let root = self.find(g);
            self.pairs.get_mut(&k).expect("pair").group = root;
        }
        for n in 0..self.nodes.len() {
            for i in 0..self.nodes[n].recent_in.len() {
                let g = self.nodes[n].recent_in[i].group;
                if g != NO_GROUP {
                    let root = self.find(g);
                    self.nodes[n].recent_in[i].group = root;
                }
            }
            for i in 0..self.nodes[n].recent_by_identity.len() {
                let g = self.nodes[n].recent_by_identity[i].group;
                if g != NO_GROUP {
                    let root = self.find(g);
                    self.nodes[n].recent_by_identity[i].group = root;
                }
            }
        }
        for n in 0..self.nodes.len() {
            let g = self.nodes[n].evidence_group;
            if g != NO_GROUP && (g as usize) < self.groups.len() {
                self.nodes[n].evidence_group = self.find(g);
            }
        }
        let episodes: Vec<((u32, u32), u32)> = self
            .node_kinds
            .iter()
            .filter(|(_, k)| k.episode != NO_GROUP)
            .map(|(key, k)| (*key, k.episode))
            .collect();
        for (key, g) in episodes {
            let root = self.find(g);
            self.node_kinds.get_mut(&key).expect("kind").episode = root;
        }
        let stars: Vec<(u32, u32)> = self.stars.iter().map(|(h, g)| (*h, *g)).collect();
        for (h, g) in stars {
            let root = self.find(g);
            self.stars.insert(h, root);
        }
        let checks = std::mem::take(&mut self.checks).into_vec();
        for Reverse((due, g)) in checks {
            let root = self.find(g);
            self.checks.push(Reverse((due, root)));
        }
    }

    /// Makes every id of a group not in `keep` name no group, and drops the stars and checks
    /// of such groups.
    fn forget_groups_not_kept(&mut self, keep: &[bool]) {
        let dead = |g: u32| g != NO_GROUP && !keep[g as usize];
        for node in &mut self.nodes {
            for i in node
                .recent_in
                .iter_mut()
                .chain(&mut node.recent_by_identity)
            {
                if dead(i.group) {
                    i.group = NO_GROUP;
                }
            }
        }
        for p in self.pairs.values_mut() {
            if dead(p.group) {
                p.group = NO_GROUP;
            }
        }
        for node in &mut self.nodes {
            if dead(node.evidence_group) {
                node.evidence_group = NO_GROUP;
            }
        }
        for k in self.node_kinds.values_mut() {
            if dead(k.episode) {
                k.episode = NO_GROUP;
            }
        }
        self.stars.retain(|_, g| keep[*g as usize]);
        let mut checks = std::mem::take(&mut self.checks).into_vec();
        checks.retain(|Reverse((_, g))| keep[*g as usize]);
        checks.sort_unstable();
        checks.dedup();
        self.checks = checks.into();
    }
}
