//! Running commands: in the host or inside a named network namespace, failing with
//! the command's own output, and spawning long-running helpers.

use std::process::{Child, Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// `ip netns exec NS ARGS…` as a command to add to.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// Runs `cmd` and returns its stdout; fails with stdout and stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` and returns whatever happened (for commands allowed to fail).
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", describe(cmd)))
}

/// Runs a shell script (`sh -ec`) inside namespace `ns`.
pub fn sh(ns: &str, script: &str) -> Result<String> {
    run(&mut in_ns(ns, &["sh", "-ec", script]))
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    format!("`{s}`")
}

/// A background helper killed (and reaped) when dropped.
pub struct Process {
    pub child: Child,
    pub what: String,
}

impl Process {
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", describe(cmd)))?;
        Ok(Process {
            child,
            what: what.into(),
        })
    }

    /// Fails with the helper's stderr when it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            bail!("{} exited ({st}): {}", self.what, err.trim());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
