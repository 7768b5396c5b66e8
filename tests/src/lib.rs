//! Test beds for netcore's end-to-end tests: network namespaces standing for nodes,
//! a switch and the outside world, real agents, real pods, real packets. Everything
//! made here has a unique name and is removed on drop, also when a test fails.

pub mod attached;
pub mod capture;
pub mod cluster;
pub mod cni;
pub mod echo;
pub mod etcd;
pub mod flannel;
pub mod flood;
pub mod netns;
pub mod packets;
pub mod podman;
pub mod probe;
pub mod progtest;
pub mod traffic;
pub mod watcher;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// A short name no other test (or test run) uses: `tag` + pid + counter.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{:x}x{n:x}", std::process::id())
}

/// Set (by the Linux 6.1 run) when the kernel has no nftables NAT chains (Debian's
/// User-mode Linux lacks CONFIG_NFT_NAT): agents then run without masquerade.
pub const NO_MASQUERADE_ENV: &str = "NETCORE_TEST_NO_MASQUERADE";
/// Set (by the Linux 6.1 run) when the kernel is User-mode Linux: one CPU, the BPF
/// interpreter, a thread costs milliseconds. Probing waits longer and runs fewer
/// probes at once there.
pub const SLOW_KERNEL_ENV: &str = "NETCORE_TEST_SLOW_KERNEL";

pub fn slow_kernel() -> bool {
    std::env::var_os(SLOW_KERNEL_ENV).is_some()
}
/// Extra agent config lines every test node gets (forced modes for a whole run).
pub const EXTRA_CONFIG_ENV: &str = "NETCORE_TEST_AGENT_CONFIG";

/// Agent config lines the environment of this run asks for.
pub fn kernel_config() -> String {
    let mut extra = std::env::var(EXTRA_CONFIG_ENV).unwrap_or_default();
    if std::env::var_os(NO_MASQUERADE_ENV).is_some() {
        extra.push_str("\nmasquerade = false\n");
    }
    extra
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `netcore` binary next to the test executable (built by `cargo xtask test`).
pub fn netcore_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join("netcore");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo xtask test` does)",
        bin.display()
    );
    bin
}
