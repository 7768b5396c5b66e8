//! Typed access to the data path's maps; each file owns one map.

pub mod config;
pub mod conntrack;
pub mod counters;
pub mod endpoint;
pub mod flow;
pub mod node;
pub mod policy;
pub mod service;
pub mod socket;

use aya::{maps::Map, Ebpf};

/// A map the agent could not take or use, by name.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    Missing(&'static str),
}

pub struct Maps {
    pub endpoints: endpoint::EndpointMap,
    pub nodes: node::NodeMap,
    pub config: config::ConfigMap,
    pub counters: counters::CounterMap,
    pub services: service::ServiceMaps,
    pub conntrack: conntrack::ConntrackMaps,
    pub policy: policy::PolicyMaps,
    /// The socket hooks' network namespace.
    pub netns: socket::NetnsMap,
    /// The flow-accounting map, until the agent hands it to its recorder.
    pub flows: Option<flow::FlowMap>,
    /// The monitor's ring buffer, until the agent hands it to its reader.
    pub events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
}

impl Maps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapError> {
        Ok(Self {
            endpoints: endpoint::EndpointMap::new(
                take(ebpf, netcore_common::pin::MAP_ENDPOINTS)?,
                take(ebpf, netcore_common::pin::MAP_POD_IFACES)?,
            )?,
            nodes: node::NodeMap::new(take(ebpf, netcore_common::pin::MAP_NODES)?)?,
            config: config::ConfigMap::new(take(ebpf, netcore_common::pin::MAP_CONFIG)?)?,
            counters: counters::CounterMap::new(take(ebpf, netcore_common::pin::MAP_COUNTERS)?)?,
            services: service::ServiceMaps::new(
                take(ebpf, netcore_common::pin::MAP_SERVICES)?,
                take(ebpf, netcore_common::pin::MAP_BACKENDS)?,
                take(ebpf, netcore_common::pin::MAP_SVC_COUNTERS)?,
                take(ebpf, netcore_common::pin::MAP_SVC_AFFINITY)?,
                take(ebpf, netcore_common::pin::MAP_BACKEND_SLOTS)?,
            )?,
            conntrack: conntrack::ConntrackMaps::new(
                take(ebpf, netcore_common::pin::MAP_CONNTRACK)?,
                take(ebpf, netcore_common::pin::MAP_CT_NEW)?,
            )?,
            policy: policy::PolicyMaps::new(
                take(ebpf, netcore_common::pin::MAP_PEERS)?,
                take(ebpf, netcore_common::pin::MAP_POLICY)?,
                take(ebpf, netcore_common::pin::MAP_POLICY_CT)?,
                take(ebpf, netcore_common::pin::MAP_POLICY_HITS)?,
            )?,
            netns: socket::NetnsMap::new(take(ebpf, netcore_common::pin::MAP_NETNS)?)?,
            flows: Some(flow::FlowMap::new(take(
                ebpf,
                netcore_common::pin::MAP_FLOWS,
            )?)?),
            events: {
                let (map, name) = take(ebpf, netcore_common::pin::MAP_EVENTS)?;
                Some(aya::maps::RingBuf::try_from(map).map_err(err(name))?)
            },
        })
    }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<(Map, &'static str), MapError> {
    Ok((ebpf.take_map(name).ok_or(MapError::Missing(name))?, name))
}

/// Maps a map error to the agent's error, naming the map.
pub(crate) fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> MapError {
    move |source| MapError::Map { name, source }
}

/// Whether a map error means "no such key".
pub(crate) fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}
