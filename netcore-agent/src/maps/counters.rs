//! The per-CPU counter array, summed over CPUs.

use aya::maps::{Map, MapData, PerCpuArray};
use netcore_common::counters::{Counter, Reason};
use serde::Serialize;

use super::err;
use super::MapError;

pub struct CounterMap {
    map: PerCpuArray<MapData, Counter>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CounterValue {
    pub reason: String,
    pub drop: bool,
    pub packets: u64,
    pub bytes: u64,
}

impl CounterMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: PerCpuArray::try_from(map).map_err(err(name))?,
        })
    }

    /// One value per reason, in reason order.
    pub fn read(&self) -> Vec<CounterValue> {
        Reason::ALL
            .iter()
            .map(|r| {
                let (packets, bytes) = self.map.get(&(*r as u32), 0).map_or((0, 0), |per_cpu| {
                    per_cpu
                        .iter()
                        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
                });
                CounterValue {
                    reason: r.name().into(),
                    drop: r.is_drop(),
                    packets,
                    bytes,
                }
            })
            .collect()
    }
}
