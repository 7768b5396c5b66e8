//! A network namespace owned by a test: created with `ip netns add`, every process
//! in it killed and the namespace deleted on drop.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.into(),
            path: PathBuf::from("/run/netns").join(name),
        };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// A handle on a namespace someone else owns (a pod's, which its agent removes):
    /// dropping it deletes nothing.
    pub fn borrowed(name: &str, path: &std::path::Path) -> std::mem::ManuallyDrop<Netns> {
        std::mem::ManuallyDrop::new(Netns {
            name: name.into(),
            path: path.into(),
        })
    }

    /// Runs a shell script inside the namespace; fails with its output when it fails.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = run(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-ec", script]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command inside the namespace and returns whatever happened.
    pub fn output(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        netcore_agent::netns::run_in(&self.path, f).expect("entering the test namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Kills every process in a named namespace.
pub fn kill_all_in(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
    }
}

pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}
