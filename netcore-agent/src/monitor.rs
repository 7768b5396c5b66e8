//! `netcore monitor`: the data path's drop and trace events, decoded, to every client
//! that watches. The ring buffer is read by one task; each event is decoded once
//! (program, interface, reason, addresses, the pod or node they belong to) and sent to
//! every watcher as one JSON line. Watchers are counted: the programs write events only
//! while someone watches (`FLAG_MONITOR_*`), and the last watcher to leave turns them
//! off. Events the ring buffer had no room for are counted by the programs and
//! reported to watchers as `lost` lines.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use netcore_common::{
    counters::Reason,
    monitor::{
        Event, EVENT_DROP, PROGRAM_FROM_HOST, PROGRAM_FROM_OVERLAY, PROGRAM_FROM_POD,
        PROGRAM_FROM_UPLINK,
    },
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::unix::AsyncFd,
    sync::{broadcast, Mutex},
};

use crate::agent::Agent;

/// Lines in flight to a slow watcher before it misses some (and is told how many).
const BACKLOG: usize = 8192;
/// How often lost events are looked for while someone watches.
const LOST_EVERY: Duration = Duration::from_secs(1);

/// What a watcher asks for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Watch {
    /// Every drop.
    pub drops: bool,
    /// One passing packet in `every` (1: all of them).
    pub trace: bool,
    #[serde(default = "one")]
    pub every: u16,
}

fn one() -> u16 {
    1
}

/// One line of `netcore monitor --json` (schema in the README).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Drop(EventInfo),
    Trace(EventInfo),
    /// Events lost since the last such line (the ring buffer was full, or this
    /// watcher fell behind).
    Lost {
        events: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventInfo {
    /// Monotonic nanoseconds since boot (`bpf_ktime_get_ns`).
    pub time_ns: u64,
    pub program: String,
    pub interface: String,
    pub reason: String,
    pub len: u32,
    /// "tcp", "udp", "icmp", another protocol number, or null when not IPv4.
    pub proto: Option<String>,
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The outer addresses of a VXLAN packet.
    pub outer: Option<Outer>,
    /// The local pod the packet comes from or goes to, if any.
    pub pod: Option<String>,
    /// The remote node the packet comes from or goes to, if any.
    pub node: Option<String>,
    /// The policy that denied it, for a policy drop.
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outer {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// The watchers' side: a channel of decoded lines.
#[derive(Clone)]
pub struct Hub {
    lines: broadcast::Sender<Arc<Line>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            lines: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Hub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Line>> {
        self.lines.subscribe()
    }
}

/// Reads the ring buffer until the agent stops: decodes each event and sends it on.
pub async fn run(ring: RingBuf<MapData>, hub: Hub, agent: Arc<Mutex<Agent>>) {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives.
    let registered =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => return tracing::warn!("monitor events unavailable: {e}"),
    };
    tokio::spawn(report_lost(hub.clone(), agent.clone()));
    while let Ok(mut guard) = fd.readable_mut().await {
        let mut events = Vec::new();
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if let Ok(ev) = bytemuck::try_pod_read_unaligned::<Event>(&item) {
                    events.push(ev);
                }
            }
        }
        guard.clear_ready();
        if events.is_empty() || hub.lines.receiver_count() == 0 {
            continue;
        }
        let names = agent.lock().await.names();
        for ev in events {
            let _ = hub.lines.send(Arc::new(decode(&ev, &names)));
        }
    }
}

/// Sends how many events the programs could not write, while someone watches.
async fn report_lost(hub: Hub, agent: Arc<Mutex<Agent>>) {
    let mut last = agent.lock().await.counter(Reason::MonitorLost);
    loop {
        tokio::time::sleep(LOST_EVERY).await;
        let now = agent.lock().await.counter(Reason::MonitorLost);
        if now > last && hub.lines.receiver_count() > 0 {
            let _ = hub.lines.send(Arc::new(Line::Lost { events: now - last }));
        }
        last = now;
    }
}

/// What the agent knows to name addresses and interfaces with.
#[derive(Default)]
pub struct Names {
    pub pods: std::collections::HashMap<Ipv4Addr, String>,
    pub nodes: Vec<(ipnet::Ipv4Net, Ipv4Addr, String)>,
    pub interfaces: std::collections::HashMap<u32, String>,
    /// Local pods by the name of their host veth.
    pub host_ifs: std::collections::HashMap<String, Ipv4Addr>,
    /// Policy sets: "ingress: ns/a,ns/b" (the policies isolating a pod that way).
    pub policy_sets: std::collections::HashMap<u32, String>,
}

impl Names {
    pub fn node_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.nodes
            .iter()
            .find(|(cidr, underlay, _)| cidr.contains(&ip) || *underlay == ip)
            .map(|(_, _, name)| name.clone())
    }
}

fn addr(a: u32) -> Option<Ipv4Addr> {
    (a != 0).then(|| Ipv4Addr::from(a.to_ne_bytes()))
}

fn program_name(p: u8) -> &'static str {
    match p {
        PROGRAM_FROM_POD => "from_pod",
        PROGRAM_FROM_HOST => "from_host",
        PROGRAM_FROM_UPLINK => "from_uplink",
        PROGRAM_FROM_OVERLAY => "from_overlay",
        _ => "unknown",
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        other => other.to_string(),
    }
}

pub fn decode(ev: &Event, names: &Names) -> Line {
    let (src, dst) = (addr(ev.src), addr(ev.dst));
    let ports = ev.proto == 6 || ev.proto == 17;
    let outer = addr(ev.outer_src)
        .zip(addr(ev.outer_dst))
        .map(|(src, dst)| Outer { src, dst });
    let pod = [src, dst]
        .into_iter()
        .flatten()
        .find_map(|ip| names.pods.get(&ip).cloned());
    let node = [src, dst, outer.as_ref().map(|o| o.src)]
        .into_iter()
        .flatten()
        .find_map(|ip| names.node_of(ip));
    let info = EventInfo {
        time_ns: ev.ts_ns,
        program: program_name(ev.program).into(),
        interface: names
            .interfaces
            .get(&ev.ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{}", ev.ifindex)),
        reason: Reason::from_index(ev.reason)
            .map_or("unknown", |r| r.name())
            .into(),
        len: ev.len,
        proto: src.map(|_| proto_name(ev.proto)),
        src,
        dst,
        sport: ports.then(|| u16::from_be(ev.sport)),
        dport: ports.then(|| u16::from_be(ev.dport)),
        outer,
        pod,
        node,
        policy: (ev.policy != 0).then(|| {
            names
                .policy_sets
                .get(&ev.policy)
                .cloned()
                .unwrap_or_else(|| format!("set {}", ev.policy))
        }),
    };
    if ev.kind == EVENT_DROP {
        Line::Drop(info)
    } else {
        Line::Trace(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_with_names() {
        let mut names = Names::default();
        names
            .pods
            .insert(Ipv4Addr::new(10, 244, 1, 2), "web".into());
        names.nodes.push((
            "10.244.2.0/24".parse().unwrap(),
            Ipv4Addr::new(192, 168, 50, 12),
            "n2".into(),
        ));
        names.interfaces.insert(3, "ul0".into());
        let be = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
        let ev = Event {
            ts_ns: 7,
            reason: Reason::DropUnknownSource as u32,
            ifindex: 3,
            len: 100,
            src: be(Ipv4Addr::new(10, 244, 2, 5)),
            dst: be(Ipv4Addr::new(10, 244, 1, 2)),
            outer_src: be(Ipv4Addr::new(192, 168, 50, 99)),
            outer_dst: be(Ipv4Addr::new(192, 168, 50, 11)),
            sport: 999u16.to_be(),
            dport: 80u16.to_be(),
            kind: EVENT_DROP,
            program: PROGRAM_FROM_UPLINK,
            proto: 17,
            ..Event::default()
        };
        let Line::Drop(info) = decode(&ev, &names) else {
            panic!("a drop")
        };
        assert_eq!(info.reason, "dropped-unknown-source");
        assert_eq!(
            (info.program.as_str(), info.interface.as_str()),
            ("from_uplink", "ul0")
        );
        assert_eq!(
            (info.sport, info.dport, info.proto.as_deref()),
            (Some(999), Some(80), Some("udp"))
        );
        assert_eq!(info.pod.as_deref(), Some("web"));
        assert_eq!(info.node.as_deref(), Some("n2"));
        assert_eq!(
            info.outer.as_ref().unwrap().src,
            Ipv4Addr::new(192, 168, 50, 99)
        );
        let json = serde_json::to_value(Line::Drop(info)).unwrap();
        assert_eq!(json["type"], "drop");
        assert_eq!(json["outer"]["dst"], "192.168.50.11");
    }
}
