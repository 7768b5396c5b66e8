//! Masquerade for traffic from pods to outside the cluster, as one nftables table the
//! agent owns whole: replaced atomically by `nft -f`, removed with the node, never
//! mixed with other software's rules.

use std::{io::Write, process::Command};

use ipnet::Ipv4Net;

const TABLE: &str = "netcore";

#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    #[error("running nft (install nftables): {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the masquerade rules: {0}")]
    Rejected(String),
}

pub fn ruleset(pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net, bridge: &str) -> String {
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster_cidr} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Installs (or replaces) the masquerade table in the agent's network namespace.
pub fn apply(pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net, bridge: &str) -> Result<(), MasqError> {
    nft(&ruleset(pod_cidr, cluster_cidr, bridge))
}

/// Removes the table if there is one. A kernel without nftables has none: a node
/// with `masquerade = false` needs no nftables at all.
pub fn remove() -> Result<(), MasqError> {
    let listed = Command::new("nft")
        .args(["list", "table", "ip", TABLE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match listed {
        Ok(st) if st.success() => nft(&format!("delete table ip {TABLE}\n")),
        _ => Ok(()),
    }
}

fn nft(script: &str) -> Result<(), MasqError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(MasqError::Spawn)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(MasqError::Spawn)?;
    let out = child.wait_with_output().map_err(MasqError::Spawn)?;
    if !out.status.success() {
        return Err(MasqError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_exempt_the_cluster_and_the_bridge() {
        let r = super::ruleset(
            "10.244.1.0/24".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
            "nc0",
        );
        assert!(
            r.contains(
                "ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 oifname != \"nc0\" masquerade"
            ),
            "{r}"
        );
        assert!(
            r.starts_with("table ip netcore {}\ndelete table ip netcore\n"),
            "replaces atomically: {r}"
        );
    }
}
