//! Driving CNI plugins the way a container runtime does: `CNI_*` variables, the
//! network config on stdin, the plugin run in the node's network namespace (the
//! runtime's), and the container a namespace of its own.

use std::{
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, Map, MapData};
use netcore_common::{
    endpoint::EndpointInfo,
    pin::{MAP_ENDPOINTS, PIN_LAYOUT, PIN_MAPS},
};
use serde_json::{json, Value};

use crate::{cluster::Node, netcore_bin, netns::Netns, unique};

/// Where Debian's containernetworking-plugins live.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The `netcore-cni` binary next to `netcore`.
pub fn cni_bin() -> PathBuf {
    netcore_bin().with_file_name("netcore-cni")
}

/// What a plugin printed, and whether it exited 0.
#[derive(Debug, Clone)]
pub struct Reply {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// stdout as JSON (`Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    /// The result of a command that succeeded, or an error with what it printed.
    pub fn ok(self) -> Result<Value> {
        if !self.ok {
            bail!("plugin failed: {} {}", self.stdout, self.stderr);
        }
        Ok(self.json)
    }

    /// The spec error code of a command that failed.
    pub fn code(&self) -> Option<u64> {
        if self.ok {
            return None;
        }
        self.json["code"].as_u64()
    }
}

/// Runs `plugin` in the namespace `runtime_ns` with `env` and `stdin`.
pub fn exec(runtime_ns: &Path, plugin: &Path, env: &[(&str, String)], stdin: &str) -> Reply {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", runtime_ns.display()))
        .arg(plugin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("nsenter runs");
    let mut input = child.stdin.take().expect("piped stdin");
    // A plugin may exit before reading (bad environment): ignore a broken pipe.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("plugin runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A container as the runtime sees it: an ID and a network namespace.
pub struct Container {
    pub id: String,
    pub ns: Netns,
}

impl Container {
    pub fn new() -> Result<Self> {
        let id = unique("ctr");
        let ns = Netns::new(&format!("{id}-ns"))?;
        Ok(Container { id, ns })
    }
}

/// netcore-cni on one node, as a runtime would run it.
pub struct Runtime<'a> {
    pub node: &'a Node,
    pub network: String,
    pub version: String,
}

impl<'a> Runtime<'a> {
    pub fn new(node: &'a Node, version: &str) -> Self {
        Runtime {
            node,
            network: unique("net"),
            version: version.into(),
        }
    }

    /// The plugin's network config.
    pub fn conf(&self) -> Value {
        json!({
            "cniVersion": self.version,
            "name": self.network,
            "type": "netcore-cni",
            "socket": self.node.socket,
        })
    }

    /// The attachment variables for `c` as `eth0`.
    pub fn env(&self, cmd: &str, c: &Container) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.into()),
            ("CNI_CONTAINERID", c.id.clone()),
            ("CNI_NETNS", c.ns.path.display().to_string()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", REFERENCE_PLUGINS.into()),
        ]
    }

    pub fn run(&self, env: &[(&str, String)], conf: &Value) -> Reply {
        exec(&self.node.ns.path, &cni_bin(), env, &conf.to_string())
    }

    pub fn add(&self, c: &Container) -> Result<Value> {
        self.run(&self.env("ADD", c), &self.conf())
            .ok()
            .context("ADD")
    }

    /// CHECK and DEL get the ADD result as `prevResult`, as the spec wants.
    pub fn with_prev(&self, prev: &Value) -> Value {
        let mut conf = self.conf();
        conf["prevResult"] = prev.clone();
        conf
    }

    pub fn del(&self, c: &Container, prev: &Value) -> Result<()> {
        self.run(&self.env("DEL", c), &self.with_prev(prev))
            .ok()
            .context("DEL")?;
        Ok(())
    }
}

/// The pod addresses in a node's endpoint map (read from its pin).
pub fn endpoint_ips(node: &Node) -> Result<Vec<Ipv4Addr>> {
    let cfg = netcore_agent::config::AgentConfig::load(&node.config)?;
    let path = cfg
        .pin_dir
        .join(PIN_LAYOUT)
        .join(PIN_MAPS)
        .join(MAP_ENDPOINTS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map: HashMap<MapData, u32, EndpointInfo> = HashMap::try_from(Map::HashMap(data))?;
    let mut ips: Vec<Ipv4Addr> = map
        .keys()
        .filter_map(Result::ok)
        .map(|k| Ipv4Addr::from(k.to_ne_bytes()))
        .collect();
    ips.sort();
    Ok(ips)
}

/// The address in a result's first IP entry ("10.244.1.5/24" -> 10.244.1.5).
pub fn result_ip(result: &Value) -> Result<Ipv4Addr> {
    let ips = result["ips"].as_array().context("result has no ips")?;
    let ours = ips.last().context("result has an empty ips list")?;
    let cidr = ours["address"].as_str().context("ip without address")?;
    let ip = cidr.split('/').next().unwrap_or_default();
    ip.parse().with_context(|| format!("address {cidr}"))
}
