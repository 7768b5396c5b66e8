//! Podman with its CNI backend on a netcore network, kept away from the host's own
//! container set-up: its own containers.conf and storage.conf (`CONTAINERS_CONF`,
//! `CONTAINERS_STORAGE_CONF`), state, plugins and network configs in a temp dir, a
//! cgroup parent of its own, and every podman run inside
//! - the node's network namespace: podman runs its plugins where it runs, so the
//!   netcore agent, the containers' host veths and portmap's iptables rules all live
//!   in the node, not on the host;
//! - a mount namespace where `/var/lib` is a temp dir, because libcni keeps its
//!   result cache in `/var/lib/cni` and podman 4.3 cannot move it. `/run/netns` stays
//!   shared, so the agent sees the namespaces podman makes for its containers.
//!
//! Dropping it removes the containers (CNI DEL through the agent), any namespace
//! podman left, its cgroups and the temp dir.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

use crate::{cluster::Node, netcore_bin, unique};

/// How long one podman command may take before it is considered stuck.
const PODMAN_TIMEOUT_SECS: &str = "120";
/// The busybox applets the containers use.
const APPLETS: [&str; 10] = [
    "sh", "ip", "ping", "nc", "wget", "sleep", "cat", "httpd", "echo", "hostname",
];

/// Runs podman (given as "$@") in a private mount namespace with /var/lib replaced,
/// inside the network namespace $NC_NETNS.
const WRAPPER: &str = r#"
mount --make-private "$(findmnt -n -o TARGET --target /var/lib)"
mount --bind "$NC_VARLIB" /var/lib
exec nsenter --net="$NC_NETNS" podman "$@"
"#;

pub struct Podman {
    pub dir: PathBuf,
    pub network: String,
    netns: PathBuf,
    cgroup_parent: String,
    installed: Vec<String>,
}

impl Podman {
    /// Podman for `node`'s agent, with a network whose chain adds `chain` (e.g.
    /// `portmap`) after netcore-cni, installed with `netcore install-cni`.
    pub fn new(node: &Node, chain: &[&str]) -> Result<Self> {
        for tool in ["podman", "runc", "busybox", "unshare", "findmnt"] {
            if which(tool).is_none() {
                bail!("{tool} is missing: run scripts/setup.sh (it installs podman, runc, busybox-static)");
            }
        }
        let id = unique("pm");
        let dir = std::env::temp_dir().join(format!("netcore-podman-{id}"));
        let network = format!("{id}-net");
        let mut installed = vec![
            "--bin-dir".to_string(),
            dir.join("bin").display().to_string(),
            "--conf-dir".into(),
            dir.join("net.d").display().to_string(),
            "--network".into(),
            network.clone(),
        ];
        for plugin in chain {
            installed.extend(["--chain".to_string(), plugin.to_string()]);
        }
        let podman = Podman {
            dir,
            network,
            netns: node.ns.path.clone(),
            cgroup_parent: format!("/netcore-test-{id}"),
            installed,
        };
        podman.prepare(node)?;
        Ok(podman)
    }

    fn prepare(&self, node: &Node) -> Result<()> {
        for sub in ["varlib", "root", "runroot", "tmp", "volumes"] {
            std::fs::create_dir_all(self.dir.join(sub))?;
        }
        std::fs::write(self.dir.join("containers.conf"), self.containers_conf())?;
        std::fs::write(self.dir.join("storage.conf"), self.storage_conf())?;
        let out = Command::new(netcore_bin())
            .arg("--socket")
            .arg(&node.socket)
            .arg("install-cni")
            .args(&self.installed)
            .output()?;
        if !out.status.success() {
            bail!(
                "netcore install-cni failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn containers_conf(&self) -> String {
        let d = self.dir.display();
        format!(
            "[network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{d}/net.d\"\n\
             cni_plugin_dirs = [\"{d}/bin\", \"/usr/lib/cni\"]\ndefault_network = \"{net}\"\n\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\nruntime = \"runc\"\n\
             tmp_dir = \"{d}/tmp\"\nvolume_path = \"{d}/volumes\"\n",
            net = self.network
        )
    }

    fn storage_conf(&self) -> String {
        let d = self.dir.display();
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{d}/runroot\"\ngraphroot = \"{d}/root\"\n"
        )
    }

    /// `netcore install-cni --uninstall` with the options the install used.
    pub fn uninstall_cni(&self) -> Result<String> {
        let out = Command::new(netcore_bin())
            .arg("install-cni")
            .args(&self.installed)
            .arg("--uninstall")
            .output()?;
        if !out.status.success() {
            bail!("uninstall failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `podman ARGS` as this test's podman, in the node.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args([
            PODMAN_TIMEOUT_SECS,
            "unshare",
            "--mount",
            "--propagation",
            "unchanged",
        ])
        .args(["--", "sh", "-ec", WRAPPER, "podman"])
        .args(args)
        .env("NC_VARLIB", self.dir.join("varlib"))
        .env("NC_NETNS", &self.netns)
        .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"));
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("podman runs")
    }

    /// Runs podman; its stdout, or an error with what it said.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args);
        if !out.status.success() {
            bail!(
                "podman {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts container `name` (detached) from a busybox root of its own on the
    /// network; `files` are (path, content) to put in its root. Returns its ID.
    pub fn start(
        &self,
        name: &str,
        options: &[&str],
        files: &[(&str, &str)],
        cmd: &[&str],
    ) -> Result<String> {
        let rootfs = self.rootfs(name, files)?;
        let rootfs = rootfs.display().to_string();
        let mut args = vec!["run", "-d", "--name", name, "--network", &self.network];
        args.extend(["--cgroup-parent", &self.cgroup_parent]);
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        args.extend(options);
        args.extend(["--rootfs", &rootfs]);
        args.extend(cmd);
        self.run(&args)
    }

    fn rootfs(&self, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        let root = self.dir.join(format!("rootfs-{name}"));
        for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let busybox = which("busybox").context("busybox")?;
        std::fs::copy(&busybox, root.join("bin/busybox"))?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        for (path, content) in files {
            let file = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().unwrap_or(&root))?;
            std::fs::write(file, content)?;
        }
        Ok(root)
    }

    /// `podman exec NAME CMD…`.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend(cmd);
        self.output(&args)
    }

    /// The namespaces of this podman's containers (to remove any podman leaves).
    fn sandboxes(&self) -> Vec<PathBuf> {
        let Ok(ids) = self.run(&["ps", "-a", "-q", "--no-trunc"]) else {
            return Vec::new();
        };
        ids.lines()
            .filter_map(|id| {
                self.run(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id])
                    .ok()
            })
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    fn remove_cgroups(&self) {
        let name = self.cgroup_parent.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let mut candidates = vec![root.join(name)];
        if let Ok(dir) = std::fs::read_dir(root) {
            candidates.extend(dir.filter_map(|e| Some(e.ok()?.path().join(name))));
        }
        for top in candidates.into_iter().filter(|p| p.is_dir()) {
            remove_cgroup_tree(&top);
        }
    }
}

/// Removes a cgroup and its children (cgroup directories go with rmdir, deepest first).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("removing cgroup {}: {e}", dir.display());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let sandboxes = self.sandboxes();
        if let Err(e) = self.run(&["rm", "--all", "--force", "--time", "0"]) {
            eprintln!("removing podman containers: {e:#}");
        }
        for ns in sandboxes.iter().filter(|p| p.exists()) {
            eprintln!("podman left {}: removing it", ns.display());
            let _ = netcore_agent::netns::delete(ns);
        }
        self.remove_cgroups();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("removing {}: {e}", self.dir.display());
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
