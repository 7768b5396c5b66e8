//! Traffic between namespaces: pings, TCP transfers whose every byte is checked at the
//! receiver, long-running streams, and UDP probes.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};

use crate::netns::Netns;

/// Runs `ping ARGS DST` in a namespace; true when every reply came back.
fn ping_with(from: &str, dst: Ipv4Addr, args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", from, "ping"])
        .args(args)
        .arg(dst.to_string())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `ping -c COUNT` from a namespace; true when every reply came back.
pub fn ping(from: &str, dst: Ipv4Addr, count: u32) -> bool {
    ping_with(
        from,
        dst,
        &["-q", "-c", &count.to_string(), "-i", "0.05", "-W", "1"],
    )
}

/// One don't-fragment ping with `size` bytes of ICMP payload; true if answered.
pub fn ping_df(from: &str, dst: Ipv4Addr, size: u32) -> bool {
    ping_with(
        from,
        dst,
        &["-c", "1", "-W", "2", "-M", "do", "-s", &size.to_string()],
    )
}

/// Mean size of the packets `ifname` in `ns` received while `f` ran (bytes).
pub fn mean_rx_packet(ns: &Netns, ifname: &str, f: impl FnOnce() -> Result<()>) -> Result<u64> {
    let read = |what: &str| -> Result<u64> {
        let text = ns.sh(&format!("cat /sys/class/net/{ifname}/statistics/rx_{what}"))?;
        Ok(text.trim().parse()?)
    };
    let (b0, p0) = (read("bytes")?, read("packets")?);
    f()?;
    let (b1, p1) = (read("bytes")?, read("packets")?);
    Ok((b1 - b0) / (p1 - p0).max(1))
}

/// The byte at position `i` of every test stream (never periodic at TCP segment sizes).
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> std::io::Result<T> + Send) -> Result<T> {
    Ok(netcore_agent::netns::run_in(path, f)??)
}

pub fn listen_tcp(ns: &Path, port: u16) -> Result<TcpListener> {
    in_netns(ns, || TcpListener::bind(("0.0.0.0", port)))
}

pub fn connect_tcp(ns: &Path, dst: SocketAddr) -> Result<TcpStream> {
    in_netns(ns, || {
        TcpStream::connect_timeout(&dst, Duration::from_secs(5))
    })
    .with_context(|| format!("connecting to {dst}"))
}

/// Reads everything from `s`, checking each byte against the pattern.
fn receive_checked(mut s: TcpStream, counter: &AtomicU64) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(pos);
        }
        for (i, b) in buf[..n].iter().enumerate() {
            let at = pos + i as u64;
            if *b != pattern(at) {
                bail!(
                    "byte {at} is {b:#04x}, expected {:#04x}: the stream was corrupted",
                    pattern(at)
                );
            }
        }
        pos += n as u64;
        counter.store(pos, Ordering::Relaxed);
    }
}

fn send_pattern(s: &mut TcpStream, from: u64, len: usize) -> std::io::Result<()> {
    let chunk: Vec<u8> = (from..from + len as u64).map(pattern).collect();
    s.write_all(&chunk)
}

/// A connection from `from` to a listener in `to`, whose receiving end checks every
/// byte in a thread of its own (which gives up if nobody connects within `timeout`).
struct Checked {
    sender: TcpStream,
    received: Arc<AtomicU64>,
    receiver: JoinHandle<Result<u64>>,
}

fn checked_connection(
    from: &Netns,
    to: &Netns,
    to_ip: Ipv4Addr,
    timeout: Duration,
) -> Result<Checked> {
    checked_connection_via(from, to, 0, |port| SocketAddr::from((to_ip, port)), timeout)
}

/// As `checked_connection`, listening on `port` (0: any) and connecting to the
/// address `dst` gives for the listening port (a translating hop may be on the way).
fn checked_connection_via(
    from: &Netns,
    to: &Netns,
    port: u16,
    dst: impl FnOnce(u16) -> SocketAddr,
    timeout: Duration,
) -> Result<Checked> {
    let listener = listen_tcp(&to.path, port)?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let deadline = std::time::Instant::now() + timeout;
        let s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("waiting for the connection"),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(timeout))?;
        receive_checked(s, &counter)
    });
    let sender = connect_tcp(&from.path, dst(port))?;
    sender.set_write_timeout(Some(timeout))?;
    Ok(Checked {
        sender,
        received,
        receiver,
    })
}

/// Sends `bytes` from namespace `from` to a listener in `to` and checks every byte.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_ip: Ipv4Addr, bytes: u64) -> Result<()> {
    let conn = checked_connection(from, to, to_ip, Duration::from_secs(30))?;
    transfer(conn, bytes)
}

/// Sends `bytes` from `from` to `dst`, which some hop translates to port `port` in
/// `to`, where every byte is checked.
pub fn tcp_transfer_via(
    from: &Netns,
    dst: SocketAddr,
    to: &Netns,
    port: u16,
    bytes: u64,
) -> Result<()> {
    let conn = checked_connection_via(from, to, port, |_| dst, Duration::from_secs(30))?;
    transfer(conn, bytes)
}

fn transfer(conn: Checked, bytes: u64) -> Result<()> {
    let Checked {
        mut sender,
        receiver,
        ..
    } = conn;
    let mut sent = 0u64;
    const CHUNK: usize = 1 << 20;
    while sent < bytes {
        let len = CHUNK.min((bytes - sent) as usize);
        send_pattern(&mut sender, sent, len)?;
        sent += len as u64;
    }
    drop(sender);
    let received = receiver.join().expect("receiver thread")?;
    ensure!(
        received == bytes,
        "receiver got {received} bytes, expected {bytes}"
    );
    Ok(())
}

/// A TCP stream that keeps flowing until stopped.
pub struct Stream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    sender: Option<JoinHandle<Result<u64>>>,
    receiver: Option<JoinHandle<Result<u64>>>,
}

impl Stream {
    pub fn start(from: &Netns, to: &Netns, to_ip: Ipv4Addr) -> Result<Stream> {
        let Checked {
            sender: mut s,
            received,
            receiver,
        } = checked_connection(from, to, to_ip, Duration::from_secs(10))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let sender = std::thread::spawn(move || -> Result<u64> {
            let mut sent = 0u64;
            const CHUNK: usize = 64 * 1024;
            while !stop2.load(Ordering::Relaxed) {
                send_pattern(&mut s, sent, CHUNK).context("stream sender")?;
                sent += CHUNK as u64;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(sent)
        });
        Ok(Stream {
            stop,
            received,
            sender: Some(sender),
            receiver: Some(receiver),
        })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `more` bytes beyond what has arrived now have arrived.
    pub fn wait_progress(&self, more: u64, timeout: Duration) -> Result<()> {
        let target = self.received() + more;
        crate::wait_until(
            timeout,
            &format!("the stream to deliver {more} more bytes"),
            || self.received() >= target,
        )
    }

    /// Stops the sender and checks that every byte sent arrived intact.
    pub fn finish(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self
            .sender
            .take()
            .expect("running")
            .join()
            .expect("sender thread")?;
        let got = self
            .receiver
            .take()
            .expect("running")
            .join()
            .expect("receiver thread")?;
        ensure!(got == sent, "stream: sent {sent} bytes, received {got}");
        Ok(got)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP socket bound inside a namespace.
pub fn udp_socket(ns: &Path, port: u16) -> Result<UdpSocket> {
    in_netns(ns, || UdpSocket::bind(("0.0.0.0", port)))
}

/// A TCP connection in `ns` from `local` (a port other sockets may share, as with
/// SO_REUSEADDR) to `to`; connecting gives up after 5 s.
pub fn connect_tcp_from(ns: &Path, local: SocketAddr, to: SocketAddr) -> Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd};
    fn check(r: libc::c_int) -> std::io::Result<libc::c_int> {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }
    fn set<T>(fd: libc::c_int, opt: libc::c_int, value: &T) -> std::io::Result<()> {
        let len = std::mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: `value` is a live T of `len` bytes.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                value as *const T as *const libc::c_void,
                len,
            )
        })
        .map(drop)
    }
    fn sockaddr(a: SocketAddr) -> std::io::Result<libc::sockaddr_in> {
        let SocketAddr::V4(a) = a else {
            return Err(std::io::Error::other("IPv4 only"));
        };
        Ok(libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        })
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, to) = (sockaddr(local)?, sockaddr(to)?);
    in_netns(ns, || {
        // SAFETY: a fresh descriptor, owned by the stream from here on.
        let stream = unsafe {
            TcpStream::from_raw_fd(check(libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
            ))?)
        };
        let fd = stream.as_raw_fd();
        set(fd, libc::SO_REUSEADDR, &(1 as libc::c_int))?;
        // connect() gives up after this (the SYN's retries would take two minutes).
        set(
            fd,
            libc::SO_SNDTIMEO,
            &libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            },
        )?;
        let addr = |a: &libc::sockaddr_in| a as *const libc::sockaddr_in as *const libc::sockaddr;
        // SAFETY: both addresses are live sockaddr_in of `len` bytes.
        check(unsafe { libc::bind(fd, addr(&local), len) })?;
        check(unsafe { libc::connect(fd, addr(&to), len) })?;
        Ok(stream)
    })
    .with_context(|| {
        format!(
            "connecting to {} from port {}",
            u16::from_be(to.sin_port),
            u16::from_be(local.sin_port)
        )
    })
}
