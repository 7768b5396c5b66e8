//! The `netcore` command: the agent daemon, and thin clients of its API.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod flows;
mod policy;

pub use policy::{NamespaceCmd, PolicyCmd};

use crate::{
    api::service::{self, Endpoint, Frontend, ServiceSpec, ServiceStatus},
    api::{client, NodeInfo, NodeSpec, PodInfo, Request, Status},
    config::AgentConfig,
    mac::Mac,
};

#[derive(Parser)]
#[command(
    name = "netcore",
    version,
    about = "eBPF pod networking: agent and CLI"
)]
pub struct Cli {
    /// The agent's API socket.
    #[arg(
        long,
        global = true,
        env = "NETCORE_SOCKET",
        default_value = "/run/netcore/netcore.sock"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the node agent in the foreground.
    Agent {
        #[arg(long)]
        config: PathBuf,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
        /// Log level (error, warn, info, debug, trace) unless RUST_LOG says otherwise.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// Per-packet logs from the eBPF programs (debugging; off by default).
        #[arg(long)]
        bpf_log: bool,
    },
    /// Pods on this node.
    #[command(subcommand)]
    Pod(PodCmd),
    /// Services: a virtual address balanced over backends (ClusterIP, NodePort).
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Remote nodes in the overlay map.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Kubernetes NetworkPolicy objects, enforced by every node.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Namespaces' labels (what a policy's namespaceSelector matches).
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Node, pods, programs and data-path counters; with --flows, each pod's traffic
    /// over the last minute: top talkers, drops by reason.
    Status {
        #[arg(long)]
        json: bool,
        /// Each local pod's traffic over the last minute instead.
        #[arg(long)]
        flows: bool,
        /// With --flows: this pod only.
        #[arg(long, requires = "flows")]
        pod: Option<String>,
        /// With --flows: talkers shown per pod.
        #[arg(long, requires = "flows", default_value_t = crate::flows::DEFAULT_TOP)]
        top: usize,
    },
    /// Stream what the data path drops (and, with --trace, a sample of what it passes),
    /// one line per packet, until Ctrl-C.
    Monitor {
        /// Drops only (the default).
        #[arg(long, conflicts_with = "trace")]
        drops: bool,
        /// Drops and traces of passing packets.
        #[arg(long)]
        trace: bool,
        /// With --trace: one passing packet in N.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        sample: u16,
        /// Only events of this local pod.
        #[arg(long)]
        pod: Option<String>,
        /// Only events of this remote node.
        #[arg(long)]
        node: Option<String>,
        /// One JSON object per line (schema in the README).
        #[arg(long)]
        json: bool,
    },
    /// Release this node's subnet lease and stop the agent (the node leaves the cluster).
    Leave,
    /// Remove everything the agent made for a node (stop the agent first).
    Reset {
        #[arg(long)]
        config: PathBuf,
    },
    /// Install the CNI plugin and a network config for container runtimes; the
    /// config points the plugin at --socket.
    InstallCni(InstallCniArgs),
}

#[derive(clap::Args)]
pub struct InstallCniArgs {
    /// Where runtimes look for plugins (repeat for several).
    #[arg(long = "bin-dir", default_values = crate::cni::install::DEFAULT_BIN_DIRS)]
    pub bin_dirs: Vec<PathBuf>,
    /// Where runtimes read network configs.
    #[arg(long, default_value = crate::cni::install::DEFAULT_CONF_DIR)]
    pub conf_dir: PathBuf,
    /// The network's name (the conflist is 10-NAME.conflist).
    #[arg(long, default_value = "netcore")]
    pub network: String,
    /// cniVersion of the conflist (0.4.0, 1.0.0 or 1.1.0; 1.1.0 adds STATUS and GC).
    #[arg(long, default_value = "1.0.0")]
    pub cni_version: String,
    /// A plugin to run after netcore-cni, e.g. portmap, bandwidth, tuning (repeat).
    #[arg(long = "chain")]
    pub chain: Vec<String>,
    /// The netcore-cni binary to install (default: next to this netcore).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Remove what an install with the same options wrote.
    #[arg(long)]
    pub uninstall: bool,
}

#[derive(Subcommand)]
pub enum PodCmd {
    /// Create a pod: a network namespace /run/netns/NAME wired to the node.
    Add {
        name: String,
        /// The pod's namespace, for network policy ("default" if left out).
        #[arg(long)]
        namespace: Option<String>,
        /// A label KEY=VALUE (repeat for more), for network policy.
        #[arg(long = "label", value_parser = policy::parse_label)]
        labels: Vec<(String, String)>,
        /// A named port NAME=PORT[/PROTOCOL] (repeat for more; TCP if left out), what a
        /// policy's `port: NAME` means for this pod, as a container port in Kubernetes.
        #[arg(long = "port", value_parser = crate::policy::ports::parse_port_arg)]
        ports: Vec<crate::policy::ports::ContainerPort>,
        #[arg(long)]
        json: bool,
    },
    /// Change a pod's labels: KEY=VALUE sets, KEY- removes (as kubectl label).
    Label {
        name: String,
        #[arg(required = true)]
        changes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a pod (deleting a pod that does not exist is not an error).
    Del { name: String },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Add a service (or change one with --replace).
    Add {
        name: String,
        /// The service address: IP:PORT/PROTO (tcp or udp; tcp if left out).
        #[arg(long)]
        vip: Frontend,
        /// A backend IP:PORT (repeat for more).
        #[arg(long = "backend")]
        backends: Vec<Endpoint>,
        /// Also reachable on this port of every node's uplink address.
        #[arg(long)]
        node_port: Option<u16>,
        /// NodePort: keep the client's address when the backend is on the node.
        #[arg(long)]
        keep_source: bool,
        /// Session affinity by client address (Kubernetes' ClientIP), for 10800 s
        /// unless --affinity-seconds says otherwise.
        #[arg(long)]
        session_affinity: bool,
        /// Session affinity for this many seconds (1 to 86400; implies --session-affinity).
        #[arg(long)]
        affinity_seconds: Option<u32>,
        /// Change an existing service instead of refusing.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
    Del {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Add or change a remote node.
    Add {
        name: String,
        #[arg(long)]
        pod_cidr: ipnet::Ipv4Net,
        #[arg(long)]
        underlay_ip: std::net::Ipv4Addr,
        /// The node's VTEP; leave it out for a node reached only directly (host-gw).
        #[arg(long)]
        vtep_mac: Option<Mac>,
    },
    Del {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn main(cli: Cli) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netcore: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once (most messages already quote their cause).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
    }
    msg
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let sock = cli.socket.as_path();
    match cli.command {
        Command::Agent {
            config,
            log_json,
            log_level,
            bpf_log,
        } => {
            init_logging(log_json, &log_level);
            crate::daemon::run(&config, bpf_log).await
        }
        Command::Reset { config } => crate::reset::reset(&AgentConfig::load(&config)?).await,
        Command::InstallCni(args) => install_cni(args, sock),
        Command::Status {
            json,
            flows: true,
            pod,
            top,
        } => flows::show(sock, pod, top, json).await,
        Command::Status { json, .. } => {
            let st: Status = client::call(sock, &Request::Status).await?;
            print_or_json(json, &st, print_status)
        }
        Command::Pod(PodCmd::Add {
            name,
            namespace,
            labels,
            ports,
            json,
        }) => {
            let req = Request::PodAdd(crate::api::PodAdd {
                name,
                namespace,
                labels: labels.into_iter().collect(),
                ports,
                ..Default::default()
            });
            let pod: PodInfo = client::call(sock, &req).await?;
            print_or_json(json, &pod, |p| {
                println!(
                    "pod {} ip {} mac {} host {}",
                    p.name, p.ip, p.mac, p.host_interface
                )
            })
        }
        Command::Pod(PodCmd::Del { name }) => {
            let existed: bool = client::call(sock, &Request::PodDel { name: name.clone() }).await?;
            println!(
                "{}",
                if existed {
                    format!("pod {name} deleted")
                } else {
                    format!("pod {name} does not exist")
                }
            );
            Ok(())
        }
        Command::Pod(PodCmd::List { json }) => {
            let pods: Vec<PodInfo> = client::call(sock, &Request::PodList).await?;
            print_or_json(json, &pods, |p| print_pods(p))
        }
        Command::Node(NodeCmd::Add {
            name,
            pod_cidr,
            underlay_ip,
            vtep_mac,
        }) => {
            let spec = NodeSpec {
                name,
                pod_cidr,
                underlay_ip,
                vtep_mac,
            };
            let node: NodeInfo = client::call(sock, &Request::NodeAdd(spec)).await?;
            println!(
                "node {} {} via {} ({})",
                node.spec.name,
                node.spec.pod_cidr,
                node.spec.underlay_ip,
                route_text(&node)
            );
            Ok(())
        }
        Command::Node(NodeCmd::Del { name }) => {
            let existed: bool =
                client::call(sock, &Request::NodeDel { name: name.clone() }).await?;
            println!(
                "{}",
                if existed {
                    format!("node {name} removed")
                } else {
                    format!("node {name} is not known")
                }
            );
            Ok(())
        }
        Command::Monitor {
            drops: _,
            trace,
            sample,
            pod,
            node,
            json,
        } => {
            let watch = crate::monitor::Watch {
                drops: true,
                trace,
                every: sample,
            };
            let filter = |l: &crate::monitor::Line| match l {
                crate::monitor::Line::Drop(i) | crate::monitor::Line::Trace(i) => {
                    pod.as_ref().is_none_or(|p| i.pod.as_ref() == Some(p))
                        && node.as_ref().is_none_or(|n| i.node.as_ref() == Some(n))
                }
                crate::monitor::Line::Lost { .. } => true,
            };
            client::stream(
                sock,
                &Request::Monitor(watch),
                |line: crate::monitor::Line| {
                    if filter(&line) {
                        print_event(&line, json);
                    }
                },
            )
            .await?;
            Ok(())
        }
        Command::Leave => {
            let () = client::call(sock, &Request::Leave).await?;
            println!("left the cluster: the lease is released and the agent stopped");
            Ok(())
        }
        Command::Service(cmd) => service_cmd(sock, cmd).await,
        Command::Policy(cmd) => policy::policy_cmd(sock, cmd).await,
        Command::Namespace(cmd) => policy::namespace_cmd(sock, cmd).await,
        Command::Pod(PodCmd::Label {
            name,
            changes,
            json,
        }) => {
            let change = policy::parse_changes(&changes)?;
            let pod: PodInfo = client::call(sock, &Request::PodLabel { name, change }).await?;
            print_or_json(json, &pod, |p| {
                println!("pod {} labels {}", p.name, policy::labels_text(&p.labels))
            })
        }
        Command::Node(NodeCmd::List { json }) => {
            let nodes: Vec<NodeInfo> = client::call(sock, &Request::NodeList).await?;
            print_or_json(json, &nodes, |n| print_nodes(n))
        }
    }
}

fn install_cni(args: InstallCniArgs, socket: &Path) -> anyhow::Result<()> {
    let plugin = match args.plugin {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name(crate::cni::install::PLUGIN),
    };
    let install = crate::cni::install::Install {
        plugin,
        bin_dirs: args.bin_dirs,
        conf_dir: args.conf_dir,
        network: args.network,
        socket: socket.into(),
        cni_version: crate::cni::version::Version::parse(&args.cni_version)
            .map_err(|e| anyhow::anyhow!("--cni-version: {e}"))?,
        chain: args.chain,
    };
    let (verb, paths) = if args.uninstall {
        ("removed", install.uninstall()?)
    } else {
        ("installed", install.install()?)
    };
    for p in &paths {
        println!("{verb} {}", p.display());
    }
    if paths.is_empty() {
        println!("nothing to remove");
    }
    Ok(())
}

async fn service_cmd(sock: &Path, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Add {
            name,
            vip,
            backends,
            node_port,
            keep_source,
            session_affinity,
            affinity_seconds,
            replace,
            json,
        } => {
            let affinity_seconds =
                affinity_seconds.or(session_affinity.then_some(service::DEFAULT_AFFINITY_SECONDS));
            let spec = ServiceSpec {
                name,
                vip: vip.vip,
                proto: vip.proto,
                backends,
                node_port,
                keep_source,
                affinity_seconds,
            };
            let st: ServiceStatus =
                client::call(sock, &Request::ServiceAdd { spec, replace }).await?;
            print_or_json(json, &st, |s| {
                println!(
                    "service {} {}/{} -> {} backends",
                    s.spec.name,
                    s.spec.vip,
                    s.spec.proto,
                    s.spec.backends.len()
                )
            })
        }
        ServiceCmd::Del { name } => {
            let existed: bool =
                client::call(sock, &Request::ServiceDel { name: name.clone() }).await?;
            println!(
                "{}",
                if existed {
                    format!("service {name} deleted")
                } else {
                    format!("service {name} does not exist")
                }
            );
            Ok(())
        }
        ServiceCmd::List { json } => {
            let list: Vec<ServiceStatus> = client::call(sock, &Request::ServiceList).await?;
            print_or_json(json, &list, |l| {
                println!(
                    "{:<16} {:<22} {:<9} {:<9} {:>8} {:>10} {:>8}  BACKENDS",
                    "NAME", "VIP", "NODEPORT", "AFFINITY", "CONNS", "PACKETS", "REJECTED"
                );
                for v in l {
                    let backends: Vec<String> =
                        v.spec.backends.iter().map(|b| b.to_string()).collect();
                    let np = v.spec.node_port.map_or("-".to_string(), |p| p.to_string());
                    let affinity = v
                        .spec
                        .affinity_seconds
                        .map_or("-".into(), |s| format!("{s}s"));
                    println!(
                        "{:<16} {:<22} {:<9} {:<9} {:>8} {:>10} {:>8}  {}",
                        v.spec.name,
                        format!("{}/{}", v.spec.vip, v.spec.proto),
                        np,
                        affinity,
                        v.connections,
                        v.packets,
                        v.rejected,
                        backends.join(" ")
                    );
                }
            })
        }
    }
}

pub(crate) fn print_or_json<T: serde::Serialize>(
    json: bool,
    v: &T,
    human: impl Fn(&T),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        human(v);
    }
    Ok(())
}

fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn print_pods(pods: &[PodInfo]) {
    println!(
        "{:<20} {:<16} {:<18} {:<11} {:<13} {:<12} {:<24} NETNS",
        "NAME", "IP", "MAC", "HOST-IF", "CONTAINER", "NAMESPACE", "LABELS"
    );
    for p in pods {
        let container = p
            .container_id
            .as_deref()
            .map_or("-", |c| &c[..c.len().min(12)]);
        println!(
            "{:<20} {:<16} {:<18} {:<11} {:<13} {:<12} {:<24} {}{}",
            p.name,
            p.ip,
            p.mac,
            p.host_interface,
            container,
            p.namespace,
            policy::labels_text(&p.labels),
            p.netns.display(),
            if p.in_map { "" } else { "  (not in map!)" }
        );
    }
}

fn print_nodes(nodes: &[NodeInfo]) {
    println!(
        "{:<16} {:<18} {:<16} {:<18} {:<8} {:<9} IN-MAP",
        "NAME", "POD-CIDR", "UNDERLAY", "ROUTE", "SOURCE", "EXPIRES"
    );
    let now = crate::control::unix_now();
    for n in nodes {
        let expires = n
            .expires
            .map_or("-".to_string(), |t| format!("{}s", t.saturating_sub(now)));
        println!(
            "{:<16} {:<18} {:<16} {:<18} {:<8} {:<9} {}",
            n.spec.name,
            n.spec.pod_cidr,
            n.spec.underlay_ip,
            route_text(n),
            n.source,
            expires,
            n.in_map
        );
    }
}

/// "vxlan (VTEP aa:..)", "direct (aa:..)", "direct (MAC not learned yet)", "unroutable".
fn route_text(n: &NodeInfo) -> String {
    use crate::backend::RouteKind;
    match (n.route, n.spec.vtep_mac, n.underlay_mac) {
        (RouteKind::Vxlan, Some(vtep), _) => format!("vxlan (VTEP {vtep})"),
        (RouteKind::Direct, _, Some(mac)) => format!("direct ({mac})"),
        (RouteKind::Direct, _, None) => "direct (MAC not learned yet)".into(),
        (RouteKind::Unroutable, ..) => "unroutable (not on this uplink's subnet)".into(),
        (RouteKind::Vxlan, None, _) => "vxlan (no VTEP!)".into(),
    }
}

fn print_event(line: &crate::monitor::Line, json: bool) {
    use crate::monitor::Line;
    if json {
        println!("{}", serde_json::to_string(line).expect("lines serialize"));
        return;
    }
    let (kind, i) = match line {
        Line::Lost { events } => {
            return println!("LOST   {events} events (ring buffer full or output too slow)")
        }
        Line::Drop(i) => ("DROP ", i),
        Line::Trace(i) => ("TRACE", i),
    };
    let ep = |a: Option<std::net::Ipv4Addr>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        _ => "-".into(),
    };
    let outer = i.outer.as_ref().map_or(String::new(), |o| {
        format!(" in VXLAN {} -> {}", o.src, o.dst)
    });
    let who = [
        i.pod.as_ref().map(|p| format!("pod {p}")),
        i.node.as_ref().map(|n| format!("node {n}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    println!(
        "{kind} {:<24} {:<12} {:<13} {} {} -> {}{outer} {} bytes {who}",
        i.reason,
        i.program,
        i.interface,
        i.proto.as_deref().unwrap_or("-"),
        ep(i.src, i.sport),
        ep(i.dst, i.dport),
        i.len
    );
}

fn print_status(s: &Status) {
    println!(
        "node      {}  (underlay {} on {}, VTEP {})",
        s.node, s.underlay_ip, s.uplink, s.vtep_mac
    );
    println!(
        "subnet    {} of {}  gateway {} on {}  pod MTU {} (link {})",
        s.pod_cidr, s.cluster_cidr, s.gateway, s.bridge, s.pod_mtu, s.pod_link_mtu
    );
    println!(
        "overlay   {}  VXLAN port {} VNI {}  device {}  decap {}",
        s.backend, s.vxlan_port, s.vni, s.datapath.vxlan_device, s.datapath.decap
    );
    println!(
        "kernel    {}  attach {}",
        s.datapath.kernel, s.datapath.attach
    );
    println!(
        "pods      {}  (IPs {}/{} in use)",
        s.pods.len(),
        s.ips_in_use,
        s.ips_total
    );
    for p in &s.pods {
        println!("  {:<20} {:<16} {}", p.name, p.ip, p.host_interface);
    }
    match &s.store {
        Some(h) => println!(
            "store     {} {}  lease {}  {}",
            h.backend,
            if h.connected {
                "connected"
            } else {
                "UNREACHABLE (forwarding on the last known nodes)"
            },
            h.lease_key,
            h.last_error
                .as_deref()
                .filter(|_| !h.connected)
                .unwrap_or("")
        ),
        None => println!("store     none (remote nodes by `netcore node add`)"),
    }
    println!("peers     {}", s.nodes.len());
    for n in &s.nodes {
        println!(
            "  {:<16} {:<18} via {:<16} {:<34} {}",
            n.spec.name,
            n.spec.pod_cidr,
            n.spec.underlay_ip,
            route_text(n),
            if n.in_map { "in map" } else { "NOT IN MAP" }
        );
    }
    println!("services  {}", s.services.len());
    for v in &s.services {
        println!(
            "  {:<16} {}/{} -> {} backends  {} conns  {} pkts  {} rejected",
            v.spec.name,
            v.spec.vip,
            v.spec.proto,
            v.spec.backends.len(),
            v.connections,
            v.packets,
            v.rejected
        );
    }
    println!("programs  {}", s.programs.len());
    for a in &s.programs {
        println!("  {:<13} {:<12} {}", a.program, a.interface, a.direction);
    }
    println!("counters  {:<26} {:>12} {:>14}", "", "packets", "bytes");
    for c in &s.counters {
        if c.packets > 0 || !c.drop {
            println!(
                "          {:<26} {:>12} {:>14}",
                c.reason, c.packets, c.bytes
            );
        }
    }
}
