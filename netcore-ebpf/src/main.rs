//! netcore's data path: TC (TCX) programs, one file per attach point.
//!
//! - `from_pod`: ingress of a pod's host veth (what the pod sends);
//! - `from_host`: egress of the node bridge (what the node's own stack sends to pods);
//! - `from_uplink`: ingress of the uplink (NodePort, VXLAN screening; the rest passes);
//! - `from_overlay`: ingress of the node's VXLAN device (what other nodes' pods send);
//! - `sock_*`: cgroup sock_addr hooks of the node's own processes (`from_socket`).
//!
//! Every program returns `Result<Verdict, Reason>` from small helpers, and
//! `verdict::finish` is the one exit that counts the outcome.
#![no_std]
#![no_main]

mod conntrack;
mod flows;
mod forward;
mod fragment;
mod from_host;
mod from_overlay;
mod from_pod;
mod from_socket;
mod from_uplink;
mod headers;
mod icmp;
mod l2;
mod l4;
mod maps;
mod monitor;
mod nat;
mod overlay;
mod packet;
mod policy;
mod reject;
mod service;
mod verdict;
mod vxlan;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};
use netcore_common::monitor::{
    PROGRAM_FROM_HOST, PROGRAM_FROM_OVERLAY, PROGRAM_FROM_POD, PROGRAM_FROM_UPLINK,
};

#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    verdict::finish(&ctx, PROGRAM_FROM_POD, from_pod::run(&ctx))
}

#[classifier]
pub fn from_host(ctx: TcContext) -> i32 {
    verdict::finish(&ctx, PROGRAM_FROM_HOST, from_host::run(&ctx))
}

#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
    verdict::finish(&ctx, PROGRAM_FROM_UPLINK, from_uplink::run(&ctx))
}

#[classifier]
pub fn from_overlay(ctx: TcContext) -> i32 {
    verdict::finish(&ctx, PROGRAM_FROM_OVERLAY, from_overlay::run(&ctx))
}

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    from_socket::connect_or_send4(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    from_socket::connect_or_send4(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    from_socket::recvmsg4(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
