//! A pod's plumbing seen from inside its namespace, for CNI CHECK: the interface up
//! with its MAC and address, and the default route via the gateway.

use std::{net::Ipv4Addr, path::Path};

use crate::{
    mac::Mac,
    netlink::{self, NetlinkError},
    netns,
};

/// What `pod::create` made inside the namespace.
#[derive(Debug, Clone)]
pub struct Expected {
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: Mac,
}

/// Every way the inside of `netns` differs from `want`; empty when it matches.
pub fn inside(netns_path: &Path, want: &Expected) -> Vec<String> {
    if !netns::is_netns(netns_path) {
        return vec![format!(
            "{} is not a network namespace",
            netns_path.display()
        )];
    }
    let checked = netns::run_in(netns_path, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetlinkError::Connect)?;
        rt.block_on(problems(want))
    });
    match checked {
        Ok(Ok(problems)) => problems,
        Ok(Err(e)) => vec![format!("inside {}: {e}", netns_path.display())],
        Err(e) => vec![e.to_string()],
    }
}

async fn problems(want: &Expected) -> Result<Vec<String>, NetlinkError> {
    let h = netlink::connect()?;
    let Some(link) = netlink::link(&h, &want.ifname).await? else {
        return Ok(vec![format!("interface {} is missing", want.ifname)]);
    };
    let mut out = Vec::new();
    if !link.up {
        out.push(format!("{} is down", want.ifname));
    }
    if link.mac != Some(want.mac) {
        let got = link.mac.map_or("none".into(), |m| m.to_string());
        out.push(format!("{} has MAC {got}, not {}", want.ifname, want.mac));
    }
    let addrs = netlink::ipv4_addrs(&h, link.index).await?;
    if !addrs.contains(&(want.ip, want.prefix_len)) {
        out.push(format!(
            "{} lacks its address {}/{}",
            want.ifname, want.ip, want.prefix_len
        ));
    }
    if !netlink::default_gateways(&h).await?.contains(&want.gateway) {
        out.push(format!("no default route via {}", want.gateway));
    }
    Ok(out)
}
