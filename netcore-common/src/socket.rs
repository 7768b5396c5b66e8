//! The node's own sockets: a connect() or sendmsg() to a NodePort on the node's own
//! address is sent to a backend at the socket (cgroup sock_addr hooks), as no packet
//! of it crosses an interface netcore's TC programs sit on (it would go through `lo`).
//! UDP sockets remember what they were sent to, so that recvmsg() shows the answers as
//! coming from the NodePort.

use bytemuck::{Pod, Zeroable};

/// A socket (`bpf_get_socket_cookie`) and the backend it was sent to (address and port
/// in network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SockKey {
    pub cookie: u64,
    pub ip: u32,
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<SockKey>() == 16);

/// The address and port the socket's process asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SockOrigin {
    pub ip: u32,
    pub port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<SockOrigin>() == 8);

/// UDP sockets followed at once.
pub const MAX_SOCK_ORIGINS: u32 = 65536;

crate::user_pod!(SockKey, SockOrigin);
