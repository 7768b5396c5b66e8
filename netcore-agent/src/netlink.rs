//! The kernel objects the agent owns, made and read through rtnetlink: links,
//! addresses, routes and neighbours.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::AddressAttribute,
    link::{InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMetric},
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};

use crate::mac::Mac;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("interface {0} does not exist")]
    NoSuchLink(String),
    #[error("interface {0} exists and is not a bridge: choose another bridge name")]
    NotABridge(String),
    #[error("interface {0} exists and is not a VXLAN device: choose another vxlan_device name")]
    NotVxlan(String),
    #[error("UDP port {0} is taken by another VXLAN device in this namespace (a flannel.1?): remove it or set vxlan_port")]
    VxlanPortTaken(u16),
    #[error("this kernel cannot create VXLAN devices ({0}): load the vxlan module")]
    NoVxlan(String),
    #[error("netlink: {what}: {source}")]
    Op {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("netlink connection: {0}")]
    Connect(std::io::Error),
}

pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// A link as the agent needs to know it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    pub master: Option<u32>,
    pub kind: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// A VXLAN device's UDP port and whether it is collect_md ("external").
    pub vxlan: Option<(u16, bool)>,
}

impl From<&LinkMessage> for Link {
    fn from(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            master: None,
            kind: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            vxlan: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = Mac::from_slice(a),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Controller(c) => link.master = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Vxlan(v)) => {
                                link.vxlan = Some(vxlan_settings(v))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn vxlan_settings(infos: &[InfoVxlan]) -> (u16, bool) {
    let (mut port, mut external) = (0, false);
    for i in infos {
        match i {
            InfoVxlan::Port(p) => port = *p,
            InfoVxlan::CollectMetadata(c) => external = *c,
            _ => {}
        }
    }
    (port, external)
}

/// Opens a netlink connection in the calling thread's network namespace, driven by
/// the current tokio runtime.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn op(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Op { what, source }
}

/// Treats "already exists" as success.
fn exists_ok(r: Result<(), rtnetlink::Error>, what: &str) -> Result<()> {
    match r {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        other => other.map_err(op(what)),
    }
}

/// `ip link set …`: one RTM_SETLINK.
async fn set_link(h: &Handle, msg: LinkMessage, what: impl Into<String>) -> Result<()> {
    h.link().set(msg).execute().await.map_err(op(what))
}

pub async fn link(h: &Handle, name: &str) -> Result<Option<Link>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(msg) => Ok(msg.as_ref().map(Link::from)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(op(format!("get link {name}"))(e)),
    }
}

pub async fn require_link(h: &Handle, name: &str) -> Result<Link> {
    link(h, name)
        .await?
        .ok_or_else(|| NetlinkError::NoSuchLink(name.into()))
}

pub async fn links(h: &Handle) -> Result<Vec<Link>> {
    let mut stream = h.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.try_next().await.map_err(op("list links"))? {
        out.push(Link::from(&msg));
    }
    Ok(out)
}

pub async fn ipv4_addrs(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut stream = h.address().get().set_link_index_filter(index).execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.try_next().await.map_err(op("list addresses"))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                out.push((*ip, msg.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Creates the bridge if missing, then sets its MAC and MTU and brings it up.
pub async fn ensure_bridge(h: &Handle, name: &str, mac: Mac, mtu: u32) -> Result<Link> {
    let add = h.link().add(LinkBridge::new(name).build()).execute().await;
    exists_ok(add, &format!("create bridge {name}"))?;
    let br = require_link(h, name).await?;
    if br.kind.as_deref() != Some("bridge") {
        return Err(NetlinkError::NotABridge(name.into()));
    }
    let msg = LinkUnspec::new_with_index(br.index)
        .address(mac.0.to_vec())
        .mtu(mtu)
        .up()
        .build();
    set_link(h, msg, format!("configure bridge {name}")).await?;
    require_link(h, name).await
}

/// The node's VXLAN device, as `ip link add NAME type vxlan external dstport PORT
/// nolearning`: collect_md (the programs read the outer addresses from the tunnel
/// key), learning off, the node's VTEP MAC (so frames for it are the host's), `mtu`,
/// up. A device of that name with other settings is replaced.
pub async fn ensure_vxlan(h: &Handle, name: &str, port: u16, mac: Mac, mtu: u32) -> Result<Link> {
    if let Some(old) = link(h, name).await? {
        match (old.kind.as_deref(), old.vxlan) {
            (Some("vxlan"), Some(settings)) if settings == (port, true) => {}
            (Some("vxlan"), _) => del_link(h, name).await?,
            _ => return Err(NetlinkError::NotVxlan(name.into())),
        }
    }
    let msg = LinkMessageBuilder::<LinkVxlan>::new(name)
        .port(port)
        .collect_metadata(true)
        .learning(false)
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
        Err(e) if errno(&e) == Some(libc::EADDRINUSE) => {
            return Err(NetlinkError::VxlanPortTaken(port))
        }
        Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
            return Err(NetlinkError::NoVxlan(e.to_string()))
        }
        Err(e) => return Err(op(format!("create VXLAN device {name}"))(e)),
    }
    let dev = require_link(h, name).await?;
    let msg = LinkUnspec::new_with_index(dev.index)
        .address(mac.0.to_vec())
        .mtu(mtu)
        .up()
        .build();
    set_link(h, msg, format!("configure VXLAN device {name}")).await?;
    require_link(h, name).await
}

pub async fn add_addr(h: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
    let add = h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await;
    exists_ok(add, &format!("add address {ip}/{prefix}"))
}

pub async fn set_mtu(h: &Handle, index: u32, mtu: u32) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
    set_link(h, msg, format!("set MTU {mtu}")).await
}

pub async fn set_up(h: &Handle, index: u32) -> Result<()> {
    set_link(
        h,
        LinkUnspec::new_with_index(index).up().build(),
        "set link up",
    )
    .await
}

/// Creates a veth pair; both ends get `mtu`.
pub async fn add_veth(h: &Handle, name: &str, peer: &str, mtu: u32) -> Result<()> {
    let msg = LinkVeth::new(name, peer).mtu(mtu).build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(op(format!("create veth {name}")))?;
    let peer_link = require_link(h, peer).await?;
    let set = LinkUnspec::new_with_index(peer_link.index).mtu(mtu).build();
    set_link(h, set, format!("set MTU of {peer}")).await
}

pub async fn move_to_netns(h: &Handle, index: u32, netns: &std::fs::File) -> Result<()> {
    use std::os::fd::AsRawFd;
    let msg = LinkUnspec::new_with_index(index)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    set_link(h, msg, "move link to netns").await
}

pub async fn rename(h: &Handle, index: u32, name: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index)
        .name(name.to_string())
        .build();
    set_link(h, msg, format!("rename link to {name}")).await
}

/// Makes the link a port of `master`, leaving it down.
pub async fn set_master(h: &Handle, index: u32, master: u32) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index).controller(master).build();
    set_link(h, msg, "attach link to bridge").await
}

pub async fn set_master_up(h: &Handle, index: u32, master: u32) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index)
        .controller(master)
        .up()
        .build();
    set_link(h, msg, "attach link to bridge").await
}

/// Deletes a link; a missing one is not an error.
pub async fn del_link(h: &Handle, name: &str) -> Result<()> {
    let Some(l) = link(h, name).await? else {
        return Ok(());
    };
    match h.link().del(l.index).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        other => other.map_err(op(format!("delete link {name}"))),
    }
}

/// The default route via `gateway`, added or replaced; with `mtu`, what leaves by it
/// is at most that size (the link may be larger for what stays on the link).
pub async fn set_default_route(h: &Handle, gateway: Ipv4Addr, mtu: Option<u32>) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway);
    replace_route(h, msg, mtu, format!("default route via {gateway}")).await
}

/// `ip route replace` of `msg`, with an `mtu` metric if given.
async fn replace_route(
    h: &Handle,
    mut msg: RouteMessageBuilder<Ipv4Addr>,
    mtu: Option<u32>,
    what: String,
) -> Result<()> {
    if let Some(mtu) = mtu {
        let metrics = vec![RouteMetric::Mtu(mtu)];
        msg.get_mut()
            .attributes
            .push(RouteAttribute::Metrics(metrics));
    }
    h.route()
        .add(msg.build())
        .replace()
        .execute()
        .await
        .map_err(op(what))
}

/// Gateways of the IPv4 default routes in the main table.
pub async fn default_gateways(h: &Handle) -> Result<Vec<Ipv4Addr>> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut stream = h.route().get(filter).execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.try_next().await.map_err(op("list routes"))? {
        let main = msg.header.table == libc::RT_TABLE_MAIN;
        if !main || msg.header.destination_prefix_length != 0 {
            continue;
        }
        for attr in &msg.attributes {
            if let RouteAttribute::Gateway(RouteAddress::Inet(gw)) = attr {
                out.push(*gw);
            }
        }
    }
    Ok(out)
}

/// `ip route replace NET via NH dev INDEX onlink src SRC [mtu MTU]`.
pub async fn replace_onlink_route(
    h: &Handle,
    net: ipnet::Ipv4Net,
    next_hop: Ipv4Addr,
    index: u32,
    src: Ipv4Addr,
    mtu: Option<u32>,
) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.network(), net.prefix_len())
        .gateway(next_hop)
        .output_interface(index)
        .onlink()
        .pref_source(src);
    replace_route(h, msg, mtu, format!("route {net} via {next_hop}")).await
}

/// A resolved entry of the neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Mac,
    /// `nud permanent`: set by hand (or by us), never moved by ARP.
    pub permanent: bool,
}

/// The resolved IPv4 entries of the neighbour table on interface `index` (entries
/// that are incomplete or failed have no MAC to give), in one dump.
pub async fn neighbours(
    h: &Handle,
    index: u32,
) -> Result<std::collections::HashMap<Ipv4Addr, Neighbour>> {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
    let mut found = std::collections::HashMap::new();
    let mut stream = h.neighbours().get().execute();
    while let Some(msg) = stream.try_next().await.map_err(op("list neighbours"))? {
        let state = msg.header.state;
        let unusable = matches!(
            state,
            NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
        );
        if msg.header.ifindex != index || unusable {
            continue;
        }
        let (mut ip, mut mac) = (None, None);
        for a in &msg.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => ip = Some(*d),
                NeighbourAttribute::LinkLayerAddress(m) => mac = Mac::from_slice(m),
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            let permanent = state == NeighbourState::Permanent;
            found.insert(ip, Neighbour { mac, permanent });
        }
    }
    Ok(found)
}

/// `ip neigh del IP dev INDEX`; a missing entry is not an error.
pub async fn del_neighbour(h: &Handle, index: u32, ip: Ipv4Addr) -> Result<()> {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
    let mut msg = NeighbourMessage::default();
    msg.header.family = netlink_packet_route::AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match h.neighbours().del(msg).execute().await {
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
        other => other.map_err(op(format!("delete neighbour {ip}"))),
    }
}

/// `ip neigh replace IP lladdr MAC dev INDEX nud permanent`.
pub async fn replace_neighbour(h: &Handle, index: u32, ip: Ipv4Addr, mac: Mac) -> Result<()> {
    h.neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&mac.0)
        .replace()
        .execute()
        .await
        .map_err(op(format!("neighbour {ip} -> {mac}")))
}
