//! Underlay profiles: what the link between the two nodes does with big packets.
//!
//! - `veth`: a veth pair hands a 64 KB GSO packet from node to node whole (no
//!   segmentation, no merging): what the namespaces give by default.
//! - `nic`: like a physical NIC: the sender segments before the wire (no TSO: the
//!   segmentation is paid in software here, in hardware on a NIC) and the receiver
//!   merges after it (GRO in the veth's NAPI, as a NIC driver does). A veth merges
//!   only what a veth without TSO sends it, so both ends get the same settings.

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use super::netns::Netns;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Profile {
    Veth,
    Nic,
}

/// `ethtool -K` features that make a veth behave like a NIC's driver.
const NIC_FEATURES: &str =
    "tso off gso off tx-udp_tnl-segmentation off tx-udp_tnl-csum-segmentation off gro on";

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Veth, Profile::Nic];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Veth => "veth",
            Profile::Nic => "nic",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Profile::Veth => "veth underlay: 64 KB packets cross from node to node whole",
            Profile::Nic => {
                "NIC-like underlay: segmented before the wire (no TSO), merged after it (GRO)"
            }
        }
    }

    /// Gives the underlay interface `ifname` in `ns` this profile's behaviour.
    pub fn apply(self, ns: &Netns, ifname: &str) -> Result<()> {
        if self == Profile::Nic {
            ns.sh(&format!("ethtool -K {ifname} {NIC_FEATURES}"))
                .with_context(|| format!("NIC-like settings on {ifname} in {}", ns.name))?;
        }
        Ok(())
    }
}
