//! A cluster on one host: a "switch" namespace with a bridge is the underlay; each
//! node is a namespace with an uplink on it and a real `netcore agent`; an "outside"
//! namespace on the underlay stands for the world beyond the cluster.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use netcore_agent::api::{PodInfo, Status};
use serde::de::DeserializeOwned;

use crate::{etcd::Etcd, netcore_bin, netns::Netns, unique, wait_until};

/// Underlay addresses: node i is 192.168.50.(10+i), the outside host .200.
pub const UNDERLAY_PREFIX: &str = "192.168.50";
/// The second segment, behind a router (`add_routed_node`): node i is .60.(10+i).
pub const ROUTED_PREFIX: &str = "192.168.60";
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 200);
/// The network config the test bed writes into a store.
pub const NETWORK_CONFIG: &str = r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMax":"10.244.63.0","Backend":{"Type":"vxlan"}}"#;
/// How long an agent may take to come up.
const AGENT_READY: Duration = Duration::from_secs(30);

pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub dir: PathBuf,
    agent: Option<Child>,
}

pub struct Cluster {
    pub id: String,
    // Dropped in this order: nodes (agents, pods, pins), the store, then the rest.
    pub nodes: Vec<Node>,
    pub etcd: Option<Etcd>,
    pub outside: Netns,
    /// Between the two segments, once a routed node exists.
    pub router: Option<Netns>,
    pub switch: Netns,
    spec: Spec,
}

/// Where the nodes keep cluster state.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreSpec {
    /// No store: node i gets 10.244.i.0/len; remote nodes by `netcore node add`.
    None,
    /// The embedded file store, shared by the cluster's nodes.
    File,
    /// A real etcd with this many members, run in the outside namespace.
    Etcd(usize),
    /// One etcd member that speaks only TLS, requires client certificates and a
    /// password; the agents get all three.
    EtcdSecure,
}

/// Options for `Cluster::new`.
#[derive(Clone)]
pub struct Spec {
    pub nodes: usize,
    /// Prefix length of each node's pod CIDR (10.244.N.0/len) without a store.
    pub pod_prefix: u8,
    pub store: StoreSpec,
    pub extra_config: String,
    /// The store's network config (default: `NETWORK_CONFIG`).
    pub network_config: Option<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            nodes: 1,
            pod_prefix: 24,
            store: StoreSpec::None,
            extra_config: String::new(),
            network_config: None,
        }
    }
}

impl Cluster {
    pub fn new(spec: Spec) -> Result<Self> {
        let id = unique("t");
        let switch = Netns::new(&format!("{id}-sw"))?;
        switch.sh("ip link add sw0 type bridge && ip link set sw0 up")?;
        let outside = Netns::new(&format!("{id}-out"))?;
        plug(&switch, &outside, "out", OUTSIDE_IP)?;
        let mut cluster = Cluster {
            id,
            nodes: Vec::new(),
            etcd: None,
            outside,
            router: None,
            switch,
            spec: spec.clone(),
        };
        cluster.seed_store()?;
        for i in 1..=spec.nodes {
            cluster.add_node(i)?;
        }
        Ok(cluster)
    }

    /// Starts etcd if asked for, and writes the network config: nodes lease subnets
    /// 10.244.1.0 to 10.244.63.0, so tests can announce fake nodes above that.
    fn seed_store(&mut self) -> Result<()> {
        let config = self
            .spec
            .network_config
            .clone()
            .unwrap_or(NETWORK_CONFIG.into());
        match self.spec.store {
            StoreSpec::None => {}
            StoreSpec::File => {
                let dir = self.dir().join("store/coreos.com/network");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("config"), &config)?;
            }
            StoreSpec::Etcd(members) => {
                let etcd = Etcd::start(
                    &self.outside,
                    &OUTSIDE_IP.to_string(),
                    members,
                    self.dir().join("etcd"),
                )?;
                etcd.put("/coreos.com/network/config", &config)?;
                self.etcd = Some(etcd);
            }
            StoreSpec::EtcdSecure => {
                let etcd = Etcd::start_secure(
                    &self.outside,
                    &OUTSIDE_IP.to_string(),
                    self.dir().join("etcd"),
                )?;
                etcd.put("/coreos.com/network/config", &config)?;
                self.etcd = Some(etcd);
            }
        }
        Ok(())
    }

    /// The cluster's directory for configs, state and the file store.
    pub fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("netcore-test-{}", self.id))
    }

    fn store_config(&self, i: usize) -> String {
        match &self.spec.store {
            StoreSpec::None => format!(
                "store = \"none\"\npod_cidr = \"10.244.{i}.0/{}\"\n",
                self.spec.pod_prefix
            ),
            StoreSpec::File => format!(
                "store = \"file://{}\"\n",
                self.dir().join("store").display()
            ),
            StoreSpec::Etcd(_) => format!(
                "store = \"{}\"\n",
                self.etcd.as_ref().expect("etcd runs").url()
            ),
            StoreSpec::EtcdSecure => {
                let etcd = self.etcd.as_ref().expect("etcd runs");
                let secure = etcd.secure.as_ref().expect("secured");
                format!("store = \"{}\"\n{}", etcd.url(), secure.agent_config())
            }
        }
    }

    /// Starts node `i` (named n`i`, underlay address .(10+i)) and waits for its agent.
    pub fn add_node(&mut self, i: usize) -> Result<()> {
        self.spawn_node(i)?;
        let node = self.nodes.last_mut().expect("just added");
        node.wait_agent()?;
        node.pod_cidr = node.status()?.pod_cidr.to_string();
        Ok(())
    }

    /// Starts node `i` without waiting for its agent to be ready.
    pub fn spawn_node(&mut self, i: usize) -> Result<()> {
        let ip: Ipv4Addr = format!("{UNDERLAY_PREFIX}.{}", 10 + i).parse()?;
        self.spawn_node_with(i, ip, |switch, ns| plug(switch, ns, &format!("p{i}"), ip))
    }

    /// Starts node `i` on a second underlay segment (192.168.60.0/24), reached from
    /// the first through a router, and waits for its agent.
    pub fn add_routed_node(&mut self, i: usize) -> Result<()> {
        self.router()?;
        let ip: Ipv4Addr = format!("{ROUTED_PREFIX}.{}", 10 + i).parse()?;
        self.spawn_node_with(i, ip, |switch, ns| {
            plug_into(switch, "sw1", ns, &format!("p{i}"), ip)?;
            ns.sh(&format!("ip route add default via {ROUTED_PREFIX}.1"))?;
            Ok(())
        })?;
        let node = self.nodes.last_mut().expect("just added");
        node.wait_agent()?;
        node.pod_cidr = node.status()?.pod_cidr.to_string();
        Ok(())
    }

    /// The router between the two segments (made once): every namespace on the first
    /// segment gets a route to the second through it.
    fn router(&mut self) -> Result<()> {
        if self.router.is_some() {
            return Ok(());
        }
        self.switch
            .sh("ip link add sw1 type bridge && ip link set sw1 up")?;
        let router = Netns::new(&format!("{}-rt", self.id))?;
        plug(
            &self.switch,
            &router,
            "rt0",
            format!("{UNDERLAY_PREFIX}.1").parse()?,
        )?;
        self.switch.sh(&format!(
            "ip link add rt1 type veth peer name ul1 netns {r} && ip link set rt1 master sw1 up",
            r = router.name
        ))?;
        router.sh(&format!(
            "ip addr add {ROUTED_PREFIX}.1/24 dev ul1 && ip link set ul1 up
             sysctl -qw net.ipv4.ip_forward=1"
        ))?;
        let via = format!("ip route add {ROUTED_PREFIX}.0/24 via {UNDERLAY_PREFIX}.1");
        for ns in self.nodes.iter().map(|n| &n.ns).chain([&self.outside]) {
            ns.sh(&via)?;
        }
        self.router = Some(router);
        Ok(())
    }

    fn spawn_node_with(
        &mut self,
        i: usize,
        ip: Ipv4Addr,
        plug_node: impl FnOnce(&Netns, &Netns) -> Result<()>,
    ) -> Result<()> {
        let name = format!("n{i}");
        let ns = Netns::new(&format!("{}-{name}", self.id))?;
        plug_node(&self.switch, &ns)?;
        let dir = self.dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("api.sock");
        let config = dir.join("config.toml");
        let text = format!(
            "node_name = \"{name}\"\nuplink = \"ul0\"\n{}state_dir = \"{}\"\n\
             pin_dir = \"/sys/fs/bpf/netcore-test/{}/{name}\"\napi_socket = \"{}\"\n{}\n",
            self.store_config(i),
            dir.join("state").display(),
            self.id,
            socket.display(),
            self.spec.extra_config
        );
        let text = text + &crate::kernel_config();
        std::fs::write(&config, text)?;
        let mut node = Node {
            name,
            ns,
            ip,
            pod_cidr: String::new(),
            config,
            socket,
            dir,
            agent: None,
        };
        node.spawn_agent()?;
        self.nodes.push(node);
        Ok(())
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i - 1]
    }

    /// A pod name unique to this cluster.
    pub fn pod_name(&self, tag: &str) -> String {
        format!("{}-{tag}", self.id)
    }

    /// Tells every node about every other node (what the control plane automates).
    pub fn mesh(&self) -> Result<()> {
        for a in &self.nodes {
            for b in &self.nodes {
                if a.name != b.name {
                    let st = b.status()?;
                    let (ip, vtep) = (b.ip.to_string(), st.vtep_mac.to_string());
                    let mut args = vec!["node", "add", &b.name, "--pod-cidr", &b.pod_cidr];
                    args.extend(["--underlay-ip", &ip]);
                    // A host-gw node has no VTEP to give.
                    if st.backend != "host-gw" {
                        args.extend(["--vtep-mac", &vtep]);
                    }
                    a.cli(&args)?;
                }
            }
        }
        Ok(())
    }
}

/// `ethtool -K` settings that make a veth behave like a NIC's driver: segmentation
/// before the wire (no TSO), merging after it (GRO, in the veth's NAPI).
pub const NIC_LIKE: &str =
    "tso off gso off tx-udp_tnl-segmentation off tx-udp_tnl-csum-segmentation off gro on";

impl Cluster {
    /// Makes every veth of the underlay (nodes' uplinks, switch ports) behave like a
    /// physical NIC: a veth merges only what a veth without TSO sends it.
    pub fn nic_like(&self) -> Result<()> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| (&n.ns, format!("p{}", &n.name[1..])));
        for (ns, port) in nodes.chain([(&self.outside, "out".to_string())]) {
            ns.sh(&format!("ethtool -K ul0 {NIC_LIKE} >/dev/null"))?;
            self.switch
                .sh(&format!("ethtool -K {port} {NIC_LIKE} >/dev/null"))?;
        }
        Ok(())
    }

    /// Connects another namespace to the underlay.
    pub fn plug(&self, ns: &Netns, port: &str, ip: Ipv4Addr) -> Result<()> {
        plug(&self.switch, ns, port, ip)
    }
}

/// Connects `ns` to the switch with a veth (`ul0` inside `ns`) and gives it `ip`/24.
fn plug(switch: &Netns, ns: &Netns, port: &str, ip: Ipv4Addr) -> Result<()> {
    plug_into(switch, "sw0", ns, port, ip)
}

/// As `plug`, into the switch's bridge `bridge`.
fn plug_into(switch: &Netns, bridge: &str, ns: &Netns, port: &str, ip: Ipv4Addr) -> Result<()> {
    switch.sh(&format!(
        "ip link add {port} type veth peer name ul0 netns {ns} && ip link set {port} master {bridge} up",
        ns = ns.name
    ))?;
    ns.sh(&format!(
        "ip addr add {ip}/24 dev ul0 && ip link set ul0 up"
    ))?;
    Ok(())
}

impl Node {
    /// Starts the agent inside the node's namespace and waits until it serves.
    pub fn start_agent(&mut self) -> Result<()> {
        self.spawn_agent()?;
        self.wait_agent()
    }

    pub fn spawn_agent(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path.display()))
            .arg(netcore_bin())
            .args(["agent", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the agent")?;
        self.agent = Some(child);
        Ok(())
    }

    /// Waits until the agent answers its API (or fails if it exits).
    pub fn wait_agent(&mut self) -> Result<()> {
        let mut exited = None;
        let ready = wait_until(AGENT_READY, "the agent to serve its API", || {
            if let Some(st) = self
                .agent
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(st);
                return true;
            }
            self.status().is_ok()
        });
        if let Some(st) = exited {
            bail!("agent {} exited ({st}): {}", self.name, self.agent_log());
        }
        ready.with_context(|| self.agent_log())
    }

    /// SIGKILL, like a crash.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Runs `netcore ARGS` against this node's agent.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(netcore_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("netcore runs")
    }

    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self.cli_output(args);
        if !out.status.success() {
            bail!(
                "netcore {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn cli_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.cli(&args)?;
        serde_json::from_str(&text).with_context(|| format!("parsing {text}"))
    }

    pub fn status(&self) -> Result<Status> {
        self.cli_json(&["status"])
    }

    pub fn add_pod(&self, name: &str) -> Result<PodInfo> {
        self.cli_json(&["pod", "add", name])
    }

    /// Packets counted for `reason` by the data path.
    pub fn counter(&self, reason: &str) -> Result<u64> {
        let st = self.status()?;
        st.counters
            .iter()
            .find(|c| c.reason == reason)
            .map(|c| c.packets)
            .context("unknown counter")
    }

    pub fn counter_bytes(&self, reason: &str) -> Result<u64> {
        let st = self.status()?;
        st.counters
            .iter()
            .find(|c| c.reason == reason)
            .map(|c| c.bytes)
            .context("unknown counter")
    }

    /// `netcore reset` inside the node's namespace.
    pub fn reset(&self) -> Result<()> {
        crate::netns::run(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns.path.display()))
                .arg(netcore_bin())
                .args(["reset", "--config"])
                .arg(&self.config),
        )?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("NETCORE_TEST_LOGS").is_some() {
            eprintln!("--- agent log of {}:\n{}", self.name, self.agent_log());
        }
        self.kill_agent();
        if let Err(e) = self.reset() {
            eprintln!("cleaning up node {}: {e:#}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        self.etcd = None;
        let _ = std::fs::remove_dir_all(self.dir());
        let _ = std::fs::remove_dir(format!("/sys/fs/bpf/netcore-test/{}", self.id));
    }
}
