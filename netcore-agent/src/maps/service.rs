//! The service maps: services by (address, port, protocol), their backends by slot,
//! and their per-CPU counters.

use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use netcore_common::service::{
    Backend, BackendKey, BackendRef, ServiceCounter, ServiceInfo, ServiceKey,
};

use super::MapError;
use super::{err, is_not_found};

pub struct ServiceMaps {
    services: HashMap<MapData, ServiceKey, ServiceInfo>,
    backends: HashMap<MapData, BackendKey, Backend>,
    counters: PerCpuArray<MapData, ServiceCounter>,
    affinity: Array<MapData, u32>,
    slots: HashMap<MapData, BackendRef, u32>,
}

/// A service's frontend as the maps key it.
pub fn key(vip: Ipv4Addr, port: u16, proto: u8) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(vip.octets()),
        port: port.to_be(),
        proto,
        _pad: 0,
    }
}

pub fn backend(ip: Ipv4Addr, port: u16) -> Backend {
    Backend {
        ip: u32::from_ne_bytes(ip.octets()),
        port: port.to_be(),
        _pad: 0,
    }
}

impl ServiceMaps {
    pub fn new(
        services: (Map, &'static str),
        backends: (Map, &'static str),
        counters: (Map, &'static str),
        affinity: (Map, &'static str),
        slots: (Map, &'static str),
    ) -> Result<Self, MapError> {
        Ok(Self {
            services: HashMap::try_from(services.0).map_err(err(services.1))?,
            backends: HashMap::try_from(backends.0).map_err(err(backends.1))?,
            counters: PerCpuArray::try_from(counters.0).map_err(err(counters.1))?,
            affinity: Array::try_from(affinity.0).map_err(err(affinity.1))?,
            slots: HashMap::try_from(slots.0).map_err(err(slots.1))?,
        })
    }

    /// Session affinity of service `id`: seconds a client keeps its backend, 0 for none.
    pub fn set_affinity(&mut self, id: u32, seconds: u32) -> Result<(), MapError> {
        self.affinity
            .set(id, seconds, 0)
            .map_err(err("NC_SVC_AFFINITY"))
    }

    /// Writes service `id`'s backends into slots `0..n`, and where each one is.
    pub fn write_backends(&mut self, id: u32, backends: &[Backend]) -> Result<(), MapError> {
        for (slot, b) in backends.iter().enumerate() {
            let k = BackendKey {
                service_id: id,
                slot: slot as u32,
            };
            self.backends.insert(k, b, 0).map_err(err("NC_BACKENDS"))?;
            let r = BackendRef {
                service_id: id,
                backend: *b,
            };
            self.slots
                .insert(r, slot as u32, 0)
                .map_err(err("NC_BACKEND_SLOTS"))?;
        }
        Ok(())
    }

    /// Forgets where service `id`'s former backends were.
    pub fn forget_backends(&mut self, id: u32, gone: &[Backend]) -> Result<(), MapError> {
        for b in gone {
            let r = BackendRef {
                service_id: id,
                backend: *b,
            };
            match self.slots.remove(&r) {
                Err(e) if !is_not_found(&e) => return Err(err("NC_BACKEND_SLOTS")(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes slots `from..to` of service `id`.
    pub fn trim_backends(&mut self, id: u32, from: u32, to: u32) -> Result<(), MapError> {
        for slot in from..to {
            match self.backends.remove(&BackendKey {
                service_id: id,
                slot,
            }) {
                Err(e) if !is_not_found(&e) => return Err(err("NC_BACKENDS")(e)),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn set_frontend(&mut self, key: ServiceKey, info: ServiceInfo) -> Result<(), MapError> {
        self.services
            .insert(key, info, 0)
            .map_err(err("NC_SERVICES"))
    }

    pub fn remove_frontend(&mut self, key: ServiceKey) -> Result<(), MapError> {
        match self.services.remove(&key) {
            Err(e) if !is_not_found(&e) => Err(err("NC_SERVICES")(e)),
            _ => Ok(()),
        }
    }

    pub fn frontends(&self) -> Vec<(ServiceKey, ServiceInfo)> {
        self.services.iter().filter_map(Result::ok).collect()
    }

    /// Counters of service `id`, summed over CPUs.
    pub fn counters(&self, id: u32) -> ServiceCounter {
        self.counters.get(&id, 0).map_or_else(
            |_| ServiceCounter::default(),
            |per_cpu| {
                per_cpu
                    .iter()
                    .fold(ServiceCounter::default(), |a, c| ServiceCounter {
                        packets: a.packets + c.packets,
                        bytes: a.bytes + c.bytes,
                        connections: a.connections + c.connections,
                        rejected: a.rejected + c.rejected,
                    })
            },
        )
    }
}
