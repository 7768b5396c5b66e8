//! The agent's TOML configuration: what a node is and where it keeps its things.
//! Every path is configurable so that several agents share one host.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::store::StoreUrl;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Name of this node (unique in the cluster).
    pub node_name: String,
    /// Interface that carries the underlay (its first IPv4 address is the node's).
    pub uplink: String,
    /// This node's pod CIDR, e.g. "10.244.1.0/24". Optional with a cluster store: the
    /// agent then leases one (and asks for this one when it is given).
    #[serde(default)]
    pub pod_cidr: Option<Ipv4Net>,
    /// The whole cluster's pod network; remote pod CIDRs lie inside it.
    #[serde(default = "default_cluster_cidr")]
    pub cluster_cidr: Ipv4Net,
    /// Service addresses the node's own processes reach (routed into the bridge, where
    /// `from_host` balances them), like Kubernetes' service cluster IP range. Services
    /// outside it still serve pods and NodePort clients. Unset: `DEFAULT_SERVICE_CIDR`,
    /// skipped with a warning where it overlaps the pod network or the underlay.
    #[serde(default)]
    pub service_cidr: Option<Ipv4Net>,
    /// Name of the node bridge (the pods' gateway).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Where the agent persists IPAM and node identity.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// bpffs directory for this node's pinned maps and links.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// The agent's API socket.
    #[serde(default = "default_api_socket")]
    pub api_socket: PathBuf,
    /// VXLAN UDP port (flannel and Linux use 8472).
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// VXLAN network identifier (flannel uses 1).
    #[serde(default = "default_vni")]
    pub vni: u32,
    /// Masquerade traffic from pods to outside the cluster CIDR.
    #[serde(default = "default_true")]
    pub masquerade: bool,
    /// Cluster store: `file:///DIR` (embedded), `etcd://HOST:PORT,…`, or `none`
    /// (remote nodes only by `netcore node add`).
    #[serde(default = "default_store")]
    pub store: String,
    /// Key prefix in the store (flannel's by default).
    #[serde(default = "default_store_prefix")]
    pub store_prefix: String,
    /// Lifetime of this node's subnet lease in seconds; renewed at a third of it.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: u64,
    /// Subnet size written to a new cluster's network config.
    #[serde(default = "default_subnet_len")]
    pub subnet_len: u8,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, or "none".
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: String,
    /// Flow accounting: packets and bytes by address pair and outcome, for
    /// `netcore status --flows` and the per-pod metrics (one map update per packet).
    #[serde(default = "default_true")]
    pub flows: bool,
    /// Per-packet logs from the eBPF programs (aya-log), for debugging only.
    #[serde(default)]
    pub bpf_log: bool,
    /// How programs are attached: TCX links where the kernel has them ("auto"), or
    /// forced: "tcx", or "tc" (clsact filters, as on Linux before 6.6).
    #[serde(default)]
    pub attach: AttachChoice,
    /// Who unwraps VXLAN from other nodes: "auto" (`from_uplink` for local pods, the
    /// node's VXLAN device for the rest), or forced: "device" or "tc" (everything).
    #[serde(default)]
    pub decap: DecapMode,
    /// Name of the node's VXLAN device (collect_md, on `vxlan_port`).
    #[serde(default = "default_vxlan_device")]
    pub vxlan_device: String,
    /// How nodes reach each other, as flannel's `Backend.Type`: "vxlan" or "host-gw".
    /// With a cluster store, the store's network config decides (this seeds a new
    /// cluster's config); with `store = "none"`, this does.
    #[serde(default)]
    pub backend: BackendType,
    /// flannel's vxlan `DirectRouting`: peers on the uplink's subnet directly, the
    /// rest over VXLAN.
    #[serde(default)]
    pub direct_routing: bool,
    /// etcd over TLS: the CA of the members' certificates (flanneld's `-etcd-cafile`);
    /// with it the endpoints are spoken to over https.
    #[serde(default)]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate and key etcd may require (`-etcd-certfile`,
    /// `-etcd-keyfile`).
    #[serde(default)]
    pub etcd_certfile: Option<PathBuf>,
    #[serde(default)]
    pub etcd_keyfile: Option<PathBuf>,
    /// etcd authentication (`-etcd-username`, `-etcd-password`).
    #[serde(default)]
    pub etcd_username: Option<String>,
    #[serde(default)]
    pub etcd_password: Option<String>,
}

/// The `backend` setting.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum BackendType {
    #[default]
    #[serde(rename = "vxlan")]
    Vxlan,
    #[serde(rename = "host-gw")]
    HostGw,
}

/// The `attach` setting.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttachChoice {
    /// TCX if the kernel has it, else legacy TC.
    #[default]
    Auto,
    Tcx,
    Tc,
}

/// The `decap` setting.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DecapMode {
    /// `from_uplink` unwraps what goes into a local pod (redirected straight in); the
    /// VXLAN device unwraps what goes to the node itself (its decapsulation clears the
    /// tunnel offload state, so the node may forward it on).
    #[default]
    Auto,
    /// The kernel's VXLAN device unwraps everything; `from_overlay` on its ingress
    /// checks and delivers.
    Device,
    /// `from_uplink` unwraps with `bpf_skb_adjust_room` (the device only registers the
    /// port for GRO and NIC offloads).
    Tc,
}

impl DecapMode {
    pub fn name(self) -> &'static str {
        match self {
            DecapMode::Auto => "auto",
            DecapMode::Device => "device",
            DecapMode::Tc => "tc",
        }
    }
}

/// Kubernetes' default service cluster IP range.
pub const DEFAULT_SERVICE_CIDR: Ipv4Net =
    Ipv4Net::new_assert(std::net::Ipv4Addr::new(10, 96, 0, 0), 12);
fn default_cluster_cidr() -> Ipv4Net {
    "10.244.0.0/16".parse().expect("constant")
}
fn default_bridge() -> String {
    "nc0".into()
}
fn default_vxlan_device() -> String {
    "nc-vxlan".into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/netcore".into()
}
fn default_pin_dir() -> PathBuf {
    "/sys/fs/bpf/netcore".into()
}
fn default_api_socket() -> PathBuf {
    "/run/netcore/netcore.sock".into()
}
fn default_vxlan_port() -> u16 {
    netcore_common::wire::DEFAULT_VXLAN_PORT
}
fn default_vni() -> u32 {
    netcore_common::wire::DEFAULT_VNI
}
/// A week: leases are renewed at a third of their life, so longer buys nothing.
const MAX_LEASE_TTL: u64 = 7 * 24 * 3600;

fn default_true() -> bool {
    true
}
fn default_store() -> String {
    "file:///var/lib/netcore/cluster".into()
}
fn default_store_prefix() -> String {
    crate::store::flannel::DEFAULT_PREFIX.into()
}
fn default_lease_ttl() -> u64 {
    86400
}
fn default_subnet_len() -> u8 {
    24
}
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".into()
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::new(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let name_ok = self
            .node_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if self.node_name.is_empty() || self.node_name.len() > 63 || !name_ok {
            return invalid(format!(
                "node_name {:?} must be 1 to 63 letters, digits, '-', '_' or '.'",
                self.node_name
            ));
        }
        let devices = [
            ("uplink", &self.uplink),
            ("bridge", &self.bridge),
            ("vxlan_device", &self.vxlan_device),
        ];
        for (what, name) in devices {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return invalid(format!("{what} {name:?} is not a valid interface name"));
            }
        }
        if self.etcd_certfile.is_some() != self.etcd_keyfile.is_some() {
            return invalid("etcd_certfile and etcd_keyfile go together".into());
        }
        if self.etcd_certfile.is_some() && self.etcd_cafile.is_none() {
            return invalid(
                "etcd_certfile needs etcd_cafile (the CA that signs etcd's certificates)".into(),
            );
        }
        if self.etcd_username.is_some() != self.etcd_password.is_some() {
            return invalid("etcd_username and etcd_password go together".into());
        }
        if self.etcd_username.is_some() && self.etcd_cafile.is_none() {
            tracing::warn!(
                "etcd_username without etcd_cafile: the password crosses the network in the clear"
            );
        }
        if self.direct_routing && self.backend == BackendType::HostGw {
            return invalid(
                "direct_routing is a vxlan option; host-gw routes every node directly".into(),
            );
        }
        if self.vxlan_device == self.uplink || self.vxlan_device == self.bridge {
            return invalid(format!(
                "vxlan_device {:?} is also the uplink or the bridge",
                self.vxlan_device
            ));
        }
        let store = self
            .store_url()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        match self.pod_cidr {
            Some(pod_cidr) => self.validate_pod_cidr(pod_cidr)?,
            None if store == StoreUrl::None => {
                return invalid("pod_cidr is required when store = \"none\"".into())
            }
            None => {}
        }
        if !(self.cluster_cidr.prefix_len()..=29).contains(&self.subnet_len) {
            return invalid(format!(
                "subnet_len {} does not fit cluster_cidr {}",
                self.subnet_len, self.cluster_cidr
            ));
        }
        self.metrics_addr()?;
        if self.bridge == self.uplink {
            return invalid(format!(
                "bridge and uplink are both {:?}: the bridge is netcore's own device",
                self.bridge
            ));
        }
        if !(3..=MAX_LEASE_TTL).contains(&self.lease_ttl) {
            return invalid(format!(
                "lease_ttl {} must be between 3 seconds and 7 days",
                self.lease_ttl
            ));
        }
        if !self.store_prefix.starts_with('/') || self.store_prefix.contains("..") {
            return invalid(format!(
                "store_prefix {:?} must be an absolute key prefix",
                self.store_prefix
            ));
        }
        if self.vni == 0 || self.vni >= 1 << 24 {
            return invalid(format!("vni {} must be between 1 and 16777215", self.vni));
        }
        if self.vxlan_port == 0 {
            return invalid("vxlan_port must not be 0".into());
        }
        Ok(())
    }

    fn validate_pod_cidr(&self, pod_cidr: Ipv4Net) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if pod_cidr.prefix_len() > 29 || pod_cidr.prefix_len() < 8 {
            return invalid(format!(
                "pod_cidr {pod_cidr} must be between /8 and /29 (room for a gateway and pods)"
            ));
        }
        if pod_cidr.network() != pod_cidr.addr() {
            return invalid(format!(
                "pod_cidr {pod_cidr} has host bits set (did you mean {}?)",
                pod_cidr.trunc()
            ));
        }
        if !self.cluster_cidr.contains(&pod_cidr) {
            return invalid(format!(
                "pod_cidr {pod_cidr} is not inside cluster_cidr {}",
                self.cluster_cidr
            ));
        }
        Ok(())
    }

    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.metrics_addr == "none" {
            return Ok(None);
        }
        self.metrics_addr.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "metrics_addr {:?} is not IP:PORT or \"none\"",
                self.metrics_addr
            ))
        })
    }

    /// The backend this config asks for.
    pub fn node_backend(&self) -> crate::backend::Backend {
        match self.backend {
            BackendType::HostGw => crate::backend::Backend::HostGw,
            BackendType::Vxlan => crate::backend::Backend::Vxlan {
                direct_routing: self.direct_routing,
            },
        }
    }

    /// TLS and credentials for etcd.
    pub fn etcd_security(&self) -> crate::store::EtcdSecurity {
        crate::store::EtcdSecurity {
            ca_file: self.etcd_cafile.clone(),
            cert_file: self.etcd_certfile.clone(),
            key_file: self.etcd_keyfile.clone(),
            user: self.etcd_username.clone().zip(self.etcd_password.clone()),
        }
    }

    pub fn store_url(&self) -> Result<StoreUrl, crate::store::StoreError> {
        StoreUrl::parse(&self.store)
    }

    pub fn lease_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_ttl)
    }
}

/// The gateway (bridge address) of a pod CIDR: its first host.
pub fn gateway(pod_cidr: Ipv4Net) -> Ipv4Addr {
    nth_host(pod_cidr, 1)
}

/// The `n`th address of `net` (0 is the network address).
pub fn nth_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        node_name = "n1"
        uplink = "eth0"
        pod_cidr = "10.244.1.0/24"
    "#;

    #[test]
    fn defaults_fill_the_rest() {
        let cfg = AgentConfig::parse(GOOD).expect("a minimal config parses");
        assert_eq!(cfg.bridge, "nc0");
        assert_eq!(cfg.vxlan_port, 8472);
        assert_eq!(cfg.vni, 1);
        assert_eq!(gateway(cfg.pod_cidr.unwrap()), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(
            cfg.store_url().unwrap(),
            StoreUrl::File("/var/lib/netcore/cluster".into())
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases = [
            (
                "node_name = \"n\"\nuplink = \"eth0\"\nstore = \"none\"",
                "pod_cidr is required",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\nstore = \"etcd://x\"",
                "store URL",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\nlease_ttl = 1",
                "lease_ttl",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\nlease_ttl = 99999999999",
                "lease_ttl",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\nbridge = \"eth0\"",
                "both",
            ),
            (
                "node_name = \"a\\\"b\"\nuplink = \"eth0\"",
                "letters, digits",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\npod_cidr = \"10.244.1.0/33\"",
                "invalid",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\npod_cidr = \"10.244.1.7/24\"",
                "host bits",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\npod_cidr = \"10.9.1.0/24\"",
                "not inside",
            ),
            (
                "node_name = \"n\"\nuplink = \"eth0\"\npod_cidr = \"10.244.1.0/30\"",
                "between /8",
            ),
            (
                "node_name = \"n\"\npod_cidr = \"10.244.1.0/24\"",
                "missing field `uplink`",
            ),
            (
                "node_name = \"n\"\nuplink = \"a/b\"\npod_cidr = \"10.244.1.0/24\"",
                "interface",
            ),
            (
                "node_name = \"n\"\nuplink = \"e\"\npod_cidr = \"10.244.1.0/24\"\nvni = 0",
                "vni",
            ),
            (
                "node_name = \"n\"\nuplink = \"e\"\npod_cidr = \"10.244.1.0/24\"\nbogus = 1",
                "unknown field",
            ),
            (
                "node_name = \"n\"\nuplink = \"e\"\npod_cidr = \"10.244.1.0/24\"\nattach = \"xdp\"",
                "unknown variant `xdp`, expected one of `auto`, `tcx`, `tc`",
            ),
            (
                "node_name = \"n\"\nuplink = \"e\"\npod_cidr = \"10.244.1.0/24\"\ndecap = \"cpu\"",
                "unknown variant `cpu`, expected one of `auto`, `device`, `tc`",
            ),
            (
                "node_name = \"n\"\nuplink = \"e\"\npod_cidr = \"10.244.1.0/24\"\nvxlan_device = \"e\"",
                "also the uplink",
            ),
            ("this is not toml", "expected"),
        ];
        for (text, want) in cases {
            let err = AgentConfig::parse(text).expect_err(text).to_string();
            assert!(
                err.contains(want),
                "config {text:?}: expected an error mentioning {want:?}, got {err:?}"
            );
        }
    }
}
