//! Flow summary for `netcore status --flows` and the per-pod metrics: who each local
//! pod talked to over the last minute, packets and bytes each way, and its drops by
//! reason. The programs count by address pair and outcome (`NC_FLOWS`); this samples
//! the map every `SAMPLE_EVERY` and answers with the difference between the map now
//! and the sample taken about a minute ago (in the agent's first minute: since it
//! started).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use netcore_common::{
    counters::{Counter, Reason},
    flow::FlowKey,
    monitor::PROGRAM_FROM_POD,
};
use serde::{Deserialize, Serialize};

use crate::{maps::flow::FlowMap, monitor::Names};

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
pub const WINDOW: Duration = Duration::from_secs(60);
/// Talkers listed per pod unless asked otherwise.
pub const DEFAULT_TOP: usize = 5;

/// The flow map and the samples a minute's window needs.
pub struct Recorder {
    map: Mutex<FlowMap>,
    samples: Mutex<VecDeque<Sample>>,
    enabled: bool,
    started: Instant,
}

struct Sample {
    at: Instant,
    counts: HashMap<FlowKey, Counter>,
}

impl Recorder {
    pub fn new(map: FlowMap, enabled: bool) -> Self {
        Self {
            map: Mutex::new(map),
            samples: Mutex::default(),
            enabled,
            started: Instant::now(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn read(&self) -> HashMap<FlowKey, Counter> {
        self.map.lock().expect("flow map lock").read()
    }

    /// Takes a sample, and forgets those older than the one a minute's window starts at.
    pub fn sample(&self) {
        let counts = self.read();
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("flow samples lock");
        samples.push_back(Sample { at: now, counts });
        while samples.len() > 1 && now.duration_since(samples[1].at) >= WINDOW {
            samples.pop_front();
        }
    }

    /// What each key counted since the oldest sample kept (about a minute ago; before
    /// the first sample, since the map was made), and how long ago that was.
    pub fn last_minute(&self) -> (Duration, Vec<(FlowKey, Counter)>) {
        let now = self.read();
        let samples = self.samples.lock().expect("flow samples lock");
        match samples.front() {
            Some(base) => (base.at.elapsed(), since(&base.counts, now)),
            None => (self.started.elapsed(), since(&HashMap::new(), now)),
        }
    }

    /// The summary a client asks for (`pod`: that pod only; `top`: talkers per pod).
    pub fn summary(&self, names: &Names, pod: Option<&str>, top: usize) -> FlowSummary {
        if !self.enabled {
            return FlowSummary::default();
        }
        let (window, deltas) = self.last_minute();
        let mut pods = summarize(&deltas, names, top);
        pods.retain(|p| pod.is_none_or(|name| p.pod == name));
        FlowSummary {
            enabled: true,
            window_secs: window.as_secs(),
            pods,
        }
    }
}

/// The agent's side of a summary, taken under its lock.
pub struct Source {
    pub names: Names,
    pub recorder: Arc<Recorder>,
}

/// Each local pod's traffic over the last minute, read on a blocking thread (the map
/// holds up to 16,384 keys per CPU).
pub async fn summary_of(src: Source, pod: Option<String>, top: usize) -> FlowSummary {
    let Source { names, recorder } = src;
    tokio::task::spawn_blocking(move || recorder.summary(&names, pod.as_deref(), top))
        .await
        .unwrap_or_default()
}

/// Samples until the agent stops (nothing to sample while accounting is off).
pub async fn sample_forever(rec: Arc<Recorder>) {
    if !rec.enabled() {
        return;
    }
    loop {
        let r = rec.clone();
        if tokio::task::spawn_blocking(move || r.sample())
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Counts since `base`; an entry the map evicted and started again counts from zero.
fn since(
    base: &HashMap<FlowKey, Counter>,
    now: HashMap<FlowKey, Counter>,
) -> Vec<(FlowKey, Counter)> {
    now.into_iter()
        .filter_map(|(k, c)| {
            let b = base.get(&k).copied().unwrap_or_default();
            let d = if c.packets < b.packets {
                c
            } else {
                Counter {
                    packets: c.packets - b.packets,
                    bytes: c.bytes.saturating_sub(b.bytes),
                }
            };
            (d.packets > 0).then_some((k, d))
        })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowSummary {
    /// False when the agent runs with flow accounting off (`flows = false`).
    pub enabled: bool,
    /// Seconds the figures cover (60 to 70 once the agent has run a minute).
    pub window_secs: u64,
    /// Local pods with traffic in the window, most bytes first.
    pub pods: Vec<PodFlows>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, c: Counter) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodFlows {
    pub pod: String,
    pub ip: Option<Ipv4Addr>,
    /// What the pod sent that the data path passed on, and what it delivered to it.
    pub sent: Traffic,
    pub received: Traffic,
    /// Packets from or to the pod dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    /// The pod's peers, most bytes first.
    pub talkers: Vec<Talker>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Talker {
    pub peer: Ipv4Addr,
    /// The pod, or the remote node whose pod CIDR holds the address.
    pub name: Option<String>,
    pub sent: Traffic,
    pub received: Traffic,
    pub dropped: u64,
}

/// One pod's side of one counted key.
struct Share {
    pod: Ipv4Addr,
    peer: Ipv4Addr,
    sent: bool,
}

/// Whose traffic a key is. `from_pod` counts what the pod behind the interface sent
/// (whatever source it claimed), and, redirected to a local pod, what that pod
/// received; the other programs count what goes to the local pod it is addressed to.
fn shares(k: &FlowKey, names: &Names) -> Vec<Share> {
    let (src, dst) = (ip(k.src), ip(k.dst));
    let local = |a: Ipv4Addr| names.pods.contains_key(&a);
    let mut out = Vec::new();
    if k.program == PROGRAM_FROM_POD {
        let sender = names
            .interfaces
            .get(&k.ifindex)
            .and_then(|i| names.host_ifs.get(i).copied());
        let Some(sender) = sender else { return out };
        out.push(Share {
            pod: sender,
            peer: dst,
            sent: true,
        });
        if k.reason == Reason::RedirectedLocal as u8 && local(dst) {
            out.push(Share {
                pod: dst,
                peer: sender,
                sent: false,
            });
        }
    } else if local(dst) {
        out.push(Share {
            pod: dst,
            peer: src,
            sent: false,
        });
    }
    out
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a.to_ne_bytes())
}

/// Per pod: totals, drops by reason and the `top` talkers.
pub fn summarize(deltas: &[(FlowKey, Counter)], names: &Names, top: usize) -> Vec<PodFlows> {
    let mut pods: BTreeMap<Ipv4Addr, (PodFlows, BTreeMap<Ipv4Addr, Talker>)> = BTreeMap::new();
    for (k, c) in deltas {
        let reason = Reason::from_index(k.reason.into());
        let drop = reason.filter(|r| r.is_drop());
        for s in shares(k, names) {
            let (p, talkers) = pods.entry(s.pod).or_default();
            let t = talkers.entry(s.peer).or_insert_with(|| Talker {
                peer: s.peer,
                name: names
                    .pods
                    .get(&s.peer)
                    .cloned()
                    .or_else(|| names.node_of(s.peer)),
                sent: Traffic::default(),
                received: Traffic::default(),
                dropped: 0,
            });
            match (drop, s.sent) {
                (Some(r), _) => {
                    *p.drops.entry(r.name().into()).or_default() += c.packets;
                    t.dropped += c.packets;
                }
                (None, true) => {
                    p.sent.add(*c);
                    t.sent.add(*c);
                }
                (None, false) => {
                    p.received.add(*c);
                    t.received.add(*c);
                }
            }
        }
    }
    let mut out: Vec<PodFlows> = pods
        .into_iter()
        .map(|(addr, (mut p, talkers))| {
            p.ip = Some(addr);
            p.pod = names
                .pods
                .get(&addr)
                .cloned()
                .unwrap_or_else(|| addr.to_string());
            p.talkers = talkers.into_values().collect();
            p.talkers
                .sort_by_key(|t| std::cmp::Reverse((t.sent.bytes + t.received.bytes, t.dropped)));
            p.talkers.truncate(top);
            p
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.sent.bytes + p.received.bytes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcore_common::monitor::{PROGRAM_FROM_OVERLAY, PROGRAM_FROM_UPLINK};

    fn be(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    fn names() -> Names {
        let mut n = Names::default();
        for (last, name, ifindex) in [(2, "a", 10), (3, "b", 11)] {
            let addr = Ipv4Addr::new(10, 244, 1, last);
            n.pods.insert(addr, name.into());
            n.interfaces.insert(ifindex, format!("veth{name}"));
            n.host_ifs.insert(format!("veth{name}"), addr);
        }
        n.interfaces.insert(3, "ul0".into());
        n.nodes.push((
            "10.244.2.0/24".parse().unwrap(),
            Ipv4Addr::new(192, 168, 1, 2),
            "n2".into(),
        ));
        n
    }

    fn key(src: [u8; 4], dst: [u8; 4], ifindex: u32, program: u8, reason: Reason) -> FlowKey {
        FlowKey {
            src: be(src),
            dst: be(dst),
            ifindex,
            proto: 6,
            reason: reason as u8,
            program,
            _pad: 0,
        }
    }

    fn c(packets: u64, bytes: u64) -> Counter {
        Counter { packets, bytes }
    }

    #[test]
    fn each_pod_gets_its_side_of_every_flow() {
        let (a, b, remote) = ([10, 244, 1, 2], [10, 244, 1, 3], [10, 244, 2, 9]);
        let deltas = vec![
            // a -> b on this node: a sent it, b received it.
            (
                key(a, b, 10, PROGRAM_FROM_POD, Reason::RedirectedLocal),
                c(10, 1000),
            ),
            // a -> a remote pod, and its answers decapsulated into a.
            (
                key(a, remote, 10, PROGRAM_FROM_POD, Reason::Encapsulated),
                c(5, 50_000),
            ),
            (
                key(remote, a, 3, PROGRAM_FROM_UPLINK, Reason::Decapsulated),
                c(4, 400),
            ),
            // b claims a's address: counted against b, the sender, as a drop.
            (
                key(a, remote, 11, PROGRAM_FROM_POD, Reason::DropSpoofedSource),
                c(3, 300),
            ),
            // A forged packet to b, dropped before it got there.
            (
                key(
                    remote,
                    b,
                    3,
                    PROGRAM_FROM_OVERLAY,
                    Reason::DropUnknownSource,
                ),
                c(2, 200),
            ),
        ];
        let pods = summarize(&deltas, &names(), 5);
        assert_eq!(
            pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>(),
            ["a", "b"],
            "most bytes first"
        );
        let (pa, pb) = (&pods[0], &pods[1]);
        assert_eq!(
            pa.sent,
            Traffic {
                packets: 15,
                bytes: 51_000
            }
        );
        assert_eq!(
            pa.received,
            Traffic {
                packets: 4,
                bytes: 400
            }
        );
        assert!(pa.drops.is_empty(), "a dropped nothing: {:?}", pa.drops);
        assert_eq!(
            pa.talkers[0].peer,
            Ipv4Addr::from(remote),
            "the remote pod got the most bytes"
        );
        assert_eq!(
            pa.talkers[0].name.as_deref(),
            Some("n2"),
            "named by its node"
        );
        assert_eq!(pa.talkers[1].name.as_deref(), Some("b"));
        assert_eq!(
            pb.received,
            Traffic {
                packets: 10,
                bytes: 1000
            }
        );
        assert_eq!(pb.drops.get("dropped-spoofed-source"), Some(&3));
        assert_eq!(pb.drops.get("dropped-unknown-source"), Some(&2));
        let forged = pb
            .talkers
            .iter()
            .find(|t| t.peer == Ipv4Addr::from(remote))
            .expect("the remote peer");
        assert_eq!(forged.dropped, 5, "both drops are with the remote peer");
    }

    #[test]
    fn talkers_are_cut_to_the_top_and_unknown_interfaces_ignored() {
        let deltas: Vec<_> = (1..=8u8)
            .map(|i| {
                (
                    key(
                        [10, 244, 1, 2],
                        [10, 0, 0, i],
                        10,
                        PROGRAM_FROM_POD,
                        Reason::Passed,
                    ),
                    c(1, i as u64 * 100),
                )
            })
            .chain([(
                key(
                    [10, 244, 1, 2],
                    [10, 0, 0, 9],
                    99,
                    PROGRAM_FROM_POD,
                    Reason::Passed,
                ),
                c(1, 1),
            )])
            .collect();
        let pods = summarize(&deltas, &names(), 3);
        assert_eq!(pods.len(), 1);
        let peers: Vec<_> = pods[0].talkers.iter().map(|t| t.peer.octets()[3]).collect();
        assert_eq!(peers, [8, 7, 6], "the three biggest, biggest first");
        assert_eq!(pods[0].sent.packets, 8, "interface 99 is no pod's");
    }

    #[test]
    fn differences_start_again_after_an_eviction() {
        let to = |last| {
            key(
                [10, 244, 1, 2],
                [10, 0, 0, last],
                10,
                PROGRAM_FROM_POD,
                Reason::Passed,
            )
        };
        let (k1, k2, k3) = (to(1), to(2), to(3));
        let base = HashMap::from([(k1, c(10, 1000)), (k2, c(50, 5000)), (k3, c(7, 70))]);
        let now = HashMap::from([(k1, c(15, 1500)), (k2, c(3, 300)), (k3, c(7, 70))]);
        let mut d = since(&base, now);
        d.sort_by_key(|(k, _)| k.dst);
        assert_eq!(
            d,
            vec![(k1, c(5, 500)), (k2, c(3, 300))],
            "k3 was idle; k2 was evicted and began again"
        );
    }
}
