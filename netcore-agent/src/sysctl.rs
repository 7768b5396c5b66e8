//! The few kernel settings a node needs, in the agent's network namespace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("setting {path} to {value}: {source}")]
pub struct SysctlError {
    path: PathBuf,
    value: &'static str,
    source: std::io::Error,
}

/// `key` as a path under /proc/sys ("net/ipv4/ip_forward").
pub fn set(key: &str, value: &'static str) -> Result<(), SysctlError> {
    let path = PathBuf::from("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|source| SysctlError {
        path,
        value,
        source,
    })
}

/// Forwarding on; no ICMP redirects from the bridge, whose pods must keep using it;
/// loose reverse-path filtering on the uplink and the VXLAN device, where
/// decapsulated replies to the node arrive from pod addresses that are routed into
/// the bridge (the kernel takes the larger of `all` and the device's value: 2 is
/// loose whatever `all` is).
pub fn prepare_node(bridge: &str, uplink: &str, vxlan: &str) -> Result<(), SysctlError> {
    set("net/ipv4/ip_forward", "1")?;
    set("net/ipv4/conf/all/send_redirects", "0")?;
    set(&format!("net/ipv4/conf/{bridge}/send_redirects"), "0")?;
    set(&format!("net/ipv4/conf/{uplink}/rp_filter"), "2")?;
    set(&format!("net/ipv4/conf/{vxlan}/rp_filter"), "2")?;
    // The pods' L2 network is IPv4 only: the bridge takes no router advertisement
    // and has no IPv6 address (none from pods ever passes their programs anyway).
    let bridge_v6 = format!("net/ipv6/conf/{bridge}/disable_ipv6");
    if std::path::Path::new("/proc/sys").join(&bridge_v6).exists() {
        set(&bridge_v6, "1")?;
    }
    Ok(())
}
