//! `netcore monitor --json` run against a node, its lines collected for assertions.

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{cluster::Node, netcore_bin, wait_until};

/// A `netcore monitor --json` running against a node, its lines collected.
pub struct Watcher {
    child: Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
}

impl Watcher {
    pub fn start(n: &Node, args: &[&str]) -> Result<Watcher> {
        let before = n.status()?.monitor;
        let mut child = Command::new(netcore_bin())
            .arg("--socket")
            .arg(&n.socket)
            .args(["monitor", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting netcore monitor")?;
        let out = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        // Watching once the agent counts it.
        wait_until(
            Duration::from_secs(10),
            "the monitor to be watching",
            || n.status().is_ok_and(|s| s.monitor.drops > before.drops),
        )?;
        Ok(Watcher { child, lines })
    }

    /// The first line that `pred` accepts, waiting for it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let mut found = None;
        wait_until(Duration::from_secs(10), what, || {
            found = self.lines.lock().unwrap().iter().find(|v| pred(v)).cloned();
            found.is_some()
        })
        .with_context(|| format!("lines seen: {:?}", self.lines.lock().unwrap()))?;
        Ok(found.expect("found"))
    }

    /// Ctrl-C.
    pub fn interrupt(&mut self) {
        // SAFETY: signals the child we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
