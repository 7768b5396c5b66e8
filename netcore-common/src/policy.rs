//! Network policy (Kubernetes NetworkPolicy, compiled by the agent) as the programs
//! see it: three maps and a connection table.
//!
//! - Every local endpoint carries two policy-set ids (`EndpointInfo::ingress_set`,
//!   `egress_set`): 0 when no policy isolates it in that direction, else the id of
//!   the set of policies that select it. Pods selected by the same policies share a
//!   set.
//! - `NC_PEERS` (LPM over IPv4) gives every address its peer class: pods by their
//!   namespace and labels (pods with the same ones share a class), and the CIDRs of
//!   `ipBlock`s with their exceptions. An address no entry covers is class 0.
//! - `NC_POLICY` (LPM) holds what is allowed: (set, peer class, protocol, port
//!   prefix). A flow's first packet is allowed when a lookup of its (set, class of the
//!   other end, protocol, destination port) finds an entry.
//! - `NC_POLICY_CT` remembers allowed flows, so that only a flow's first packet
//!   consults policy and replies pass. The agent removes the entries of flows a policy
//!   change no longer allows.

use bytemuck::{Pod, Zeroable};

/// Key of `NC_POLICY` (LPM; the prefix covers `set`, `peer`, `proto` and then the
/// port's leading bits). The port is big-endian so that a prefix of it is a port range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct PolicyKey {
    pub set: u32,
    pub peer: u32,
    /// IP protocol; with a prefix that stops before it, any protocol.
    pub proto: u8,
    /// Destination port, network order.
    pub port: [u8; 2],
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<PolicyKey>() == 12);

/// Prefix bits of a `PolicyKey` that cover `set` and `peer` (any protocol, any port).
pub const POLICY_PREFIX_ANY: u32 = 64;
/// ... and `proto` (any port).
pub const POLICY_PREFIX_PROTO: u32 = 72;
/// ... and the whole port.
pub const POLICY_PREFIX_FULL: u32 = 88;

/// Value of `NC_POLICY`: which policy the entry comes from (for its hit counter).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PolicyRule {
    /// Index into `NC_POLICY_HITS`.
    pub policy: u32,
}

const _: () = assert!(core::mem::size_of::<PolicyRule>() == 4);

/// Value of `NC_PEERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PeerClass {
    pub class: u32,
}

const _: () = assert!(core::mem::size_of::<PeerClass>() == 4);

/// Value of `NC_POLICY_CT` (keyed by the flow as `conntrack::CtKey`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PolicyFlow {
    /// `bpf_ktime_get_ns` of the flow's last packet (refreshed lazily).
    pub last_seen: u64,
}

const _: () = assert!(core::mem::size_of::<PolicyFlow>() == 8);

/// Value of `NC_POLICY_DENIED` (per CPU): the denial of the packet being decided, for
/// the program's exit (monitor event, eBPF log).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PolicyDenial {
    /// The policy set that denied it.
    pub set: u32,
    /// 1: the receiving pod's ingress policy; 0: the sending pod's egress policy.
    pub ingress: u32,
    pub flow: crate::conntrack::CtKey,
}

const _: () = assert!(core::mem::size_of::<PolicyDenial>() == 24);

/// Class 0: an address no pod and no ipBlock covers.
pub const CLASS_WORLD: u32 = 0;

/// Entries of `NC_POLICY`.
pub const MAX_POLICY_ENTRIES: u32 = 131072;
/// Entries of `NC_PEERS`: pods cluster-wide and ipBlock prefixes.
pub const MAX_PEERS: u32 = 65536;
/// Flows `NC_POLICY_CT` remembers (LRU).
pub const MAX_POLICY_FLOWS: u32 = 262144;
/// Slots of `NC_POLICY_HITS` (policies with a hit counter).
pub const MAX_POLICIES: u32 = 16384;
/// How long an idle allowed flow is remembered: TCP as nf_conntrack's established
/// timeout is too long without state tracking here; a day. Others: 2 minutes.
pub const POLICY_FLOW_TCP_NS: u64 = 24 * 3600 * 1_000_000_000;
pub const POLICY_FLOW_OTHER_NS: u64 = 120 * 1_000_000_000;

crate::user_pod!(PolicyKey, PolicyRule, PeerClass, PolicyFlow, PolicyDenial);
