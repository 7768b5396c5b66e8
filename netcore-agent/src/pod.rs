//! A pod's plumbing: a veth pair whose host end joins the node bridge (down: the agent
//! brings it up once the pod's program is attached) and whose other end is the pod's
//! interface, with its address, `lo` up, IPv6 off and a default route via the bridge.
//! Undone on failure.
//!
//! MTU: the link has the uplink's (pods of one node reach each other at full size,
//! as on a plain bridge); when what leaves the node is encapsulated, the default
//! route carries the smaller MTU (uplink − VXLAN), so the pod's stack sizes segments
//! and fragments for it (Cilium's route MTU).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use rtnetlink::Handle;

use crate::{
    mac::Mac,
    netlink::{self, NetlinkError},
    netns::{self, NetnsError},
};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("inside the pod namespace: {0}")]
    Inside(String),
}

/// Everything needed to plumb one pod interface.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub netns: PathBuf,
    pub ifname: String,
    pub host_if: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: PodMtu,
    pub bridge_index: u32,
}

/// A pod's link MTU and, if smaller, its default route's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMtu {
    pub link: u32,
    pub route: Option<u32>,
}

impl PodMtu {
    /// `link` for the pod's own node, `beyond` for the rest.
    pub fn new(link: u32, beyond: u32) -> Self {
        PodMtu {
            link,
            route: (beyond < link).then_some(beyond),
        }
    }
}

/// Host-side interface name of the pod that has `ip` (unique on a node, at most 15
/// characters).
pub fn host_if_name(ip: Ipv4Addr) -> String {
    format!("nc{:08x}", u32::from(ip))
}

fn temp_peer_name(ip: Ipv4Addr) -> String {
    format!("nt{:08x}", u32::from(ip))
}

/// Creates the pod's interfaces; returns the MAC of the pod's end.
pub async fn create(h: &Handle, spec: &PodSpec) -> Result<Mac, PodError> {
    let peer = temp_peer_name(spec.ip);
    netlink::add_veth(h, &spec.host_if, &peer, spec.mtu.link).await?;
    let result = plumb(h, spec, &peer).await;
    if result.is_err() {
        let _ = netlink::del_link(h, &spec.host_if).await;
    }
    result
}

async fn plumb(h: &Handle, spec: &PodSpec, peer: &str) -> Result<Mac, PodError> {
    let ns = std::fs::File::open(&spec.netns).map_err(|source| NetnsError::Io {
        path: spec.netns.clone(),
        source,
    })?;
    let peer_link = netlink::require_link(h, peer).await?;
    netlink::move_to_netns(h, peer_link.index, &ns).await?;
    let (spec2, peer2) = (spec.clone(), peer.to_string());
    let mac = tokio::task::spawn_blocking(move || configure_inside(&spec2, &peer2))
        .await
        .map_err(|e| PodError::Inside(e.to_string()))??;
    let host = netlink::require_link(h, &spec.host_if).await?;
    // Down until the agent has attached the pod's program: no moment without it.
    disable_ipv6(&spec.host_if);
    netlink::set_master(h, host.index, spec.bridge_index).await?;
    Ok(mac)
}

/// No IPv6 on pod interfaces (netcore is IPv4-only, and the data path drops what a pod
/// sends in IPv6): no link-local address, no router advertisement taken. In the
/// calling thread's namespace; a kernel without IPv6 has nothing to turn off.
fn disable_ipv6(ifname: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "1") {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(interface = ifname, "turning IPv6 off: {e}");
        }
    }
}

/// Runs in the pod's namespace: `lo` up, the interface renamed, addressed, up, and
/// the default route via the gateway.
fn configure_inside(spec: &PodSpec, peer: &str) -> Result<Mac, PodError> {
    netns::run_in(&spec.netns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PodError::Inside(e.to_string()))?;
        rt.block_on(async {
            let h = netlink::connect()?;
            let lo = netlink::require_link(&h, "lo").await?;
            netlink::set_up(&h, lo.index).await?;
            let link = netlink::require_link(&h, peer).await?;
            netlink::rename(&h, link.index, &spec.ifname).await?;
            disable_ipv6(&spec.ifname);
            netlink::add_addr(&h, link.index, spec.ip, spec.prefix_len).await?;
            netlink::set_up(&h, link.index).await?;
            netlink::set_default_route(&h, spec.gateway, spec.mtu.route).await?;
            let link = netlink::require_link(&h, &spec.ifname).await?;
            link.mac
                .ok_or_else(|| PodError::Inside(format!("{} has no MAC address", spec.ifname)))
        })
    })?
}

/// Gives an existing pod's veth pair (both ends) `mtu.link` and its default route
/// `mtu.route` (a node whose backend or uplink changed).
pub async fn set_mtu(
    h: &Handle,
    host_if: &str,
    netns: &Path,
    ifname: &str,
    gateway: Ipv4Addr,
    mtu: PodMtu,
) -> Result<(), PodError> {
    let host = netlink::require_link(h, host_if).await?;
    netlink::set_mtu(h, host.index, mtu.link).await?;
    let (netns, ifname) = (netns.to_path_buf(), ifname.to_string());
    tokio::task::spawn_blocking(move || {
        netns::run_in(&netns, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| PodError::Inside(e.to_string()))?;
            rt.block_on(async {
                let h = netlink::connect()?;
                let link = netlink::require_link(&h, &ifname).await?;
                netlink::set_mtu(&h, link.index, mtu.link).await?;
                Ok(netlink::set_default_route(&h, gateway, mtu.route).await?)
            })
        })?
    })
    .await
    .map_err(|e| PodError::Inside(e.to_string()))?
}

/// Removes the pod's interfaces (both ends go with the host end); a pod already gone
/// is not an error.
pub async fn destroy(h: &Handle, host_if: &str) -> Result<(), PodError> {
    netlink::del_link(h, host_if).await?;
    Ok(())
}

/// Whether the pod's interface still exists inside its namespace.
pub fn exists_inside(netns_path: &Path, ifname: &str) -> bool {
    if !netns::is_netns(netns_path) {
        return false;
    }
    let ifname = ifname.to_string();
    netns::run_in(netns_path, move || {
        nix::net::if_::if_nametoindex(ifname.as_str()).is_ok()
    })
    .unwrap_or(false)
}

/// Whether `name` has the shape of a pod's host interface (see `host_if_name`).
pub fn is_host_if_name(name: &str) -> bool {
    name.len() == 10 && name.starts_with("nc") && name[2..].chars().all(|c| c.is_ascii_hexdigit())
}
