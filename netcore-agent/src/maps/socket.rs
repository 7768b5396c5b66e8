//! The socket hooks' one setting: the node's network namespace, by cookie (the hooks
//! run for every process of the host and act only on this namespace's sockets).

use aya::maps::{Array, Map, MapData};

use super::{err, MapError};

pub struct NetnsMap {
    map: Array<MapData, u64>,
    name: &'static str,
}

impl NetnsMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: Array::try_from(map).map_err(err(name))?,
            name,
        })
    }

    pub fn set(&mut self, cookie: u64) -> Result<(), MapError> {
        self.map.set(0, cookie, 0).map_err(err(self.name))
    }
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`, Linux
/// 5.14+).
pub fn netns_cookie() -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}
