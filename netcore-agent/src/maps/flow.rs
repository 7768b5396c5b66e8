//! The flow-accounting map (per-CPU LRU), read whole and summed over CPUs.

use std::collections::HashMap;

use aya::maps::{Map, MapData, PerCpuHashMap};
use netcore_common::{counters::Counter, flow::FlowKey};

use super::{err, MapError};

pub struct FlowMap {
    map: PerCpuHashMap<MapData, FlowKey, Counter>,
}

impl FlowMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: PerCpuHashMap::try_from(map).map_err(err(name))?,
        })
    }

    /// Every entry, packets and bytes summed over CPUs. Entries the programs evict
    /// while this reads are skipped.
    pub fn read(&self) -> HashMap<FlowKey, Counter> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, per_cpu)| {
                let sum = per_cpu.iter().fold(Counter::default(), |s, c| Counter {
                    packets: s.packets + c.packets,
                    bytes: s.bytes + c.bytes,
                });
                (k, sum)
            })
            .collect()
    }
}
