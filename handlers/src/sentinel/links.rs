//! Links between an incident's entities. `Incidents_ListEntities` gives every entity once and
//! links them by id (`hostEntityId`, `imageFileEntityId`, `fileHashEntityIds`, …; the
//! `…EntityId`/`…EntityIds` properties of the SecurityInsights entity schemas): resolved here
//! within the incident's list, with links to missing entities and cycles reported, never
//! followed further.

use super::entity::Entity;
use serde_json::Value;
use std::collections::HashMap;

/// Most ids read from one `…EntityIds` list.
const MAX_IDS_PER_LINK: usize = 16;
/// Most link problems (missing targets, cycles) reported per incident.
const MAX_ISSUES: usize = 20;

/// One resolved link: entity `from` names entity `to` in its property `link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Index of the linking entity.
    pub from: usize,
    /// The link, in words (`image file`, `host`, `file hash`).
    pub link: String,
    /// Index of the linked entity.
    pub to: usize,
}

/// The entities of one incident, indexed by id and name.
pub struct Links<'a> {
    entities: &'a [Entity],
    index: HashMap<String, usize>,
}

fn key(reference: &str) -> String {
    reference.trim().to_ascii_lowercase()
}

/// `imageFileEntityId` → `image file`, `fileHashEntityIds` → `file hash`.
fn link_words(property: &str) -> Option<String> {
    let base = property
        .strip_suffix("EntityIds")
        .or_else(|| property.strip_suffix("EntityId"))?;
    let mut words = String::new();
    for c in base.chars() {
        if c.is_ascii_uppercase() {
            words.push(' ');
            words.push(c.to_ascii_lowercase());
        } else {
            words.push(c);
        }
    }
    (!words.is_empty()).then_some(words)
}

impl<'a> Links<'a> {
    /// Indexes `entities` by their ids (full ARM id and its last segment) and names.
    pub fn new(entities: &'a [Entity]) -> Self {
        let mut index = HashMap::new();
        for (i, e) in entities.iter().enumerate() {
            for r in [e.id.as_deref(), e.name.as_deref()].into_iter().flatten() {
                index.entry(key(r)).or_insert(i);
                if let Some(last) = r.rsplit('/').next() {
                    index.entry(key(last)).or_insert(i);
                }
            }
        }
        Self { entities, index }
    }

    /// The entities.
    pub fn entities(&self) -> &'a [Entity] {
        self.entities
    }

    /// The entity `reference` (an ARM id or an entity name) names, if it is in the incident.
    pub fn resolve(&self, reference: &str) -> Option<usize> {
        self.index.get(&key(reference)).copied().or_else(|| {
            reference
                .rsplit('/')
                .next()
                .and_then(|last| self.index.get(&key(last)).copied())
        })
    }

    /// Every link property of entity `i`: its words and each id with what it resolved to.
    pub fn links_of(&self, i: usize) -> Vec<(String, String, Option<usize>)> {
        let mut out = Vec::new();
        let Some(e) = self.entities.get(i) else {
            return out;
        };
        for (property, value) in &e.properties {
            let Some(words) = link_words(property) else {
                continue;
            };
            for id in link_ids(value)
                .into_iter()
                .filter(|id| !id.trim().is_empty())
            {
                out.push((words.clone(), id.to_string(), self.resolve(id)));
            }
        }
        out
    }

    /// The entities entity `i` links to through `property` (`imageFileEntityId`, …).
    pub fn linked(&self, i: usize, property: &str) -> Vec<&'a Entity> {
        let Some(value) = self
            .entities
            .get(i)
            .and_then(|e| e.properties.get(property))
        else {
            return Vec::new();
        };
        link_ids(value)
            .into_iter()
            .filter_map(|id| self.resolve(id))
            .filter(|&to| to != i)
            .map(|to| &self.entities[to])
            .collect()
    }

    /// Every resolved link, and the problems found: links to entities that are not in the
    /// incident, and cycles (each reported once; links are never followed round them).
    pub fn relations(&self) -> (Vec<Relation>, Vec<String>) {
        let mut relations = Vec::new();
        let mut issues = Vec::new();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); self.entities.len()];
        for (i, out) in edges.iter_mut().enumerate() {
            for (link, id, to) in self.links_of(i) {
                match to {
                    Some(to) => {
                        relations.push(Relation { from: i, link, to });
                        out.push(to);
                    }
                    None if issues.len() < MAX_ISSUES => issues.push(format!(
                        "{} {}: its {link} link names {}, which is not among the incident's entities",
                        self.entities[i].kind.chars().take(32).collect::<String>(),
                        self.entities[i].label(),
                        socwire_common::text::for_log(&id, 100)
                    )),
                    None => {}
                }
            }
        }
        // Cycles: an iterative depth-first search (0 unseen, 1 on the path, 2 done).
        let mut state = vec![0u8; self.entities.len()];
        for start in 0..self.entities.len() {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&to) = edges[node].get(*next) {
                    *next += 1;
                    match state[to] {
                        0 => {
                            state[to] = 1;
                            stack.push((to, 0));
                        }
                        1 if issues.len() < MAX_ISSUES => {
                            let pos = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                            let mut path: Vec<String> = stack[pos..]
                                .iter()
                                .map(|(n, _)| self.entities[*n].label())
                                .collect();
                            path.push(self.entities[to].label());
                            issues.push(format!(
                                "entity links form a cycle ({}); followed no further",
                                path.join(" → ")
                            ));
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
        (relations, issues)
    }
}

/// The entity ids a link property holds: one id, or a list (at most [`MAX_IDS_PER_LINK`]).
fn link_ids(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_IDS_PER_LINK)
            .collect(),
        _ => Vec::new(),
    }
}
