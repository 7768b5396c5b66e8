//! A real `netcore agent` on a bench node: its config, start-up, the CLI against it,
//! and on drop: killed, `netcore reset` in its namespace, its files removed.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{cmd, datapaths::Context, netns::Netns};

/// How long an agent may take to serve its API.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `netcore monitor`, stopped on drop.
pub struct Watching(Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Agent {
    pub name: String,
    pub socket: PathBuf,
    netcore: PathBuf,
    ns_path: String,
    config: PathBuf,
    dir: PathBuf,
    child: Child,
}

/// What the agent's config says beyond the defaults.
pub struct AgentSpec<'a> {
    pub name: &'a str,
    pub pod_cidr: &'a str,
    pub cluster_cidr: &'a str,
    /// The cluster store's URL; `None` for `none` (the bench never touches the host's
    /// default store).
    pub store: Option<&'a str>,
    /// More config lines (a forced mode).
    pub extra: &'a str,
}

impl Agent {
    pub fn start(ctx: &Context, node: &Netns, spec: &AgentSpec) -> Result<Agent> {
        let dir = ctx.work_dir.join(spec.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("config.toml");
        let socket = dir.join("api.sock");
        let toml = format!(
            "node_name = \"{}\"\nuplink = \"ul0\"\npod_cidr = \"{}\"\ncluster_cidr = \"{}\"\n\
             state_dir = \"{}\"\npin_dir = \"{}\"\napi_socket = \"{}\"\nstore = \"{}\"\n{}\n",
            spec.name,
            spec.pod_cidr,
            spec.cluster_cidr,
            dir.join("state").display(),
            ctx.pin_dir.join(spec.name).display(),
            socket.display(),
            spec.store.unwrap_or("none"),
            spec.extra
        );
        std::fs::write(&config, toml)?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", node.path()))
            .arg(&ctx.netcore)
            .args(["agent", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting netcore agent")?;
        let mut agent = Agent {
            name: spec.name.into(),
            socket,
            netcore: ctx.netcore.clone(),
            ns_path: node.path(),
            config,
            dir,
            child,
        };
        agent.wait_ready()?;
        Ok(agent)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!("agent {} exited ({st}): {}", self.name, self.log_tail());
            }
            if self.cli(&["status"]).is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "agent {} did not serve its API within {READY_TIMEOUT:?}: {}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `netcore --socket S ARGS`: its stdout, or an error with its stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        cmd::run(
            Command::new(&self.netcore)
                .arg("--socket")
                .arg(&self.socket)
                .args(args),
        )
    }

    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.cli(&args)?;
        serde_json::from_str(&text).with_context(|| format!("parsing netcore's output {text}"))
    }

    pub fn vtep_mac(&self) -> Result<String> {
        let st = self.cli_json(&["status"])?;
        st["vtep_mac"]
            .as_str()
            .map(String::from)
            .context("`netcore status` shows no vtep_mac")
    }

    /// `netcore pod add NAME`: the pod's address.
    pub fn pod_add(&self, name: &str) -> Result<Ipv4Addr> {
        let pod = self.cli_json(&["pod", "add", name])?;
        pod["ip"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .with_context(|| format!("`netcore pod add` gave no address: {pod}"))
    }

    /// Tells this agent about another node.
    pub fn node_add(&self, other: &Agent, pod_cidr: &str, underlay_ip: Ipv4Addr) -> Result<()> {
        let mac = other.vtep_mac()?;
        let ip = underlay_ip.to_string();
        let args = ["node", "add", &other.name, "--pod-cidr", pod_cidr];
        self.cli(&[&args[..], &["--underlay-ip", &ip, "--vtep-mac", &mac]].concat())?;
        Ok(())
    }

    /// Waits until every peer this agent routes directly has its uplink MAC learned
    /// (until then the peer's unencapsulated packets are not accepted).
    pub fn wait_direct_peers(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let nodes = self.cli_json(&["node", "list"])?;
            let waiting = nodes
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["route"] == "direct" && n["underlay_mac"].is_null());
            if !waiting {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!("agent {}: direct peers' MACs not learned", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `netcore monitor ARGS` against this agent, its output thrown away, until the
    /// returned guard is dropped.
    pub fn watch(&self, args: &[&str]) -> Result<Watching> {
        let child = Command::new(&self.netcore)
            .arg("--socket")
            .arg(&self.socket)
            .arg("monitor")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting netcore monitor")?;
        let start = Instant::now();
        while self.cli_json(&["status"])?["monitor"]["drops"].as_u64() == Some(0) {
            if start.elapsed() > READY_TIMEOUT {
                bail!("agent {}: the monitor never started watching", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Watching(child))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let reset = cmd::run(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns_path))
                .arg(&self.netcore)
                .args(["reset", "--config"])
                .arg(&self.config),
        );
        if let Err(e) = reset {
            eprintln!("bench: cleaning up agent {}: {e:#}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
