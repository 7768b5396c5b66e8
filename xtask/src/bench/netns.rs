//! A network namespace the benchmark owns: made with `ip netns add`, IPv6 off (no
//! router solicitations or DAD in the measurements), every process inside killed and
//! the namespace deleted on drop, also when the benchmark fails.

use std::process::Command;

use anyhow::Result;

use super::cmd;

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Self> {
        cmd::run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns { name: name.into() };
        ns.sh("ip link set lo up
             sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")?;
        Ok(ns)
    }

    /// Runs a shell script inside the namespace.
    pub fn sh(&self, script: &str) -> Result<String> {
        cmd::sh(&self.name, script)
    }

    /// `/run/netns/NAME`, for `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = cmd::output(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// SIGKILLs every process in a named namespace.
pub fn kill_all_in(name: &str) {
    let Ok(out) = cmd::output(Command::new("ip").args(["netns", "pids", name])) else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            // SAFETY: kill(2) with a pid read from `ip netns pids` and a constant signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes namespaces left by benchmark runs whose process is gone (a SIGKILLed run
/// cannot clean up after itself); names are `ncb<pid>-…`.
pub fn sweep_stale(tag: &str) {
    let Ok(out) = cmd::output(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(tag)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            drop(Netns { name: name.into() });
        }
    }
}
