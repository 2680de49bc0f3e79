//! How one alert enters the window: admitted (in the window, not a duplicate), placed as actor →
//! subject, joined to a group (a star, an episode, a story or its pair's routine), counted, and
//! held in time order.

use super::*;

/// Where a new alert sits: its nodes (actor → subject), interned texts and class.
struct Placed {
    src: u32,
    dst: u32,
    name: u32,
    protocol: u32,
    tactic: u32,
    stage: Stage,
    host_only: bool,
    /// Held against the sensor's direction (a response, a compromised host's own traffic).
    reversed: bool,
    /// Compromise evidence: a compromise stage of a rare kind.
    evidence: bool,
    /// Reconnaissance or an attempt on another host.
    attack: bool,
    arrival: Arrival,
}

/// The group a new alert joins, and how.
struct Joined {
    group: u32,
    /// Information (nats) of the link that brought it, 0 when none.
    link: f32,
    /// Linked into a story from a host-only alert (the pair is not counted).
    attached: bool,
    /// The pair keeps its own group (the alert went to a story or an episode).
    kept_pair: bool,
}

impl Joined {
    fn own(group: u32) -> Self {
        Joined {
            group,
            link: 0.0,
            attached: false,
            kept_pair: false,
        }
    }
}

impl Engine {
    /// [`Engine::ingest`] of a view (text borrowed from the input).
    pub fn ingest_view(&mut self, alert: &AlertView<'_>) -> Result<(), Rejected> {
        let hash = self.admit(alert)?;
        let placed = self.place(alert);
        let joined = self.join(&placed);
        let opened = self.count_arrival(&placed, &joined);
        self.hold(alert, &placed, &joined, hash, opened);
        Ok(())
    }

    /// Refuses an alert older than the window or already in it; from here on it is held.
    fn admit(&mut self, alert: &AlertView<'_>) -> Result<u64, Rejected> {
        if self.max_time != i64::MIN && alert.time_generated < self.window_start() {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: format!(
                    "TimeGenerated is older than the window ({} min before the newest alert)",
                    self.cfg.window_ms / 60_000
                ),
            });
        }
        let hash = self.id_hasher.hash_one(&*alert.alert_id);
        if !self.seen.insert(hash) {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: "duplicate AlertId (already in the window)".into(),
            });
        }
        self.arrivals += 1;
        self.max_time = self.max_time.max(alert.time_generated);
        Ok(hash)
    }

    /// The alert's nodes, held as actor → subject, its interned texts and its class.
    fn place(&mut self, alert: &AlertView<'_>) -> Placed {
        // A host known only by name (no address) is its own node, keyed by the name.
        let src_key = match &*alert.src_ip {
            "" => alert.src_host.as_deref().unwrap_or_default(),
            ip => ip,
        };
        let dst_key = alert.dst_ip.as_deref().or(alert.dst_host.as_deref());
        let src = self.node(src_key, alert.src_host.as_deref(), alert.domain);
        let dst = match dst_key {
            Some(key) if key != src_key => self.node(key, alert.dst_host.as_deref(), alert.domain),
            _ => {
                self.nodes[src as usize].refs += 1;
                src
            }
        };
        let name = self.names.intern(Some(&alert.alert_name));
        let protocol = self.protocols.intern(alert.protocol.as_deref());
        let tactic = self.tactics.intern(alert.tactic.as_deref());
        let kind = self.kind(name, protocol);
        let ext = alert.ext.as_deref();
        let class = self.class_of(name, alert, tactic);
        let host_only = src == dst;
        // Every network alert is held as actor → subject: a response, or a compromised host's
        // own traffic (its beacon, the output an attack got back), is about its source.
        let direction = infer_direction(
            ext.and_then(|e| e.direction),
            ext.and_then(|e| e.src_port),
            alert.dst_port,
        );
        let reversed = !host_only
            && match class.subject {
                Subject::Source => {
                    !(class.stage == Stage::Control && direction == Direction::Response)
                }
                Subject::Destination => direction == Direction::Response,
            };
        let (src, dst) = if reversed { (dst, src) } else { (src, dst) };
        let arrival = Arrival {
            time: alert.time_generated,
            name,
            kind,
            identity: self.identity_of(ext),
        };
        let rare_kind = self.kind_is_rare(kind, self.window.len(), 1);
        Placed {
            src,
            dst,
            name,
            protocol,
            tactic,
            stage: class.stage,
            host_only,
            reversed,
            evidence: class.stage.is_compromise() && rare_kind,
            attack: !host_only && matches!(class.stage, Stage::Recon | Stage::Attempt),
            arrival,
        }
    }

    /// The group the alert joins: a hub's or a campaign's star, a host-only episode or story,
    /// an evidence episode, a story it continues improbably, or its pair's routine group.
    fn join(&mut self, p: &Placed) -> Joined {
        let pair_before = self.pairs.get(&(p.src, p.dst)).copied();
        let star = if p.host_only || p.evidence {
            None
        } else if p.attack && self.nodes[p.src as usize].attacked >= CAMPAIGN_VICTIMS {
            Some(p.src)
        } else {
            [p.src, p.dst].into_iter().find(|&n| self.is_hub(n))
        };
        if let Some(t) = self.trace.as_mut() {
            t.push(LinkTrace {
                arrival: self.arrivals,
                kind: if star.is_some() {
                    0
                } else if p.host_only {
                    1
                } else {
                    2
                },
                pair_count: pair_before.map_or(0, |p| p.count),
                pair_factor: 1.0,
                ..LinkTrace::default()
            });
        }
        if let Some(h) = star {
            return Joined::own(self.star_group(h));
        }
        if p.host_only {
            return self.join_host_only(p);
        }
        let pair_group = pair_before.and_then(|pair| self.live_root(pair.group));
        if p.evidence {
            return self.join_evidence(p, pair_before, pair_group);
        }
        if let Some(l) = self.fresh_kind_link(p.src, p.dst, &p.arrival, pair_before) {
            // A kind the routine pair has not carried, improbable after a story on its source:
            // it joins the story, not the pair's routine group (which keeps the pair).
            self.trace_linked();
            self.spend_link(p.src, l.entry);
            self.remember_incoming(p.dst, &p.arrival, l.group);
            return Joined {
                group: l.group,
                link: l.info,
                attached: false,
                kept_pair: true,
            };
        }
        self.join_pair(p, pair_before, pair_group)
    }

    /// The live group of hub or campaign source `h` (a new one when it has none).
    fn star_group(&mut self, h: u32) -> u32 {
        let star = self.stars.get(&h).copied();
        match star.and_then(|g| self.live_root(g)) {
            Some(g) => g,
            None => {
                let g = self.new_group(Some(h));
                self.stars.insert(h, g);
                g
            }
        }
    }

    /// A host-only alert continues a story on its host, or joins the host's episode.
    fn join_host_only(&mut self, p: &Placed) -> Joined {
        match self.best_link(p.src, &p.arrival, false) {
            Some(link) => {
                let entry = self.incoming_mut(p.src, link.entry);
                entry.chance = (entry.chance * link.expected as f32).max(MIN_CHANCE);
                self.trace_linked();
                Joined {
                    group: link.group,
                    link: link.info,
                    attached: true,
                    kept_pair: false,
                }
            }
            // Host-only alerts form episodes by host, kind and time: a flood of one rule is
            // one row, and never hides a rare alert after it.
            None => Joined {
                group: if p.evidence {
                    self.evidence_episode(p.src, p.arrival.time)
                } else {
                    self.host_episode(p.src, p.arrival.kind, p.arrival.time)
                },
                link: 0.0,
                attached: false,
                kept_pair: true,
            },
        }
    }

    /// Compromise evidence about `dst` is an episode of its own, never part of the pair's
    /// routine (an attacker's floods). A hop that carries it (remote execution on `dst`)
    /// continues a story into `src` when that is improbable by chance; a host's own traffic (a
    /// beacon, an attack response) is a finding about it, not a hop. It joins its pair's group
    /// while that is a story's size (a probe then the exploit on one pair), never a flood's or
    /// a campaign's.
    fn join_evidence(
        &mut self,
        p: &Placed,
        pair_before: Option<Pair>,
        pair_group: Option<u32>,
    ) -> Joined {
        let (src, dst, time) = (p.src, p.dst, p.arrival.time);
        let mut g = match pair_group {
            Some(pg)
                if self.groups[pg as usize].live <= MAX_LINKED_GROUP
                    && self.groups[pg as usize].star.is_none() =>
            {
                let n = &mut self.nodes[dst as usize];
                n.evidence_group = pg;
                n.evidence_last = n.evidence_last.max(time);
                pg
            }
            _ => self.evidence_episode(dst, time),
        };
        let mut link = 0.0;
        let rare = pair_before.map_or(0, |p| p.count) < RARE_PAIR
            && self.groups[g as usize].live <= MAX_LINKED_GROUP;
        if !p.reversed {
            if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                t.kind = if rare { 3 } else { 2 };
            }
            // On a rare pair, as any hop; on a routine one, as a kind new on it.
            let found = if rare {
                self.best_link(src, &p.arrival, pair_before.is_none())
            } else {
                self.fresh_kind_link(src, dst, &p.arrival, pair_before)
            };
            if let Some(l) = found {
                self.trace_linked();
                g = self.union(g, l.group);
                link = l.info;
                self.spend_link(src, l.entry);
                self.nodes[dst as usize].evidence_group = g;
            }
            if rare || found.is_some() {
                self.remember_incoming(dst, &p.arrival, g);
            }
        }
        Joined {
            group: g,
            link,
            attached: false,
            kept_pair: true,
        }
    }

    /// An alert on a routine pair joins the pair's group; on a rare pair it may continue a
    /// story on its source improbably, and is remembered as a hop into its destination.
    fn join_pair(
        &mut self,
        p: &Placed,
        pair_before: Option<Pair>,
        pair_group: Option<u32>,
    ) -> Joined {
        let mut g = pair_group.unwrap_or_else(|| self.new_group(None));
        let rare = pair_before.map_or(0, |p| p.count) < RARE_PAIR
            && self.groups[g as usize].live <= MAX_LINKED_GROUP;
        let mut link = 0.0;
        if rare {
            if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                t.kind = 3;
            }
            if let Some(l) = self.best_link(p.src, &p.arrival, pair_before.is_none()) {
                self.trace_linked();
                g = self.union(g, l.group);
                link = l.info;
                self.spend_link(p.src, l.entry);
            }
            self.remember_incoming(p.dst, &p.arrival, g);
        } else {
            self.remember_identity(p.dst, &p.arrival, g);
        }
        Joined {
            group: g,
            link,
            attached: false,
            kept_pair: false,
        }
    }

    /// Half the evidence on the node (in nats) is spent by a continuation: a second one out of
    /// it (a chance one before the real one, or a fan-out) needs more of its own.
    fn spend_link(&mut self, node: u32, entry: usize) {
        let chance = &mut self.incoming_mut(node, entry).chance;
        *chance = chance.sqrt();
    }

    /// Marks the traced arrival as linked (when tracing).
    fn trace_linked(&mut self) {
        if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
            t.linked = true;
        }
    }

    /// Background counters (rules, kinds, accounts, stages, evidence, the pair and its actor)
    /// and the group's size; true when the alert opened its pair.
    fn count_arrival(&mut self, p: &Placed, j: &Joined) -> bool {
        let (src, dst, kind, time) = (p.src, p.dst, p.arrival.kind, p.arrival.time);
        self.rules.change(p.name, true);
        self.nodes[src as usize].sent += 1;
        self.count_kind(src, kind, true);
        self.count_account(src, p.arrival.identity.account, true);
        let subject = &mut self.nodes[dst as usize];
        if counts_as_stage(p.stage, p.evidence) {
            subject.stages[p.stage as usize] += 1;
        }
        if p.evidence {
            subject.evidence += 1;
            subject.top_evidence = subject.top_evidence.max(p.stage);
            subject.last_evidence = subject.last_evidence.max(time);
        }
        let opened = !j.attached && self.count_pair(p, j);
        let g = &mut self.groups[j.group as usize];
        g.live += 1;
        g.newest = g.newest.max(time);
        opened
    }

    /// The pair's counts and its actor's; true when the alert opened the pair.
    fn count_pair(&mut self, p: &Placed, j: &Joined) -> bool {
        let (src, dst, kind, host_only) = (p.src, p.dst, p.arrival.kind, p.host_only);
        let pair = self.pairs.entry((src, dst)).or_insert(Pair::NEW);
        pair.count += 1;
        if !host_only && kind != NO_KIND && !pair.count_kind(kind, true) {
            pair.spilled += 1;
            *self.pair_kinds.entry((src, dst, kind)).or_insert(0) += 1;
        }
        if !j.kept_pair {
            pair.group = j.group;
        }
        if p.attack {
            pair.attacks += 1;
            if pair.attacks == 1 {
                let actor = &mut self.nodes[src as usize];
                actor.attacked += 1;
                actor.campaign |= actor.attacked >= CAMPAIGN_VICTIMS;
            }
        }
        let count = pair.count;
        if host_only {
            return false;
        }
        let actor = &mut self.nodes[src as usize];
        match count {
            1 => actor.singles += 1,
            2 => actor.singles -= 1,
            _ => {}
        }
        if count > 1 {
            actor.repeated += 1;
            return false;
        }
        actor.opened += 1;
        actor.degree += 1;
        self.nodes[dst as usize].degree += 1;
        self.distinct_pairs += 1;
        true
    }

    /// Stores the alert's slot and keeps the window in time order (a late alert is inserted
    /// near the back, which is cheap).
    fn hold(&mut self, alert: &AlertView<'_>, p: &Placed, j: &Joined, hash: u64, opened: bool) {
        let time = p.arrival.time;
        let slot = Slot {
            time,
            src: p.src,
            dst: p.dst,
            severity: alert.severity,
            domain: alert.domain,
            protocol: p.protocol,
            tactic: p.tactic,
            name: p.name,
            kind: p.arrival.kind,
            id: (*alert.alert_id).into(),
            hash,
            link: j.link,
            stage: p.stage,
            evidence: p.evidence,
            reversed: p.reversed,
            account: p.arrival.identity.account,
            attached: j.attached,
            group: j.group,
            counted_pair: !j.attached,
            opened,
            next: NO_SLOT,
        };
        self.bytes += memory::text_bytes(&slot.id);
        let s = tables::put(&mut self.slots, &mut self.free_slots, Some(slot));
        if self
            .window
            .back()
            .is_none_or(|&w| self.slot(w).time <= time)
        {
            self.window.push_back(s);
        } else {
            let at = self.window.partition_point(|&w| self.slot(w).time <= time);
            self.window.insert(at, s);
        }
    }
}
