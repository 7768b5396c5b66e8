//! cgroup sock_addr hooks: what the node's own processes connect or send to. A NodePort
//! on the node's own address gets a backend at the socket: connect() and sendmsg() go
//! to the backend directly (no packet to translate afterwards), and a UDP socket's
//! answers are shown by recvmsg() as coming from the NodePort. The hooks sit on the
//! cgroup v2 root and run for every process of the host: they act only on sockets of
//! the node's network namespace. They never refuse: 1 lets the call go on.

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
    EbpfContext,
};
use netcore_common::{
    service::ServiceKey,
    socket::{SockKey, SockOrigin},
};

use crate::{
    forward,
    maps::{NC_NETNS, NC_SERVICES, NC_SOCK_ORIGINS},
    packet::IPPROTO_UDP,
    service,
};

const ALLOW: i32 = 1;

/// connect(), and sendmsg() of an unconnected UDP socket: a NodePort of this node
/// gets a backend.
#[inline(always)]
pub fn connect_or_send4(ctx: &SockAddrContext) -> i32 {
    to_backend(ctx);
    ALLOW
}

/// recvmsg() of a UDP socket sent to a backend: the answer is the NodePort's.
#[inline(always)]
pub fn recvmsg4(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    let key = SockKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        ip: unsafe { (*sa).user_ip4 },
        port: unsafe { (*sa).user_port } as u16,
        _pad: 0,
    };
    if let Some(origin) = unsafe { NC_SOCK_ORIGINS.get(&key) } {
        unsafe {
            (*sa).user_ip4 = origin.ip;
            (*sa).user_port = origin.port as u32;
        }
    }
    ALLOW
}

/// Whether the socket is in the node's network namespace.
#[inline(always)]
fn ours(ctx: &SockAddrContext) -> bool {
    let Some(&mine) = NC_NETNS.get(0) else { return false };
    mine != 0 && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == mine
}

/// Sends the socket to a backend if it asks for a NodePort on the node's address.
#[inline(always)]
fn to_backend(ctx: &SockAddrContext) -> Option<()> {
    if !ours(ctx) {
        return None;
    }
    let cfg = forward::config()?;
    let sa = ctx.sock_addr;
    let (ip, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16, (*sa).protocol as u8) };
    if ip != cfg.node_ip {
        return None;
    }
    let svc = unsafe { NC_SERVICES.get(&ServiceKey { vip: 0, port, proto, _pad: 0 }) }.copied()?;
    // No backend: left alone (nothing listens there: refused, as kube-proxy refuses).
    let backend = service::pick(&svc, cfg.node_ip)?;
    service::count(svc.id, 0, true, false);
    unsafe {
        (*sa).user_ip4 = backend.ip;
        (*sa).user_port = backend.port as u32;
    }
    if proto == IPPROTO_UDP {
        let key = SockKey {
            cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
            ip: backend.ip,
            port: backend.port,
            _pad: 0,
        };
        // Best effort: without it the answers show the backend's address.
        let _ = NC_SOCK_ORIGINS.insert(&key, &SockOrigin { ip, port, _pad: 0 }, 0);
    }
    Some(())
}
