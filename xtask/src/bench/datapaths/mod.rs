//! The datapaths under test, each set up in namespaces of its own and kept for every
//! round: what each one builds lives in its own file.

mod bridge;
mod host_gw;
mod netcore;
pub mod netcore_local;
mod socat_tun_udp;
mod underlay;
mod vxlan_kernel;

use std::{any::Any, net::Ipv4Addr, path::PathBuf};

use anyhow::Result;
use clap::ValueEnum;

use super::{netns::Netns, profile::Profile, testbed::Namer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Datapath {
    Underlay,
    HostGw,
    VxlanKernel,
    SocatTunUdp,
    Netcore,
    NetcoreDecapTc,
    NetcoreAttachTc,
    NetcoreDirect,
    NetcoreMonitor,
    NetcoreNoflows,
    Bridge,
    NetcoreLocal,
}

/// Where traffic goes once a datapath is up: from a client namespace to a server
/// address inside another, over a path whose MTU is `path_mtu`.
pub struct Target {
    pub client: String,
    pub server: String,
    pub server_ip: Ipv4Addr,
    pub path_mtu: u32,
}

impl Target {
    /// From the first of two pods to the second, at `server_ip`.
    pub fn between(pods: &[Netns], server_ip: Ipv4Addr, path_mtu: u32) -> Target {
        Target {
            client: pods[0].name.clone(),
            server: pods[1].name.clone(),
            server_ip,
            path_mtu,
        }
    }
}

/// A datapath that is up: its target, and what keeps it up (agents, namespaces),
/// dropped in order: first to last.
pub struct Setup {
    pub target: Target,
    /// Held only to be dropped when the run ends.
    #[allow(dead_code)]
    pub parts: Vec<Box<dyn Any>>,
}

/// What every set-up needs from the run.
pub struct Context {
    pub namer: Namer,
    pub mtu: u32,
    /// How the underlay between the nodes behaves.
    pub profile: Profile,
    pub netcore: PathBuf,
    pub work_dir: PathBuf,
    pub pin_dir: PathBuf,
}

impl Datapath {
    pub const ALL: [Datapath; 12] = [
        Datapath::Underlay,
        Datapath::HostGw,
        Datapath::VxlanKernel,
        Datapath::SocatTunUdp,
        Datapath::Netcore,
        Datapath::NetcoreDecapTc,
        Datapath::NetcoreAttachTc,
        Datapath::NetcoreDirect,
        Datapath::NetcoreMonitor,
        Datapath::NetcoreNoflows,
        Datapath::Bridge,
        Datapath::NetcoreLocal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Datapath::Underlay => "underlay",
            Datapath::HostGw => "host-gw",
            Datapath::VxlanKernel => "vxlan-kernel",
            Datapath::SocatTunUdp => "socat-tun-udp",
            Datapath::Netcore => "netcore",
            Datapath::NetcoreDecapTc => "netcore-decap-tc",
            Datapath::NetcoreAttachTc => "netcore-attach-tc",
            Datapath::NetcoreDirect => "netcore-direct",
            Datapath::NetcoreMonitor => "netcore-monitor",
            Datapath::NetcoreNoflows => "netcore-noflows",
            Datapath::Bridge => "bridge",
            Datapath::NetcoreLocal => "netcore-local",
        }
    }

    /// A short tag for namespace names.
    fn tag(self) -> &'static str {
        match self {
            Datapath::Underlay => "ul",
            Datapath::HostGw => "hg",
            Datapath::VxlanKernel => "vx",
            Datapath::SocatTunUdp => "st",
            Datapath::Netcore => "nc",
            Datapath::NetcoreDecapTc => "nd",
            Datapath::NetcoreAttachTc => "na",
            Datapath::NetcoreDirect => "nr",
            Datapath::NetcoreMonitor => "nm",
            Datapath::NetcoreNoflows => "nf",
            Datapath::Bridge => "br",
            Datapath::NetcoreLocal => "nl",
        }
    }

    pub fn same_node(self) -> bool {
        matches!(self, Datapath::Bridge | Datapath::NetcoreLocal)
    }

    pub fn setup(self, ctx: &Context) -> Result<Setup> {
        let tag = self.tag();
        match self {
            Datapath::Underlay => underlay::setup(ctx, tag),
            Datapath::HostGw => host_gw::setup(ctx, tag),
            Datapath::VxlanKernel => vxlan_kernel::setup(ctx, tag),
            Datapath::SocatTunUdp => socat_tun_udp::setup(ctx, tag),
            Datapath::Netcore => netcore::setup(ctx, tag, ""),
            Datapath::NetcoreDecapTc => netcore::setup(ctx, tag, "decap = \"tc\""),
            Datapath::NetcoreAttachTc => netcore::setup(ctx, tag, "attach = \"tc\""),
            Datapath::NetcoreDirect => netcore::setup(ctx, tag, "backend = \"host-gw\""),
            Datapath::NetcoreMonitor => netcore::setup_watched(ctx, tag),
            Datapath::NetcoreNoflows => netcore::setup(ctx, tag, "flows = false"),
            Datapath::Bridge => bridge::setup(ctx, tag),
            Datapath::NetcoreLocal => netcore_local::setup(ctx, tag),
        }
    }
}

/// A set-up from its target and parts; parts are boxed in the order given.
fn setup_of(target: Target, parts: Vec<Box<dyn Any>>) -> Result<Setup> {
    Ok(Setup { target, parts })
}
