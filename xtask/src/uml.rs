//! The end-to-end suite on Linux 6.1 (Debian 12's kernel), run in User-mode Linux:
//! Debian's `user-mode-linux` is that kernel built as a program, so it boots here
//! with no hypervisor, with the host's files as a read-only root. The tests' own
//! namespaces, links, programs and agents then live inside the 6.1 kernel.
//!
//! The host side writes a plan (which test binaries, which modules), boots the
//! kernel with this very `xtask` binary as its init, and reads the console. Inside,
//! init (PID 1) mounts what a system needs, loads the modules, starts a runner
//! process that runs the test binaries one after another, reaps every orphan until the
//! runner is done, and powers off.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Debian's UML kernel and its modules.
const KERNEL: &str = "/usr/bin/linux.uml";
const MODULES: &str = "/usr/lib/uml/modules";
/// Set on the kernel command line: the plan init follows.
const PLAN_ENV: &str = "NETCORE_UML_PLAN";
/// Set by init for the runner process.
const RUNNER_ENV: &str = "NETCORE_UML_RUNNER";
/// The runner's last line: `netcore-uml: done, N failed`.
const DONE: &str = "netcore-uml: done, ";
/// Memory for the UML kernel (backed by a file in the host's /dev/shm, used lazily).
const MEMORY: &str = "3072M";
/// A whole run may take this long before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// What the data path and the tests need that Debian builds as modules.
const NEEDED_MODULES: &[&str] = &[
    "veth",
    "vxlan",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "nf_tables",
];

#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Module files (relative to the kernel's module directory) in load order.
    pub modules: Vec<String>,
    pub module_dir: PathBuf,
    pub runs: Vec<TestRun>,
}

/// One test binary, its arguments (filters, `--skip`) and environment.
#[derive(Debug, Serialize, Deserialize)]
pub struct TestRun {
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What the console said.
#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub failed_binaries: Option<u32>,
}

/// True when this process is the UML kernel's init or the runner it started.
pub fn is_inside() -> bool {
    std::env::var_os(PLAN_ENV).is_some() && (std::process::id() == 1 || is_runner())
}

fn is_runner() -> bool {
    std::env::var_os(RUNNER_ENV).is_some()
}

/// The kernel release of the UML modules installed (e.g. "6.1.176").
fn release() -> Result<String> {
    let dir = std::fs::read_dir(MODULES).with_context(|| {
        format!("{MODULES}: is user-mode-linux installed? (`cargo xtask setup`)")
    })?;
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .context("no UML kernel modules")
}

/// Boots the UML kernel on `plan` and streams its console to stdout.
pub fn boot(plan: &Plan, work: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(work)?;
    let plan_path = work.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(plan)?)?;
    let init = std::env::current_exe()?;
    let mut child = Command::new(KERNEL)
        .args([
            &format!("mem={MEMORY}"),
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            "quiet",
            &format!("init={}", init.display()),
            "con=null",
            "con0=fd:0,fd:1",
            &format!("{PLAN_ENV}={}", plan_path.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {KERNEL}"))?;
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            std::thread::sleep(Duration::from_secs(1));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return;
            }
        }
        eprintln!("uml: no end after {TIMEOUT:?}: killing the kernel");
        // SAFETY: kills the UML kernel we started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut outcome = Outcome::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        // The console ends lines with \r\n.
        let line = line.trim_end_matches('\r').to_string();
        println!("uml| {line}");
        if let Some(rest) = line.strip_prefix(DONE) {
            outcome.failed_binaries = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
        outcome.lines.push(line);
    }
    child.wait()?;
    let _ = watchdog.join();
    Ok(outcome)
}

/// Module files to load for `NEEDED_MODULES`, dependencies first, from modules.dep.
pub fn module_plan() -> Result<(PathBuf, Vec<String>)> {
    let dir = Path::new(MODULES).join(release()?);
    let deps = std::fs::read_to_string(dir.join("modules.dep"))
        .with_context(|| format!("reading {}", dir.join("modules.dep").display()))?;
    let table: Vec<(String, Vec<String>)> = deps
        .lines()
        .filter_map(|l| {
            let (module, rest) = l.split_once(':')?;
            Some((
                module.to_string(),
                rest.split_whitespace().map(String::from).collect(),
            ))
        })
        .collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in NEEDED_MODULES {
        let file = format!("/{name}.ko");
        let Some((module, needs)) = table.iter().find(|(m, _)| m.ends_with(&file)) else {
            bail!("the UML kernel has no module {name}");
        };
        // modules.dep lists what a module needs, the deepest last.
        for m in needs.iter().rev().chain(std::iter::once(module)) {
            if seen.insert(m.clone()) {
                order.push(m.clone());
            }
        }
    }
    Ok((dir, order))
}

/// PID 1 inside UML, or the runner it starts.
pub fn inside() -> ! {
    let result = if is_runner() { runner() } else { init() };
    if let Err(e) = result {
        println!("netcore-uml: {e:#}");
        println!("{DONE}1 failed");
    }
    if std::process::id() == 1 {
        power_off();
    }
    std::process::exit(0)
}

fn plan() -> Result<Plan> {
    let path = std::env::var(PLAN_ENV)?;
    let text = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_slice(&text)?)
}

fn init() -> Result<()> {
    mount_all()?;
    let plan = plan()?;
    for m in &plan.modules {
        load_module(&plan.module_dir.join(m))?;
    }
    run_shell("ip link set lo up")?;
    let runner = Command::new(std::env::current_exe()?)
        .env(RUNNER_ENV, "1")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/tmp")
        .env("TMPDIR", "/tmp")
        // No nftables NAT chains in this kernel (CONFIG_NFT_NAT is off).
        .env("NETCORE_TEST_NO_MASQUERADE", "1")
        // One CPU and the BPF interpreter (`netcore_tests::SLOW_KERNEL_ENV`).
        .env("NETCORE_TEST_SLOW_KERNEL", "1")
        .spawn()
        .context("starting the runner")?;
    reap_until(runner.id() as i32);
    Ok(())
}

/// Runs every test binary; a binary that fails counts once.
fn runner() -> Result<()> {
    let plan = plan()?;
    println!(
        "netcore-uml: Linux {} ready; {} test binaries",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim(),
        plan.runs.len()
    );
    let mut failed = 0;
    for run in &plan.runs {
        println!("netcore-uml: running {} {:?}", run.exe.display(), run.env);
        let status = Command::new(&run.exe)
            .args(&run.args)
            .args(["--test-threads", "1"])
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_BACKTRACE", "0")
            .status()
            .with_context(|| format!("running {}", run.exe.display()))?;
        if !status.success() {
            failed += 1;
        }
    }
    println!("{DONE}{failed} failed");
    Ok(())
}

/// proc, sys, cgroup v2 (the socket hooks' root), fresh tmpfs for /run and /tmp (the
/// root is the host's, read-only), and bpffs.
fn mount_all() -> Result<()> {
    let mounts: [(&str, &str, &str); 6] = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("bpf", "/sys/fs/bpf", "bpf"),
    ];
    for (src, target, fstype) in mounts {
        mount(src, target, fstype, None)?;
    }
    // A checkout under /tmp or /run (a CI clone, say) would be hidden by the fresh
    // tmpfs: the host's directory is mounted back at its own path.
    let root = crate::root();
    if ["/tmp", "/run"].iter().any(|t| root.starts_with(t)) {
        let path = root.to_string_lossy().into_owned();
        std::fs::create_dir_all(&root).with_context(|| format!("creating {path}"))?;
        mount("none", &path, "hostfs", Some(&path))?;
    }
    Ok(())
}

fn mount(src: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src_c, target_c, fstype_c) = (c(src), c(target), c(fstype));
    let data_c = data.map(c);
    let data_ptr = data_c
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: valid C strings; `data` is a C string or null.
    let r = unsafe {
        libc::mount(
            src_c.as_ptr(),
            target_c.as_ptr(),
            fstype_c.as_ptr(),
            0,
            data_ptr,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            bail!("mounting {fstype} on {target}: {e}");
        }
    }
    Ok(())
}

fn load_module(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    use std::os::fd::AsRawFd;
    let params = c"";
    // SAFETY: finit_module with an open module file and empty parameters.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            bail!("loading {}: {e}", path.display());
        }
    }
    Ok(())
}

fn run_shell(script: &str) -> Result<()> {
    let st = Command::new("sh").args(["-c", script]).status()?;
    if !st.success() {
        bail!("`{script}` failed ({st})");
    }
    Ok(())
}

/// As init: reaps every child (orphans of the tests included) until `pid` exits.
fn reap_until(pid: i32) {
    loop {
        let mut status = 0;
        // SAFETY: waits for any child; status is a valid out pointer.
        let got = unsafe { libc::waitpid(-1, &mut status, 0) };
        if got == pid
            || (got < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
        {
            return;
        }
    }
}

fn power_off() -> ! {
    // SAFETY: sync and reboot have no preconditions; init may power off.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    std::process::exit(0)
}
