//! Network policy: a flow's first packet between a local pod and anyone is checked
//! against the pod's policy sets (egress for what it sends, ingress for what it
//! receives); an allowed flow is remembered, and its later packets and its replies
//! pass on that. Traffic from the node itself, and a pod's traffic to itself, is
//! always allowed (as Kubernetes documents: a pod cannot block its own node).
//! The agent compiles Kubernetes NetworkPolicy into the maps (netcore_common::policy).

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key, programs::TcContext};
use netcore_common::{
    config::{DatapathConfig, FLAG_POLICY},
    conntrack::CtKey,
    counters::Reason,
    endpoint::EndpointInfo,
    policy::{
        PolicyFlow, PolicyKey, CLASS_WORLD, POLICY_FLOW_OTHER_NS, POLICY_FLOW_TCP_NS, POLICY_PREFIX_FULL,
    },
    wire::ETH_HLEN,
};

use crate::{
    forward,
    l4::IPPROTO_TCP,
    maps::{NC_PEERS, NC_POLICY, NC_POLICY_CT, NC_POLICY_DENIED, NC_POLICY_HITS},
    packet::IPPROTO_UDP,
};

const IPPROTO_SCTP: u8 = 132;
const IP_OFFSET_MASK: u16 = 0x1fff;
/// Refresh a remembered flow at most this often.
const REFRESH_NS: u64 = 1_000_000_000;

/// Checks the packet at the start of `ctx` (an IPv4 frame) sent by the local pod
/// `from` (if a local pod sends it) to the local pod `to` (if one receives it).
#[inline(always)]
pub fn check(
    ctx: &TcContext,
    cfg: &DatapathConfig,
    from: Option<&EndpointInfo>,
    to: Option<&EndpointInfo>,
) -> Result<(), Reason> {
    if cfg.flags & FLAG_POLICY == 0 {
        return Ok(());
    }
    let tracked = from.is_some_and(|e| e.has_policy()) || to.is_some_and(|e| e.has_policy());
    if !tracked {
        return Ok(());
    }
    if let (Some(a), Some(b)) = (from, to) {
        if a.host_ifindex == b.host_ifindex {
            return Ok(());
        }
    }
    let mut flow = flow_of(ctx)?;
    if remembered(&mut flow) {
        return Ok(());
    }
    let egress = from.map_or(0, |e| e.egress_set);
    if egress != 0 {
        allowed(egress, class_of(flow.dst), &flow, false)?;
    }
    let ingress = to.map_or(0, |e| e.ingress_set);
    if ingress != 0 && !from_the_node(cfg, flow.src) {
        allowed(ingress, class_of(flow.src), &flow, true)?;
    }
    // Best effort: a full table evicts its oldest flow (which is checked again).
    let _ = NC_POLICY_CT.insert(&flow, &PolicyFlow { last_seen: unsafe { bpf_ktime_get_ns() } }, 0);
    Ok(())
}

/// The node's own addresses, and service addresses (a pod reaching itself through its
/// service sees the service as the source).
#[inline(always)]
fn from_the_node(cfg: &DatapathConfig, src: u32) -> bool {
    src == cfg.node_ip || src == cfg.gateway_ip || forward::in_net(src, cfg.service_net, cfg.service_prefix)
}

/// The flow of the IPv4 frame: ports for TCP, UDP and SCTP (zero for other protocols
/// and for fragments after the first).
#[inline(always)]
fn flow_of(ctx: &TcContext) -> Result<CtKey, Reason> {
    let ip = ctx.load::<[u8; 20]>(ETH_HLEN).map_err(|_| Reason::DropMalformed)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let proto = ip[9];
    let mut key = CtKey {
        src: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
        sport: 0,
        dport: 0,
        proto,
        _pad: [0; 3],
    };
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & IP_OFFSET_MASK == 0;
    let has_ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
    if has_ports && first_fragment && ihl >= 20 {
        let ports = ctx.load::<[u16; 2]>(ETH_HLEN + ihl).map_err(|_| Reason::DropMalformed)?;
        (key.sport, key.dport) = (ports[0], ports[1]);
    }
    Ok(key)
}

/// Whether the flow, or the flow it answers, was allowed before (and is still live).
/// The reply's key is the flow's own, turned around and back (no second key on the
/// stack: Linux 6.1 allows 512 bytes over a program's call chain).
#[inline(always)]
fn remembered(flow: &mut CtKey) -> bool {
    if live(flow) {
        return true;
    }
    turn_around(flow);
    let reply = live(flow);
    turn_around(flow);
    reply
}

#[inline(always)]
fn turn_around(k: &mut CtKey) {
    (k.src, k.dst, k.sport, k.dport) = (k.dst, k.src, k.dport, k.sport);
}

#[inline(always)]
fn live(key: &CtKey) -> bool {
    let Some(f) = NC_POLICY_CT.get_ptr_mut(key) else { return false };
    let now = unsafe { bpf_ktime_get_ns() };
    let idle = now.saturating_sub(unsafe { (*f).last_seen });
    let timeout = if key.proto == IPPROTO_TCP { POLICY_FLOW_TCP_NS } else { POLICY_FLOW_OTHER_NS };
    if idle > timeout {
        return false;
    }
    if idle > REFRESH_NS {
        unsafe { (*f).last_seen = now };
    }
    true
}

/// The peer class of `addr`.
#[inline(always)]
fn class_of(addr: u32) -> u32 {
    NC_PEERS.get(Key::new(32, addr)).map_or(CLASS_WORLD, |c| c.class)
}

/// Whether policy set `set` allows the flow with the other end in `peer`: a hit is
/// counted for the policy that allows it; a denial is noted for the program's exit.
#[inline(always)]
fn allowed(set: u32, peer: u32, flow: &CtKey, ingress: bool) -> Result<(), Reason> {
    let key = PolicyKey { set, peer, proto: flow.proto, port: flow.dport.to_ne_bytes(), _pad: 0 };
    if let Some(rule) = NC_POLICY.get(Key::new(POLICY_PREFIX_FULL, key)) {
        if let Some(hits) = NC_POLICY_HITS.get_ptr_mut(rule.policy) {
            unsafe { *hits += 1 };
        }
        return Ok(());
    }
    if let Some(denied) = NC_POLICY_DENIED.get_ptr_mut(0) {
        unsafe {
            (*denied).set = set;
            (*denied).ingress = ingress as u32;
            (*denied).flow = *flow;
        }
    }
    Err(Reason::DropPolicy)
}
