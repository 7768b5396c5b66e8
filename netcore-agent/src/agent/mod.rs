//! The node agent: owns the node's state (bridge, pods, IPAM, maps, programs) and
//! applies every change the API asks for. Start-up reconciles what the kernel has
//! with what the state dir says, so a restart (or a crash) loses nothing.

use std::net::Ipv4Addr;

use aya::programs::TcAttachType;
use netcore_common::{
    config::{
        DatapathConfig, FLAG_DEVICE_DECAP, FLAG_FLOWS, FLAG_MONITOR_DROPS, FLAG_MONITOR_TRACE,
        FLAG_POLICY, FLAG_READY, FLAG_SERVICES, FLAG_TC_DECAP,
    },
    pin::{PROG_FROM_HOST, PROG_FROM_OVERLAY, PROG_FROM_UPLINK},
    wire::VXLAN_OVERHEAD,
};
use rtnetlink::Handle;
use tracing::{info, warn};

mod cni;
mod direct;
mod nodes;
mod pods;
mod policy;
mod services;

pub use policy::{
    check_namespace as policy_check_namespace, LabelChange, NamespaceInfo, PolicyInfo,
};

use crate::{
    api::DatapathInfo,
    api::{Reply, Request, Status},
    config::{AgentConfig, AttachChoice, DecapMode, DEFAULT_SERVICE_CIDR},
    datapath::{features::Features, AttachMode, Datapath, DatapathError},
    ipam::{Ipam, IpamError},
    mac::Mac,
    maps::{MapError, Maps},
    masq,
    netlink::{self, Link, NetlinkError},
    netns::NetnsError,
    pod::PodError,
    state::{NodeState, StateError},
    sysctl,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid pod name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadPodName(String),
    #[error("pod {0} already exists")]
    PodExists(String),
    #[error("a network namespace named {0} already exists and is not a netcore pod")]
    ForeignNetns(String),
    #[error("{0} is not a network namespace")]
    NotNetns(String),
    #[error("invalid node: {0}")]
    BadNode(String),
    #[error("invalid service: {0}")]
    BadService(String),
    #[error("{0}")]
    BadPolicy(String),
    #[error("invalid ports: {0}")]
    BadPorts(String),
    #[error("invalid labels: {0}")]
    BadLabels(String),
    #[error("no pod named {0}")]
    NoSuchPod(String),
    #[error("the pod network {cluster} overlaps the underlay {underlay}")]
    Overlap {
        cluster: ipnet::Ipv4Net,
        underlay: ipnet::Ipv4Net,
    },
    #[error("service_cidr {service} overlaps {what} {other}")]
    ServiceOverlap {
        service: ipnet::Ipv4Net,
        what: &'static str,
        other: ipnet::Ipv4Net,
    },
    #[error("uplink {0} has no IPv4 address")]
    UplinkNoAddress(String),
    #[error("uplink {name} has MTU {mtu}: too small for VXLAN")]
    UplinkMtu { name: String, mtu: u32 },
    #[error("pod_cidr changed from {old} to {new} while pods exist; delete the pods or the state dir first")]
    PodCidrChanged {
        old: ipnet::Ipv4Net,
        new: ipnet::Ipv4Net,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error(transparent)]
    Masq(#[from] masq::MasqError),
}

type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The service CIDR to route for the node's own processes: the configured one, which
/// must not overlap the pod network or the underlay, or the default where it fits.
fn service_cidr(
    cfg: &AgentConfig,
    net: &Subnets,
    underlay: ipnet::Ipv4Net,
) -> Result<Option<ipnet::Ipv4Net>> {
    let service = cfg.service_cidr.unwrap_or(DEFAULT_SERVICE_CIDR);
    let clash = [
        ("the pod network", net.cluster_cidr),
        ("the underlay", underlay),
    ]
    .into_iter()
    .find(|(_, other)| nodes::overlaps(service, *other));
    match clash {
        None => Ok(Some(service)),
        Some((what, other)) if cfg.service_cidr.is_some() => Err(AgentError::ServiceOverlap {
            service,
            what,
            other,
        }),
        Some((what, other)) => {
            tracing::warn!(%service, %other, "the default service_cidr overlaps {what}: the node's own processes will not reach services (set service_cidr)");
            Ok(None)
        }
    }
}

/// The attach mode: the configured one, or TCX where the kernel has it.
fn attach_mode(cfg: &AgentConfig, features: &Features) -> Result<AttachMode> {
    match cfg.attach {
        AttachChoice::Tcx if !features.tcx => {
            Err(DatapathError::from(crate::datapath::features::FeatureError::NoTcx).into())
        }
        AttachChoice::Tcx => Ok(AttachMode::Tcx),
        AttachChoice::Tc => Ok(AttachMode::Tc),
        AttachChoice::Auto if features.tcx => Ok(AttachMode::Tcx),
        AttachChoice::Auto => Ok(AttachMode::Tc),
    }
}

/// Watchers of drops and of traces, and the sampling the trace watchers asked for
/// (the finest wins).
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Watchers {
    pub drops: usize,
    pub trace: usize,
    pub trace_every: u16,
}

pub struct Agent {
    cfg: AgentConfig,
    nl: Handle,
    dp: Datapath,
    maps: Maps,
    state: NodeState,
    ipam: Ipam,
    node_ip: Ipv4Addr,
    uplink: Link,
    bridge: Link,
    vxlan: Link,
    features: Features,
    pod_mtu: u32,
    net: Subnets,
    /// Routed into the bridge for the node's own flows to services, if any.
    service_cidr: Option<ipnet::Ipv4Net>,
    /// What the node trie holds (prefix -> node), as last written.
    applied: std::collections::BTreeMap<ipnet::Ipv4Net, netcore_common::node::RemoteNode>,
    /// How this node reaches the others.
    backend: crate::backend::Backend,
    /// The uplink's subnet (peers on it can be reached directly).
    underlay: ipnet::Ipv4Net,
    /// Uplink MACs of directly routed peers, learned and pinned (permanent neighbour
    /// entries on the uplink).
    pinned: std::collections::BTreeMap<Ipv4Addr, Mac>,
    /// Unroutable peers already warned about.
    unroutable_reported: std::collections::BTreeSet<Ipv4Addr>,
    /// Who watches the data path's events (`netcore monitor`).
    monitor: Watchers,
    store_health: Option<crate::control::SharedHealth>,
    /// Network policy: validated policies, what the maps hold.
    policy: policy::PolicyRuntime,
    /// Some local pod is isolated (the programs check policy).
    policy_active: bool,
    /// Wakes the control plane when this node's pods change (the store gets them).
    store_nudge: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Flow accounting's map and samples (read without the agent's lock).
    flows: std::sync::Arc<crate::flows::Recorder>,
}

/// The node's pod subnet and the cluster's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnets {
    pub pod_cidr: ipnet::Ipv4Net,
    pub cluster_cidr: ipnet::Ipv4Net,
    /// The cluster's backend (the store's network config, or the node's config).
    pub backend: crate::backend::Backend,
}

impl Subnets {
    pub fn gateway(&self) -> Ipv4Addr {
        crate::config::gateway(self.pod_cidr)
    }
}

/// What the node is before anything is changed: its uplink, underlay address and
/// persisted state (identity, pods).
pub struct Identity {
    pub nl: Handle,
    pub uplink: Link,
    pub node_ip: Ipv4Addr,
    pub uplink_prefix: u8,
    pub state: NodeState,
}

impl Identity {
    /// Reads the uplink and the state dir; changes nothing.
    pub async fn discover(cfg: &AgentConfig) -> Result<Self> {
        let nl = netlink::connect()?;
        let uplink = netlink::require_link(&nl, &cfg.uplink).await?;
        let (node_ip, uplink_prefix) = netlink::ipv4_addrs(&nl, uplink.index)
            .await?
            .first()
            .copied()
            .ok_or_else(|| AgentError::UplinkNoAddress(cfg.uplink.clone()))?;
        if uplink.mtu < 576 + VXLAN_OVERHEAD as u32 {
            return Err(AgentError::UplinkMtu {
                name: uplink.name.clone(),
                mtu: uplink.mtu,
            });
        }
        let state = NodeState::load(&cfg.state_dir)?;
        Ok(Identity {
            nl,
            uplink,
            node_ip,
            uplink_prefix,
            state,
        })
    }
}

impl Agent {
    /// Brings the node up with `net`, or back to where it was.
    pub async fn start(cfg: AgentConfig, id: Identity, net: Subnets) -> Result<Self> {
        let Identity {
            nl,
            uplink,
            node_ip,
            uplink_prefix,
            mut state,
        } = id;
        if let Some(old) = state
            .pod_cidr
            .filter(|old| *old != net.pod_cidr && !state.pods.is_empty())
        {
            return Err(AgentError::PodCidrChanged {
                old,
                new: net.pod_cidr,
            });
        }
        let underlay = ipnet::Ipv4Net::new(node_ip, uplink_prefix)
            .map(|n| n.trunc())
            .unwrap_or_default();
        if net.cluster_cidr.contains(&node_ip)
            || underlay.contains(&net.cluster_cidr.network())
            || net.cluster_cidr.contains(&underlay.network())
        {
            return Err(AgentError::Overlap {
                cluster: net.cluster_cidr,
                underlay,
            });
        }
        let service_cidr = service_cidr(&cfg, &net, underlay)?;
        state.pod_cidr = Some(net.pod_cidr);
        state.cluster_cidr = Some(net.cluster_cidr);
        let pod_mtu = net.backend.pod_mtu(uplink.mtu);

        let features = crate::datapath::features::probe().map_err(DatapathError::from)?;
        let mode = attach_mode(&cfg, &features)?;
        // The pods' links have the uplink's MTU (see pod.rs), and so has their bridge.
        let bridge =
            netlink::ensure_bridge(&nl, &cfg.bridge, state.gateway_mac, uplink.mtu).await?;
        netlink::add_addr(&nl, bridge.index, net.gateway(), net.pod_cidr.prefix_len()).await?;
        let vxlan = netlink::ensure_vxlan(
            &nl,
            &cfg.vxlan_device,
            cfg.vxlan_port,
            state.vtep_mac,
            pod_mtu,
        )
        .await?;
        // As flannel.1 has: reverse-path filtering fails every packet on a device
        // without an IPv4 address, and unwrapped replies to the node arrive there.
        netlink::add_addr(&nl, vxlan.index, net.pod_cidr.network(), 32).await?;
        sysctl::prepare_node(&cfg.bridge, &cfg.uplink, &cfg.vxlan_device)?;
        let (dp, mut maps) = Datapath::load(&cfg.pin_dir, &cfg.state_dir, mode, cfg.bpf_log)?;
        let flow_map = maps.flows.take().expect("the flow map, taken once here");
        let flows = std::sync::Arc::new(crate::flows::Recorder::new(flow_map, cfg.flows));
        info!(
            kernel = %features.kernel, attach = mode.name(), decap = cfg.decap.name(),
            vxlan_device = %cfg.vxlan_device, "data path"
        );
        let ipam = Ipam::new(net.pod_cidr, state.last_ip);
        let applied = maps.nodes.entries().into_iter().collect();
        let mut agent = Agent {
            cfg,
            net,
            nl,
            dp,
            maps,
            state,
            ipam,
            node_ip,
            uplink,
            bridge,
            vxlan,
            features,
            pod_mtu,
            service_cidr,
            applied,
            backend: net.backend,
            underlay,
            pinned: Default::default(),
            unroutable_reported: Default::default(),
            monitor: Watchers::default(),
            store_health: None,
            policy: Default::default(),
            policy_active: false,
            store_nudge: None,
            flows,
        };
        // The maps may hold a previous run's policy: it stays enforced, and the first
        // compile rewrites only what changed.
        agent.adopt_policy_maps();
        agent.write_datapath_config()?;
        agent.attach_node_programs()?;
        agent.attach_socket_hooks();
        agent.reconcile_pods().await?;
        agent.load_policies();
        agent.apply_policy()?;
        agent.follow_backend_change().await;
        agent.find_pinned_macs().await?;
        agent.apply_nodes()?;
        agent.apply_services()?;
        agent.route_cluster_via_overlay().await?;
        if agent.cfg.masquerade {
            masq::apply(
                agent.net.pod_cidr,
                agent.net.cluster_cidr,
                &agent.cfg.bridge,
            )?;
        } else {
            masq::remove()?;
        }
        agent.save()?;
        // Only now that this version's programs run with full maps may what an older
        // version or another attach mode left go.
        agent.dp.remove_other_mode();
        agent.dp.remove_old_layouts(&agent.cfg.pin_dir);
        info!(
            node = %agent.cfg.node_name, pod_cidr = %agent.net.pod_cidr, underlay = %agent.node_ip,
            pods = agent.state.pods.len(), "node ready"
        );
        Ok(agent)
    }

    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    pub fn subnets(&self) -> Subnets {
        self.net
    }

    /// Ready to serve pods: started, and holding its lease when there is a store.
    pub fn ready(&self) -> bool {
        self.store_health
            .as_ref()
            .is_none_or(|h| h.lock().expect("health lock").lease_held)
    }

    /// Lets `status` report the cluster store's health.
    pub fn set_store_health(&mut self, health: crate::control::SharedHealth) {
        self.store_health = Some(health);
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The monitor's ring buffer, once (to the task that reads it).
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.maps.events.take()
    }

    /// Flow accounting, for the sampler, `status --flows` and the metrics.
    pub fn flows(&self) -> std::sync::Arc<crate::flows::Recorder> {
        self.flows.clone()
    }

    /// What a flow summary needs from the agent: who is who, and the recorder. The
    /// summary itself (a read of the whole flow map) is made without the agent's lock
    /// (`flows::summary_of`).
    pub fn flow_source(&self) -> crate::flows::Source {
        crate::flows::Source {
            names: self.names(),
            recorder: self.flows.clone(),
        }
    }

    /// Packets counted under `reason` so far.
    pub fn counter(&self, reason: netcore_common::counters::Reason) -> u64 {
        self.maps
            .counters
            .read()
            .into_iter()
            .find(|c| c.reason == reason.name())
            .map_or(0, |c| c.packets)
    }

    /// One more watcher of what `w` asks for: the programs start writing those events.
    pub fn watch(&mut self, w: crate::monitor::Watch) -> Result<()> {
        let before = self.monitor;
        let m = &mut self.monitor;
        m.drops += usize::from(w.drops);
        if w.trace {
            m.trace += 1;
            let every = w.every.max(1);
            m.trace_every = if m.trace == 1 {
                every
            } else {
                m.trace_every.min(every)
            };
        }
        self.write_datapath_config()
            .inspect_err(|_| self.monitor = before)
    }

    /// The agent stops: nobody watches any more, the programs stop writing events.
    pub fn stop_watching(&mut self) -> Result<()> {
        self.monitor = Watchers::default();
        self.write_datapath_config()
    }

    /// A watcher left; the last one turns the events off.
    pub fn unwatch(&mut self, w: crate::monitor::Watch) -> Result<()> {
        let m = &mut self.monitor;
        m.drops = m.drops.saturating_sub(usize::from(w.drops));
        if w.trace {
            m.trace = m.trace.saturating_sub(1);
        }
        self.write_datapath_config()
    }

    /// Names of pods, remote nodes and interfaces, for decoding events.
    pub fn names(&self) -> crate::monitor::Names {
        let mut n = crate::monitor::Names::default();
        for p in self.state.pods.values() {
            n.pods.insert(p.ip, p.name.clone());
            n.host_ifs.insert(p.host_if.clone(), p.ip);
        }
        for r in self
            .state
            .nodes
            .values()
            .chain(self.state.store_nodes.values())
        {
            n.nodes.push((r.pod_cidr, r.underlay_ip, r.name.clone()));
        }
        for (id, set) in &self.policy.applied.sets {
            let way = match set.direction {
                crate::policy::compile::Direction::Ingress => "ingress",
                crate::policy::compile::Direction::Egress => "egress",
            };
            n.policy_sets
                .insert(*id, format!("{way}: {}", set.policies.join(",")));
        }
        if let Ok(ifaces) = nix::net::if_::if_nameindex() {
            for i in ifaces.iter() {
                n.interfaces
                    .insert(i.index(), i.name().to_string_lossy().into_owned());
            }
        }
        n
    }

    fn save(&mut self) -> Result<()> {
        self.state.last_ip = self.ipam.last();
        Ok(self.state.save(&self.cfg.state_dir)?)
    }

    /// A node whose backend changed since it last ran (vxlan and host-gw give pods
    /// different MTUs) says so, and moves its existing pods to the new MTU: with the
    /// old one, a pod's full-size packet would no longer fit an encapsulation (or
    /// would waste 50 bytes of each). Their connections keep their MSS until they
    /// reconnect. So are pods made before their links had the uplink's MTU.
    async fn follow_backend_change(&mut self) {
        let name = self.backend.name();
        let old = self.state.backend.replace(name.to_string());
        let old_mtu = self.state.pod_mtu.replace(self.pod_mtu);
        let old_link = self.state.pod_link_mtu.replace(self.uplink.mtu);
        if old.as_deref().is_some_and(|o| o != name) {
            warn!(
                from = old.as_deref().unwrap_or(""),
                to = name,
                "this node's backend changed"
            );
        }
        // No pods before (a fresh node), or none moved: nothing to do. Without a link
        // MTU on record, the links had the route's.
        let Some(old_mtu) = old_mtu else { return };
        let before = crate::pod::PodMtu::new(old_link.unwrap_or(old_mtu), old_mtu);
        let mtu = self.pod_mtu();
        if before == mtu {
            return;
        }
        warn!(old_mtu = ?before, new_mtu = ?mtu, pods = self.state.pods.len(),
            "the pods' MTU changes (backend or uplink): existing pods are moved to the new MTU (open connections keep their segment size until they reconnect)");
        for rec in self.state.pods.values() {
            if let Err(e) = crate::pod::set_mtu(
                &self.nl,
                &rec.host_if,
                &rec.netns,
                &rec.ifname,
                self.net.gateway(),
                mtu,
            )
            .await
            {
                warn!(pod = %rec.name, "setting the new MTU: {e}");
            }
        }
    }

    /// The MTUs pods get: the uplink's on their link, `pod_mtu` beyond the node.
    pub(super) fn pod_mtu(&self) -> crate::pod::PodMtu {
        crate::pod::PodMtu::new(self.uplink.mtu, self.pod_mtu)
    }

    /// The programs of the node's own interfaces (pods get theirs when plumbed).
    fn attach_node_programs(&mut self) -> Result<()> {
        let cfg = &self.cfg;
        self.dp
            .attach(PROG_FROM_UPLINK, &cfg.uplink, TcAttachType::Ingress)?;
        self.dp
            .attach(PROG_FROM_OVERLAY, &cfg.vxlan_device, TcAttachType::Ingress)?;
        self.dp
            .attach(PROG_FROM_HOST, &cfg.bridge, TcAttachType::Egress)?;
        Ok(())
    }

    /// The hooks on the node's own sockets (its NodePorts from its own processes). A
    /// node without them (no cgroup v2, an old kernel) works on, and says so.
    fn attach_socket_hooks(&mut self) {
        let attached = crate::maps::socket::netns_cookie()
            .map_err(|e| format!("reading the network namespace's cookie: {e}"))
            .and_then(|cookie| self.maps.netns.set(cookie).map_err(|e| e.to_string()))
            .and_then(|()| self.dp.attach_socket_hooks().map_err(|e| e.to_string()));
        match attached {
            Ok(Some(root)) => info!(cgroup = %root.display(), "socket hooks attached (NodePorts from the node itself)"),
            Ok(None) => warn!("no cgroup v2 hierarchy mounted: the node's own processes cannot reach its NodePorts on its own address"),
            Err(e) => warn!("socket hooks not attached: the node's own processes cannot reach its NodePorts on its own address: {e}"),
        }
    }

    /// `FLAG_*`: what the programs do on this node right now.
    fn datapath_flags(&self) -> u16 {
        let on = |cond: bool, flag: u16| if cond { flag } else { 0 };
        FLAG_READY
            | on(!self.state.services.is_empty(), FLAG_SERVICES)
            | match self.cfg.decap {
                DecapMode::Auto => 0,
                DecapMode::Tc => FLAG_TC_DECAP,
                DecapMode::Device => FLAG_DEVICE_DECAP,
            }
            | on(self.monitor.drops > 0, FLAG_MONITOR_DROPS)
            | on(self.monitor.trace > 0, FLAG_MONITOR_TRACE)
            | on(self.policy_active, FLAG_POLICY)
            | on(self.cfg.flows, FLAG_FLOWS)
    }

    fn write_datapath_config(&mut self) -> Result<()> {
        let be = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
        let cfg = DatapathConfig {
            node_ip: be(self.node_ip),
            gateway_ip: be(self.net.gateway()),
            uplink_ifindex: self.uplink.index,
            vni: self.cfg.vni,
            vxlan_port: self.cfg.vxlan_port,
            flags: self.datapath_flags(),
            gateway_mac: self.state.gateway_mac.0,
            vtep_mac: self.state.vtep_mac.0,
            vxlan_ifindex: self.vxlan.index,
            cluster_net: be(self.net.cluster_cidr.network()),
            cluster_prefix: self.net.cluster_cidr.prefix_len(),
            service_prefix: self.service_cidr.map_or(0, |s| s.prefix_len()),
            trace_every: self.monitor.trace_every,
            service_net: self.service_cidr.map_or(0, |s| be(s.network())),
        };
        Ok(self.maps.config.set(&cfg)?)
    }

    pub async fn handle(&mut self, req: Request) -> Reply {
        let result = match req {
            Request::PodAdd(req) => self.pod_add(req).await.map(json),
            Request::PodLabel { name, change } => self.pod_label(&name, &change).map(json),
            Request::NamespaceLabel { name, change } => {
                self.namespace_label(&name, &change).map(json)
            }
            Request::NamespaceList => Ok(json(self.namespace_list())),
            Request::PolicyApply { text } => self.policy_apply(&text).map(json),
            Request::PolicyDel { key } => self.policy_del(&key).map(json),
            Request::PolicyList => Ok(json(self.policy_list())),
            Request::PodDel { name } => self.pod_del(&name).await.map(json),
            Request::PodList => Ok(json(self.pod_list())),
            Request::Status => Ok(json(self.status())),
            Request::Flows { pod, top } => {
                let summary = crate::flows::summary_of(self.flow_source(), pod, top).await;
                Ok(json(summary))
            }
            Request::NodeAdd(spec) => self.node_add(spec).map(json),
            Request::NodeDel { name } => self.node_del(&name).map(json),
            Request::NodeList => Ok(json(self.node_list())),
            Request::ServiceAdd { spec, replace } => self.service_add(spec, replace).map(json),
            Request::ServiceDel { name } => self.service_del(&name).map(json),
            Request::ServiceList => Ok(json(self.service_list())),
            Request::Leave => Err(AgentError::BadNode(
                "leave is served by the control plane".into(),
            )),
            Request::CniDel {
                container_id,
                ifname,
            } => self.cni_del(&container_id, &ifname).await.map(json),
            Request::CniCheck {
                container_id,
                ifname,
                netns,
            } => self
                .cni_check(&container_id, &ifname, &netns)
                .await
                .map(json),
            Request::CniGc { valid } => self.cni_gc(&valid).await.map(json),
            Request::Monitor(_) => Err(AgentError::BadNode(
                "monitor is served as a stream by the API server".into(),
            )),
        };
        match result {
            Ok(data) => Reply::Ok { data },
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        }
    }

    pub fn status(&self) -> Status {
        Status {
            node: self.cfg.node_name.clone(),
            pod_cidr: self.net.pod_cidr,
            cluster_cidr: self.net.cluster_cidr,
            underlay_ip: self.node_ip,
            uplink: self.cfg.uplink.clone(),
            bridge: self.cfg.bridge.clone(),
            gateway: self.net.gateway(),
            vtep_mac: self.state.vtep_mac,
            pod_mtu: self.pod_mtu,
            pod_link_mtu: self.pod_mtu().link,
            backend: self.backend.name().into(),
            vxlan_port: self.cfg.vxlan_port,
            vni: self.cfg.vni,
            pods: self.pod_list(),
            ips_in_use: self.ipam.in_use(),
            ips_total: self.ipam.capacity(),
            nodes: self.node_list(),
            programs: self.dp.attachments(),
            monitor: self.monitor,
            datapath: DatapathInfo {
                kernel: self.features.kernel.clone(),
                attach: self.dp.attach_mode().name().into(),
                decap: self.cfg.decap.name().into(),
                vxlan_device: self.cfg.vxlan_device.clone(),
            },
            counters: self.maps.counters.read(),
            services: self.service_list(),
            store: self
                .store_health
                .as_ref()
                .map(|h| h.lock().expect("health lock").clone()),
        }
    }
}

fn json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).expect("API types serialize")
}
