//! Service load balancing: a flow to a service address gets one backend, picked at
//! random among the service's backends when the flow starts (or the client's last
//! one, with session affinity) and kept for its life (also when backends are added
//! later). Both directions are tracked so replies get
//! the service address back.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use netcore_common::{
    config::DatapathConfig,
    conntrack::{
        CtEntry, CtKey, CT_FORWARD, CT_NODEPORT, CT_REVERSE, CT_SNAT, CT_STATE_CLOSED, CT_STATE_CLOSING,
        CT_STATE_NEW,
    },
    counters::Reason,
    fragment::{FRAG_FORWARD, FRAG_NODEPORT, FRAG_REPLY},
    service::{
        Affinity, AffinityKey, Backend, BackendKey, BackendRef, ServiceInfo, ServiceKey, MAX_BACKENDS_PER_SERVICE,
        SVC_LOCAL_KEEPS_SOURCE,
    },
};

use crate::{
    conntrack,
    forward::{self, Dest},
    l4::{self, Flow, IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    maps::{NC_AFFINITY, NC_BACKENDS, NC_BACKEND_SLOTS, NC_SERVICES, NC_SVC_AFFINITY, NC_SVC_COUNTERS},
    fragment, icmp, nat, policy,
    reject::{self, Back},
    verdict::Verdict,
};

pub enum Lb {
    /// Translated: the packet now goes to `dst`.
    To { dst: u32 },
    /// The service has no backend.
    NoBackend,
    /// A TCP segment that opens nothing, of no flow tracked (its entry timed out, or
    /// its backend was removed): the client gets a reset, not a backend that knows
    /// nothing of the connection.
    NoFlow,
}

/// The refusal a balancing outcome calls for, if any.
#[inline(always)]
fn refusal(lb: &Lb) -> Reason {
    match lb {
        Lb::NoFlow => Reason::RejectedNoFlow,
        _ => Reason::RejectedNoBackend,
    }
}

/// How a service flow is to be translated.
pub struct Translation {
    /// NodePort traffic: match any address of the node, reply through the uplink.
    pub nodeport: bool,
    /// Source address to put on forwarded packets (masquerade), if any; not used for
    /// a local backend of a service that keeps the client's address.
    pub snat: Option<u32>,
}

/// What service handling decided for a packet: route it to `dst` (its own
/// destination unless `translated`), or, when `done`, it was handled entirely
/// (refused, or a NodePort reply sent out) and `verdict` says how.
///
/// A struct whose every field is written on every path, not an enum: the compiler
/// may read an enum's payload before checking which variant it holds, and Linux
/// 6.1's verifier refuses reading a stack slot that no path wrote.
pub struct Svc {
    pub dst: u32,
    pub translated: bool,
    /// A reply of a translated flow (it got the service address back): policy
    /// allowed the flow when it started.
    pub reply: bool,
    pub done: bool,
    pub verdict: Verdict,
}

impl Svc {
    /// Not a service flow: route the packet as it is, to `dst`.
    #[inline(always)]
    pub fn pass(dst: u32) -> Self {
        Svc { dst, translated: false, reply: false, done: false, verdict: Verdict::pass() }
    }

    #[inline(always)]
    fn to(dst: u32) -> Self {
        Svc { dst, translated: true, reply: false, done: false, verdict: Verdict::pass() }
    }

    /// A reply of a translated flow, now on its way to `dst`.
    #[inline(always)]
    fn reply(dst: u32) -> Self {
        Svc { dst, translated: false, reply: true, done: false, verdict: Verdict::pass() }
    }

    #[inline(always)]
    fn done(verdict: Verdict) -> Self {
        Svc { dst: 0, translated: false, reply: false, done: true, verdict }
    }
}

/// A pod's packet: a reply of a local backend gets the service address back, a flow
/// to a service gets a backend.
#[inline(always)]
pub fn from_pod(ctx: &TcContext, cfg: &DatapathConfig, dst: u32) -> Result<Svc, Reason> {
    let Some(flow) = l4::flow(ctx)? else { return related(ctx, cfg, dst) };
    if let Some(rev) = reverse(ctx, &flow)? {
        if rev.flags & CT_NODEPORT != 0 {
            return forward::to_uplink(ctx, cfg).map(Svc::done);
        }
        return Ok(Svc::reply(if rev.flags & CT_SNAT != 0 { rev.b_ip } else { flow.dst }));
    }
    to_service(ctx, cfg, &flow, Back::ToPod)
}

/// What the node's own stack sends into the bridge: a reply of a translated flow whose
/// backend is not a pod (a node's own process, or a server outside the cluster whose
/// answer the node routes back) gets the service address back; a flow of the node's
/// own to a service gets a backend. Replies of pod backends are translated where they
/// arrive (`from_pod`, or after decapsulation).
#[inline(always)]
pub fn from_host(ctx: &TcContext, cfg: &DatapathConfig, dst: u32) -> Result<Svc, Reason> {
    let Some(flow) = l4::flow(ctx)? else { return related(ctx, cfg, dst) };
    if let Some(rev) = reverse(ctx, &flow)? {
        if rev.flags & CT_NODEPORT != 0 {
            return forward::to_uplink(ctx, cfg).map(Svc::done);
        }
        return Ok(Svc::reply(if rev.flags & CT_SNAT != 0 { rev.b_ip } else { flow.dst }));
    }
    to_service(ctx, cfg, &flow, Back::ToHost)
}

/// A packet without ports: one that belongs to a translated flow (`portless`) goes
/// on to the backend, or back to the client (a NodePort client's out of the uplink);
/// anything else to `dst` as it is.
#[inline(always)]
fn related(ctx: &TcContext, cfg: &DatapathConfig, dst: u32) -> Result<Svc, Reason> {
    match portless(ctx)? {
        None => Ok(Svc::pass(dst)),
        Some((_, kind)) if kind & FRAG_NODEPORT != 0 => forward::to_uplink(ctx, cfg).map(Svc::done),
        Some((client, kind)) if kind & FRAG_REPLY != 0 => Ok(Svc::reply(client)),
        Some((backend, _)) => Ok(Svc::to(backend)),
    }
}

/// A packet without ports that belongs to a translated flow, translated as the flow
/// is: an ICMP error about it (icmp.rs), or a later fragment of one of its datagrams
/// (fragment.rs). Its new destination and which way it goes (`FRAG_*`).
#[inline(always)]
fn portless(ctx: &TcContext) -> Result<Option<(u32, u32)>, Reason> {
    let r = icmp::translate_error(ctx);
    if r & icmp::FAILED != 0 {
        return Err(Reason::DropNatFailed);
    }
    if r & icmp::TRANSLATED != 0 {
        let kind = match r {
            r if r & icmp::TO_BACKEND != 0 => FRAG_FORWARD,
            r if r & icmp::TO_UPLINK != 0 => FRAG_REPLY | FRAG_NODEPORT,
            _ => FRAG_REPLY,
        };
        return Ok(Some((r as u32, kind)));
    }
    Ok(fragment::follow(ctx)?.map(|f| (f.dst, f.kind)))
}

/// The NodePort service `flow` reaches, when it is addressed to a node of the cluster
/// (this one, or any other by its underlay address): a pod may use NodePorts too.
#[inline(always)]
fn nodeport_service(cfg: &DatapathConfig, flow: &Flow) -> Option<ServiceInfo> {
    let is_node = flow.dst == cfg.node_ip
        || forward::remote_node(flow.dst).is_some_and(|n| n.underlay_ip == flow.dst);
    if is_node {
        service(0, flow)
    } else {
        None
    }
}

/// A flow from inside the node to a service address (or a node's NodePort), if it is
/// one: translated to a backend, or refused back to `back` when the service has none.
#[inline(always)]
fn to_service(ctx: &TcContext, cfg: &DatapathConfig, flow: &Flow, back: Back) -> Result<Svc, Reason> {
    let Some(svc) = service(flow.dst, flow).or_else(|| nodeport_service(cfg, flow)) else {
        forget_stale_reverse(ctx, flow)?;
        return Ok(Svc::pass(flow.dst));
    };
    match balance(ctx, &svc, flow, &Translation { nodeport: false, snat: None })? {
        Lb::To { dst } => Ok(Svc::to(dst)),
        lb => reject::refuse(ctx, flow, back, refusal(&lb)).map(Svc::done),
    }
}

/// A TCP SYN that opens a flow no map translates: a reverse entry for its replies is
/// left over from an older service flow on the same addresses and ports (kept for
/// the TCP timeout after it closed) and would rewrite the new flow's replies as the
/// old one's; it goes.
#[inline(always)]
fn forget_stale_reverse(ctx: &TcContext, flow: &Flow) -> Result<(), Reason> {
    if flow.proto != IPPROTO_TCP || l4::tcp_flags(ctx)? & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return Ok(());
    }
    let reply = Flow { src: flow.dst, dst: flow.src, sport: flow.dport, dport: flow.sport, proto: flow.proto };
    conntrack::forget_reverse(&reply.key());
    Ok(())
}

#[inline(always)]
pub fn service(vip: u32, flow: &Flow) -> Option<ServiceInfo> {
    let key = ServiceKey { vip, port: flow.dport, proto: flow.proto, _pad: 0 };
    unsafe { NC_SERVICES.get(&key) }.copied()
}

#[inline(always)]
pub fn count(id: u32, bytes: u32, new_connection: bool, rejected: bool) {
    if let Some(c) = NC_SVC_COUNTERS.get_ptr_mut(id) {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
            (*c).connections += new_connection as u64;
            (*c).rejected += rejected as u64;
        }
    }
}

/// Translates the packet of `flow` if it belongs to `svc` (found under `vip`).
#[inline(always)]
pub fn balance(ctx: &TcContext, svc: &ServiceInfo, flow: &Flow, how: &Translation) -> Result<Lb, Reason> {
    let key = flow.key();
    let flags = if flow.proto == IPPROTO_TCP { l4::tcp_flags(ctx)? } else { 0 };
    let opens = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let mut found = conntrack::lookup(&key).filter(|e| e.flags & CT_FORWARD != 0);
    if let Some(e) = found.filter(|e| opens && conntrack::is_over(e)) {
        // A SYN on a closed flow's addresses and ports opens another one: the old
        // entries go, or they would shadow the new flow's.
        conntrack::forget(&key, &e);
        found = None;
    }
    let fwd = match found {
        Some(e) => {
            if flow.proto == IPPROTO_TCP && !opens && e.state == CT_STATE_NEW {
                // The client acknowledged the backend's SYN-ACK: the handshake is
                // done and the flow established. A spoofed source never saw the
                // SYN-ACK and cannot guess the number.
                if conntrack::completes_handshake(&e, l4::tcp_seq_ack(ctx)?.1) {
                    conntrack::answered(&key, &e);
                }
            }
            track(&key, &e, flags);
            count(svc.id, ctx.len(), false, false);
            e
        }
        _ if flow.proto == IPPROTO_TCP && !opens => {
            count(svc.id, ctx.len(), false, true);
            return Ok(Lb::NoFlow);
        }
        _ => {
            let Some(e) = new_flow(svc, flow, how)? else {
                count(svc.id, ctx.len(), false, true);
                return Ok(Lb::NoBackend);
            };
            count(svc.id, ctx.len(), true, false);
            e
        }
    };
    nat::set_dst(ctx, flow, fwd.a_ip, fwd.a_port)?;
    if fwd.flags & CT_SNAT != 0 {
        let after = Flow { dst: fwd.a_ip, dport: fwd.a_port, ..*flow };
        nat::set_src(ctx, &after, fwd.b_ip, fwd.b_port)?;
    }
    fragment::remember(ctx, flow, FRAG_FORWARD);
    Ok(Lb::To { dst: fwd.a_ip })
}

/// A FIN or RST moves the flow of `e` (under `key`) towards its end.
#[inline(always)]
fn track(key: &CtKey, e: &CtEntry, tcp_flags: u8) {
    if tcp_flags & TCP_RST != 0 {
        conntrack::closing(key, e, CT_STATE_CLOSED);
    } else if tcp_flags & TCP_FIN != 0 {
        conntrack::closing(key, e, CT_STATE_CLOSING);
    }
}

/// The backend of a new flow: the client's last one while its session affinity lasts
/// (and the backend is still the service's), else one at random.
#[inline(always)]
pub fn pick(svc: &ServiceInfo, client: u32) -> Option<Backend> {
    let timeout_s = NC_SVC_AFFINITY.get(svc.id).copied().unwrap_or(0);
    let key = AffinityKey { service_id: svc.id, client };
    let now = unsafe { bpf_ktime_get_ns() };
    if timeout_s != 0 {
        // A copy: another CPU may replace (and the LRU reuse) the entry meanwhile.
        if let Some(a) = unsafe { NC_AFFINITY.get(&key) }.copied() {
            // Saturating: another CPU may have stamped it after `now` was read.
            let fresh = now.saturating_sub(a.last_ns) < timeout_s as u64 * 1_000_000_000;
            if fresh && is_backend(svc, &a.backend) {
                remember(&key, a.backend, now);
                return Some(a.backend);
            }
        }
    }
    // Checked: the helper calls above hide from the compiler that count is not 0.
    let slot = unsafe { bpf_get_prandom_u32() }.checked_rem(svc.count)?;
    let backend = backend_at(svc.id, slot)?;
    if timeout_s != 0 {
        remember(&key, backend, now);
    }
    Some(backend)
}

/// Whether `b` is one of `svc`'s current backends (its slot, by address, is in use
/// and holds it).
#[inline(always)]
fn is_backend(svc: &ServiceInfo, b: &Backend) -> bool {
    let r = BackendRef { service_id: svc.id, backend: *b };
    let Some(slot) = unsafe { NC_BACKEND_SLOTS.get(&r) }.copied() else { return false };
    // Field by field: comparing the structs would be a call to bcmp.
    slot < svc.count && backend_at(svc.id, slot).is_some_and(|x| x.ip == b.ip && x.port == b.port)
}

#[inline(always)]
fn backend_at(service_id: u32, slot: u32) -> Option<Backend> {
    unsafe { NC_BACKENDS.get(&BackendKey { service_id, slot }) }.copied()
}

#[inline(always)]
fn remember(key: &AffinityKey, backend: Backend, now: u64) {
    let a = Affinity { backend, last_ns: now };
    // Best effort: without an entry the next connection is balanced afresh.
    let _ = NC_AFFINITY.insert(key, &a, 0);
}

/// Picks a backend and records both directions of the new flow; none without a
/// backend. A masqueraded flow finding no free source port is dropped (the client
/// retries) rather than taking a live flow's replies.
#[inline(always)]
fn new_flow(svc: &ServiceInfo, flow: &Flow, how: &Translation) -> Result<Option<CtEntry>, Reason> {
    if svc.count == 0 || svc.count > MAX_BACKENDS_PER_SERVICE {
        return Ok(None);
    }
    let Some(backend) = pick(svc, flow.src) else { return Ok(None) };
    let nodeport = if how.nodeport { CT_NODEPORT } else { 0 };
    let keep_source = svc.flags & SVC_LOCAL_KEEPS_SOURCE != 0 && forward::is_local(backend.ip);
    // Hairpin: a pod reaching itself through its service would receive a packet from
    // its own address, which its stack drops as a martian; it gets one from the
    // service address instead.
    let hairpin = backend.ip == flow.src;
    let (snat, src_ip) = match how.snat {
        _ if hairpin => (CT_SNAT, flow.dst),
        Some(ip) if !keep_source => (CT_SNAT, ip),
        _ => (0, flow.src),
    };
    // Masqueraded flows share their source address, so the source port must tell their
    // replies apart.
    let sport = if snat != 0 { free_port(&backend, src_ip, flow).ok_or(Reason::DropNatFailed)? } else { flow.sport };
    let fwd = CtEntry {
        a_ip: backend.ip,
        a_port: backend.port,
        b_ip: src_ip,
        b_port: sport,
        service_id: svc.id,
        flags: CT_FORWARD | snat | nodeport,
        ..CtEntry::default()
    };
    // Replies come from the backend to the (translated) source.
    let reply = Flow { src: backend.ip, dst: src_ip, sport: backend.port, dport: sport, proto: flow.proto };
    let rev = CtEntry {
        a_ip: flow.dst,
        a_port: flow.dport,
        b_ip: flow.src,
        b_port: flow.sport,
        service_id: svc.id,
        flags: CT_REVERSE | snat | nodeport,
        ..CtEntry::default()
    };
    conntrack::insert(&flow.key(), fwd);
    conntrack::insert(&reply.key(), rev);
    Ok(Some(fwd))
}

/// Ports tried for a masqueraded flow after the client's own: above Linux's default
/// ephemeral range, so the node's own connections do not use them.
const SNAT_PORT_MIN: u32 = 61000;
const SNAT_PORT_SPAN: u32 = 65536 - SNAT_PORT_MIN;
const SNAT_TRIES: u32 = 4;

/// A source port (network order) for `flow` masqueraded as `src_ip` towards
/// `backend` that no live flow's replies use: the client's own if free, else a few
/// random ones; none if all are taken (a live flow's port is never reused).
#[inline(always)]
fn free_port(backend: &Backend, src_ip: u32, flow: &Flow) -> Option<u16> {
    let mut port = flow.sport;
    let mut tries = 0;
    while tries < SNAT_TRIES {
        let reply = Flow { src: backend.ip, dst: src_ip, sport: backend.port, dport: port, proto: flow.proto };
        if conntrack::lookup(&reply.key()).is_none() {
            return Some(port);
        }
        port = ((SNAT_PORT_MIN + unsafe { bpf_get_prandom_u32() } % SNAT_PORT_SPAN) as u16).to_be();
        tries += 1;
    }
    None
}

/// A reply of a translated flow: the source becomes the service again (and the
/// destination the original client, after masquerade). Returns the reverse entry.
#[inline(always)]
pub fn reverse(ctx: &TcContext, flow: &Flow) -> Result<Option<CtEntry>, Reason> {
    let key = flow.key();
    let Some(rev) = conntrack::lookup(&key) else { return Ok(None) };
    if rev.flags & CT_REVERSE == 0 {
        return Ok(None);
    }
    if flow.proto == IPPROTO_TCP {
        let flags = l4::tcp_flags(ctx)?;
        if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && rev.state == CT_STATE_NEW {
            conntrack::expect_ack(&key, &rev, l4::tcp_seq_ack(ctx)?.0);
        }
        track(&key, &rev, flags);
    } else {
        // The backend answered: the flow is established (safe from floods of new ones).
        conntrack::answered(&key, &rev);
    }
    nat::set_src(ctx, flow, rev.a_ip, rev.a_port)?;
    if rev.flags & CT_SNAT != 0 {
        let after = Flow { src: rev.a_ip, sport: rev.a_port, ..*flow };
        nat::set_dst(ctx, &after, rev.b_ip, rev.b_port)?;
    }
    let nodeport = if rev.flags & CT_NODEPORT != 0 { FRAG_NODEPORT } else { 0 };
    fragment::remember(ctx, flow, FRAG_REPLY | nodeport);
    Ok(Some(rev))
}

/// A reply of a remote backend (or an ICMP error about its flow), just decapsulated
/// for a local client: true if it was one (and got the service address back).
#[inline(always)]
pub fn reply_from_remote(ctx: &TcContext) -> Result<bool, Reason> {
    match l4::flow(ctx)? {
        Some(flow) => Ok(reverse(ctx, &flow)?.is_some()),
        None => Ok(portless(ctx)?.is_some()),
    }
}

/// A reply of a remote backend, just decapsulated for the node itself: the service
/// address back, and a NodePort client's reply straight out of the uplink.
#[inline(always)]
pub fn nodeport_reply(ctx: &TcContext, cfg: &DatapathConfig) -> Result<Option<Verdict>, Reason> {
    let nodeport = match l4::flow(ctx)? {
        Some(flow) => reverse(ctx, &flow)?.is_some_and(|rev| rev.flags & CT_NODEPORT != 0),
        None => portless(ctx)?.is_some_and(|(_, kind)| kind & FRAG_NODEPORT != 0),
    };
    if nodeport {
        return forward::to_uplink(ctx, cfg).map(Some);
    }
    Ok(None)
}

/// Traffic from outside to a NodePort of this node: to a backend, masqueraded as this
/// node unless the backend is local and the service keeps the client's address.
#[inline(always)]
pub fn nodeport(ctx: &TcContext, cfg: &DatapathConfig) -> Result<Option<Verdict>, Reason> {
    // The flow's locals end with the block: the policy check below does not stack on
    // them (Linux 6.1 allows 512 bytes over a program's whole call chain).
    let dst = {
        let Some(flow) = l4::flow(ctx)? else {
            // A later fragment of a datagram to a NodePort, or an ICMP error about a
            // NodePort flow's reply (a router on the way needs a smaller MTU): on to
            // the flow's backend.
            return match portless(ctx)? {
                Some((backend, kind)) if kind & FRAG_FORWARD != 0 => to_backend(ctx, cfg, backend).map(Some),
                Some((_, kind)) if kind & FRAG_NODEPORT != 0 => forward::to_uplink(ctx, cfg).map(Some),
                _ => Ok(None),
            };
        };
        let Some(svc) = service(0, &flow) else { return Ok(None) };
        let how = Translation { nodeport: true, snat: Some(cfg.node_ip) };
        match balance(ctx, &svc, &flow, &how)? {
            Lb::To { dst } => dst,
            lb => return reject::refuse(ctx, &flow, Back::ToUplink, refusal(&lb)).map(Some),
        }
    };
    to_backend(ctx, cfg, dst).map(Some)
}

/// A NodePort flow's packet, translated, on to its backend at `dst`.
#[inline(always)]
fn to_backend(ctx: &TcContext, cfg: &DatapathConfig, dst: u32) -> Result<Verdict, Reason> {
    match forward::lookup(dst) {
        Dest::Local(ep) => {
            policy::check(ctx, cfg, None, Some(&ep))?;
            forward::to_local_pod(ctx, cfg, &ep, Reason::RedirectedLocal)
        }
        Dest::Remote(node) => forward::to_remote_node(ctx, cfg, &node),
        Dest::Elsewhere => Err(Reason::DropNoRoute),
    }
}
