//! Direct routes' other half: the uplink MAC of every directly routed peer, learned
//! from the neighbour table and pinned there (a permanent entry, which no ARP can
//! move), so that an unencapsulated packet claiming a peer's pod address is accepted
//! only from that peer. A restarted agent finds its pins again in the table.

use std::net::Ipv4Addr;

use tracing::{info, warn};

use super::{Agent, Result};
use crate::{backend::RouteKind, netlink};

/// The discard port: a datagram to it makes the kernel resolve the peer's MAC.
const DISCARD_PORT: u16 = 9;

impl Agent {
    /// The underlay addresses of the peers this node reaches directly.
    fn direct_peers(&self) -> Vec<Ipv4Addr> {
        let nodes = self
            .state
            .nodes
            .values()
            .chain(self.state.store_nodes.values());
        nodes
            .filter(|n| self.route_to(n) == RouteKind::Direct)
            .map(|n| n.underlay_ip)
            .collect()
    }

    /// Pins the MACs of direct peers the neighbour table knows, asks the kernel to
    /// resolve the others, puts back a pin someone removed, and unpins peers that
    /// are gone or no longer direct. Run periodically; the node map follows what is
    /// pinned.
    pub async fn learn_peer_macs(&mut self) -> Result<()> {
        let peers = self.direct_peers();
        let uplink = self.uplink.index;
        let gone: Vec<Ipv4Addr> = self
            .pinned
            .keys()
            .filter(|ip| !peers.contains(ip))
            .copied()
            .collect();
        let mut changed = !gone.is_empty();
        for ip in gone {
            netlink::del_neighbour(&self.nl, uplink, ip).await?;
            self.pinned.remove(&ip);
            info!(peer = %ip, "unpinned the uplink MAC of a node no longer routed directly");
        }
        let table = netlink::neighbours(&self.nl, uplink).await?;
        for ip in peers {
            let seen = table.get(&ip).copied();
            match (self.pinned.get(&ip).copied(), seen) {
                (Some(mac), Some(n)) if n.permanent && n.mac == mac => {}
                (Some(mac), _) => {
                    netlink::replace_neighbour(&self.nl, uplink, ip, mac).await?;
                    warn!(peer = %ip, %mac, "a direct peer's pinned uplink MAC was removed or changed; pinned it again");
                }
                (None, Some(n)) => {
                    netlink::replace_neighbour(&self.nl, uplink, ip, n.mac).await?;
                    self.pinned.insert(ip, n.mac);
                    changed = true;
                    info!(peer = %ip, mac = %n.mac, "learned and pinned a direct peer's uplink MAC");
                }
                (None, None) => solicit(ip),
            }
        }
        if changed {
            self.apply_nodes()?;
        }
        Ok(())
    }

    /// At start: the MACs this node pinned before (a restarted agent), so that the
    /// node map has them from its first write and direct traffic is never refused
    /// while they are learned again.
    pub async fn find_pinned_macs(&mut self) -> Result<()> {
        let table = netlink::neighbours(&self.nl, self.uplink.index).await?;
        for ip in self.direct_peers() {
            if let Some(n) = table.get(&ip).filter(|n| n.permanent) {
                self.pinned.insert(ip, n.mac);
            }
        }
        Ok(())
    }
}

/// Sends an empty datagram to `ip`'s discard port: the kernel resolves its MAC.
fn solicit(ip: Ipv4Addr) {
    let sent =
        std::net::UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| s.send_to(&[], (ip, DISCARD_PORT)));
    if let Err(e) = sent {
        warn!(peer = %ip, "cannot reach a direct peer to learn its MAC: {e}");
    }
}
