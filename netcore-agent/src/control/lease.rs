//! This node's lease: found again by its public IP after a restart, or the requested
//! subnet, or a free one taken with an atomic create (racing nodes get distinct
//! subnets); renewed at a third of its TTL; deleted on a clean leave.

use std::{collections::HashSet, net::Ipv4Addr, time::Duration};

use ipnet::Ipv4Net;
use rand::seq::SliceRandom;
use tracing::{info, warn};

use crate::{
    backend::Backend,
    config::AgentConfig,
    mac::Mac,
    store::{
        flannel::{self, LayoutError, LeaseValue, NetworkConfig},
        Store, StoreError,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("subnet {subnet} is leased to {owner}, not to this node")]
    Taken { subnet: Ipv4Net, owner: Ipv4Addr },
    #[error("subnet {subnet} is not a subnet of the cluster network {network} (SubnetLen {len})")]
    NotInNetwork {
        subnet: Ipv4Net,
        network: Ipv4Net,
        len: u8,
    },
    #[error("every subnet of {0} is leased")]
    Exhausted(Ipv4Net),
}

/// This node's lease as held.
#[derive(Debug, Clone)]
pub struct OwnLease {
    pub key: String,
    pub subnet: Ipv4Net,
    pub network: Ipv4Net,
    pub value: LeaseValue,
    pub ttl: Duration,
    /// The cluster's backend, VNI and VXLAN port (its network config's, where set).
    pub backend: Backend,
    pub vni: u32,
    pub port: u16,
}

impl OwnLease {
    /// Renews the lease; false if another node holds the subnet now (then nothing
    /// is written).
    pub async fn renew(&self, store: &mut Store) -> Result<bool, StoreError> {
        store
            .renew(&self.key, &self.value.to_json(), Some(self.ttl))
            .await
    }

    pub async fn release(&self, store: &mut Store) -> Result<(), StoreError> {
        store.delete(&self.key).await
    }
}

/// Reads the network config, writing one from the agent's config if the store has none.
pub async fn network_config(
    store: &mut Store,
    cfg: &AgentConfig,
) -> Result<NetworkConfig, LeaseError> {
    let key = flannel::config_key(&cfg.store_prefix);
    if let Some(text) = store.get(&key).await? {
        return Ok(NetworkConfig::parse(&text)?);
    }
    let fresh = NetworkConfig::new(
        cfg.cluster_cidr,
        cfg.subnet_len,
        &cfg.node_backend(),
        cfg.vni,
        cfg.vxlan_port,
    );
    let json = serde_json::to_string(&fresh).expect("config serializes");
    if !store.create(&key, &json, None).await? {
        // Another node wrote it first: use theirs.
        let text = store.get(&key).await?.unwrap_or(json);
        return Ok(NetworkConfig::parse(&text)?);
    }
    info!(key, network = %fresh.network, "wrote the cluster network config");
    Ok(fresh)
}

/// The backend, VNI and port the cluster's network config sets (every node must
/// agree); where this node's config says otherwise, the cluster wins, with a warning.
/// Backend keys netcore does not implement are named.
fn cluster_backend(network: &NetworkConfig, cfg: &AgentConfig) -> (Backend, u32, u16) {
    let (backend, ignored) = network.node_backend();
    for key in ignored {
        warn!(key = %key, "the network config's Backend.{key} is not implemented by netcore: ignored");
    }
    if backend != cfg.node_backend() {
        warn!(cluster = backend.name(), node = cfg.node_backend().name(),
            "the cluster's network config sets another backend than this node's config: following the cluster");
    }
    let vni = network.backend.vni.unwrap_or(cfg.vni);
    let port = network.backend.port.unwrap_or(cfg.vxlan_port);
    if (vni, port) != (cfg.vni, cfg.vxlan_port) {
        warn!(vni, port, "the network config sets another VNI or port than this node's config: following the cluster");
    }
    (backend, vni, port)
}

/// Leases (or finds again) this node's subnet.
pub async fn acquire(
    store: &mut Store,
    cfg: &AgentConfig,
    public_ip: Ipv4Addr,
    vtep_mac: Mac,
    previous: Option<Ipv4Net>,
) -> Result<OwnLease, LeaseError> {
    let network = network_config(store, cfg).await?;
    let (backend, vni, port) = cluster_backend(&network, cfg);
    let value = LeaseValue::of(backend, public_ip, vni, vtep_mac);
    let prefix = flannel::subnets_prefix(&cfg.store_prefix);
    let lease = |subnet: Ipv4Net| OwnLease {
        key: flannel::subnet_key(&cfg.store_prefix, subnet),
        subnet,
        network: network.network,
        value: value.clone(),
        ttl: cfg.lease_ttl(),
        backend,
        vni,
        port,
    };
    let mut taken = HashSet::new();
    for e in store.list(&prefix).await? {
        let (Ok(subnet), Ok(v)) = (
            flannel::parse_subnet_key(&cfg.store_prefix, &e.key),
            LeaseValue::parse(&e.key, &e.value),
        ) else {
            continue;
        };
        if v.public_ip == public_ip && cfg.pod_cidr.is_none_or(|want| want == subnet) {
            let own = lease(subnet);
            store
                .put(&own.key, &own.value.to_json(), Some(own.ttl))
                .await?;
            info!(key = %own.key, "found this node's lease again");
            return Ok(own);
        }
        if cfg.pod_cidr == Some(subnet) {
            return Err(LeaseError::Taken {
                subnet,
                owner: v.public_ip,
            });
        }
        taken.insert(subnet);
    }
    let wanted = cfg
        .pod_cidr
        .or(previous.filter(|p| network.admits(*p) && !taken.contains(p)));
    if let Some(subnet) = wanted {
        if !network.network.contains(&subnet) {
            return Err(LeaseError::NotInNetwork {
                subnet,
                network: network.network,
                len: network.subnet_len,
            });
        }
        let own = lease(subnet);
        if store
            .create(&own.key, &value.to_json(), Some(own.ttl))
            .await?
        {
            return Ok(own);
        }
        if cfg.pod_cidr.is_some() {
            return Err(LeaseError::Taken {
                subnet,
                owner: Ipv4Addr::UNSPECIFIED,
            });
        }
    }
    let mut free: Vec<Ipv4Net> = network.subnets().filter(|s| !taken.contains(s)).collect();
    free.shuffle(&mut rand::thread_rng());
    for subnet in free {
        let own = lease(subnet);
        if store
            .create(&own.key, &value.to_json(), Some(own.ttl))
            .await?
        {
            info!(key = %own.key, "leased a new subnet");
            return Ok(own);
        }
        warn!(%subnet, "another node took this subnet first; trying another");
    }
    Err(LeaseError::Exhausted(network.network))
}
