//! Family B's network: three plants (IT hosts, jump host, scanner, EWS, OT cell) and the
//! shared servers and internet addresses.

use crate::generate::Rng;

pub(super) const PLANTS: usize = 3;

pub(super) struct Plant {
    pub(super) workstations: Vec<String>,
    pub(super) servers: Vec<String>,
    pub(super) jump: String,
    pub(super) scanner: String,
    pub(super) ews: String,
    pub(super) hmis: Vec<String>,
    pub(super) historian: String,
    pub(super) plcs: Vec<String>,
}

pub(super) struct Net {
    pub(super) plants: Vec<Plant>,
    pub(super) dcs: Vec<String>,
    pub(super) file_servers: Vec<String>,
    pub(super) internet: Vec<String>,
}

impl Net {
    pub(super) fn new() -> Self {
        let plants = (0..PLANTS)
            .map(|p| Plant {
                workstations: (10..130).map(|i| format!("172.16.{p}.{i}")).collect(),
                servers: (1..=15).map(|i| format!("172.17.{p}.{i}")).collect(),
                jump: format!("172.18.0.{}", p + 1),
                scanner: format!("172.18.1.{}", p + 1),
                ews: format!("172.16.{p}.250"),
                hmis: vec![
                    format!("192.168.{}.10", 10 + p),
                    format!("192.168.{}.11", 10 + p),
                ],
                historian: format!("192.168.{}.20", 10 + p),
                plcs: (100..112)
                    .map(|i| format!("192.168.{}.{i}", 10 + p))
                    .collect(),
            })
            .collect();
        Self {
            plants,
            dcs: (1..=3).map(|i| format!("172.19.0.{i}")).collect(),
            file_servers: (1..=4).map(|i| format!("172.19.1.{i}")).collect(),
            internet: (1..=300).map(|i| format!("2001:db8::{i:x}")).collect(),
        }
    }

    pub(super) fn it_host(&self, rng: &mut Rng) -> String {
        let p = &self.plants[rng.below(PLANTS)];
        if rng.chance(0.8) {
            rng.pick(&p.workstations).clone()
        } else {
            rng.pick(&p.servers).clone()
        }
    }
}

/// A host of `plant` (mostly workstations).
pub(super) fn plant_host(plant: &Plant, rng: &mut Rng) -> String {
    if rng.chance(0.85) {
        rng.pick(&plant.workstations).clone()
    } else {
        rng.pick(&plant.servers).clone()
    }
}
