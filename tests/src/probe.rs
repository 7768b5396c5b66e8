//! Reachability probes for network policy tests, in the style of Kubernetes' own
//! network-policy e2e suite: every pod tries every pod on each (protocol, port), all
//! at once, and the outcome is compared with a truth table.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    time::Duration,
};

/// How long a probe waits: a dropped SYN or datagram is a "no" after this.
fn probe_timeout() -> Duration {
    if crate::slow_kernel() {
        Duration::from_secs(4)
    } else {
        Duration::from_millis(1500)
    }
}

/// How many probes run at once (all of a matrix, but for the slow kernel).
fn parallel(total: usize) -> usize {
    if crate::slow_kernel() {
        total.min(24)
    } else {
        total
    }
}

/// How long a policy change may take to show in the probes of every node.
pub fn settle_time() -> Duration {
    if crate::slow_kernel() {
        Duration::from_secs(180)
    } else {
        Duration::from_secs(20)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A pod to probe from and to.
#[derive(Clone, Debug)]
pub struct Target {
    /// `namespace/name`.
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: PathBuf,
}

/// Whether a TCP echo from `ns` to `to` completes.
pub fn tcp(ns: &Path, to: SocketAddr) -> bool {
    let conn =
        netcore_agent::netns::run_in(ns, || TcpStream::connect_timeout(&to, probe_timeout()));
    let Ok(Ok(mut s)) = conn else { return false };
    let mut exchange = || -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(probe_timeout()))?;
        s.write_all(b"probe")?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        Ok(reply)
    };
    exchange().is_ok_and(|r| r.ends_with(b":probe"))
}

/// Whether a UDP echo from `ns` to `to` comes back.
pub fn udp(ns: &Path, to: SocketAddr) -> bool {
    let sock = netcore_agent::netns::run_in(ns, || UdpSocket::bind(("0.0.0.0", 0)));
    let Ok(Ok(sock)) = sock else { return false };
    let mut buf = [0u8; 512];
    let answered = sock
        .set_read_timeout(Some(probe_timeout()))
        .and_then(|()| sock.send_to(b"probe", to))
        .and_then(|_| sock.recv_from(&mut buf));
    answered.is_ok_and(|(n, _)| buf[..n].ends_with(b":probe"))
}

/// One probe's outcome: (from, to, proto, port) -> reached.
pub type Outcome = Vec<((String, String, Proto, u16), bool)>;

/// Every pod to every pod on each of `ports`, in parallel; `dst` says which address
/// to call for a target (its own, or a service in front of it).
pub fn matrix(
    pods: &[Target],
    ports: &[(Proto, u16)],
    dst: impl Fn(&Target, u16) -> Option<SocketAddr> + Sync,
) -> Outcome {
    let mut probes = Vec::new();
    for from in pods {
        for to in pods {
            for &(proto, port) in ports {
                if let Some(addr) = dst(to, port) {
                    probes.push((from, to, proto, port, addr));
                }
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(from, to, proto, port, addr)) = probes.get(i) else {
                return out;
            };
            let ok = match proto {
                Proto::Tcp => tcp(&from.netns, addr),
                Proto::Udp => udp(&from.netns, addr),
            };
            out.push(((from.name.clone(), to.name.clone(), proto, port), ok));
        }
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallel(probes.len()))
            .map(|_| s.spawn(worker))
            .collect();
        let mut all: Outcome = workers
            .into_iter()
            .flat_map(|w| w.join().expect("probe thread"))
            .collect();
        all.sort();
        all
    })
}

/// Where `got` differs from `want`, one line each.
pub fn differences(got: &Outcome, want: impl Fn(&str, &str, Proto, u16) -> bool) -> Vec<String> {
    got.iter()
        .filter(|((f, t, p, port), ok)| want(f, t, *p, *port) != *ok)
        .map(|((f, t, p, port), ok)| {
            let (expected, seen) = if *ok {
                ("denied", "reached")
            } else {
                ("reached", "denied")
            };
            format!("{f} -> {t} {p:?}/{port}: expected {expected}, {seen}")
        })
        .collect()
}
