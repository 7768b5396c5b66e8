//! `cargo xtask …`: set-up, build, tests, demo and benchmark, each one command.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod uml;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh machine lacks (idempotent).
    Setup,
    /// Set up, build, and run every test: on this kernel, then the end-to-end suite
    /// again inside User-mode Linux 6.1 (Debian 12's kernel).
    Test {
        /// Only on this kernel.
        #[arg(long)]
        no_uml: bool,
        /// Passed to `cargo test` after `--` (e.g. a test name filter); the Linux 6.1
        /// run is skipped when a filter is given.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the Linux 6.1 part of the suite only (User-mode Linux).
    TestUml {
        /// Only these test binaries, each optionally with a test name filter
        /// (`overlay:flannel`).
        only: Vec<String>,
    },
    /// Set up, build, and run the multi-node demo on this host.
    Demo {
        /// Leave the cluster running.
        #[arg(long)]
        keep: bool,
        /// Remove a cluster left by `--keep`.
        #[arg(long)]
        down: bool,
        /// Shorter traffic figures (for the test suite).
        #[arg(long)]
        quick: bool,
    },
    /// Build, set up, and benchmark every datapath side by side (see the README).
    Bench(bench::BenchArgs),
    /// The benchmark's request/response server (one connection, then exit).
    #[command(hide = true)]
    RrServer { port: u16 },
    /// The benchmark's request/response client: prints JSON.
    #[command(hide = true)]
    RrClient {
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// The benchmark's connection-rate server (echoes each connection; until killed).
    #[command(hide = true)]
    CpsServer { port: u16 },
    /// The benchmark's connection-rate client: prints JSON.
    #[command(hide = true)]
    CpsClient {
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    if uml::is_inside() {
        uml::inside();
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Test { no_uml, args } => {
            setup()?;
            build()?;
            let mut cmd = cargo();
            cmd.args(["test", "--workspace", "--no-fail-fast"]);
            let filtered = !args.is_empty();
            if filtered {
                cmd.arg("--").args(args);
            }
            let host = run_tests(&mut cmd, filtered);
            let old_kernel = if no_uml || filtered {
                Ok(())
            } else {
                test_uml(&[])
            };
            host.and(old_kernel)
        }
        Cmd::TestUml { only } => {
            setup()?;
            build()?;
            test_uml(&only)
        }
        Cmd::Demo { keep, down, quick } => {
            if !down {
                setup()?;
                build()?;
            }
            let mut cmd = Command::new("bash");
            cmd.arg(root().join("scripts/demo.sh"));
            cmd.env("NETCORE", root().join("target/debug/netcore"));
            if down {
                cmd.arg("--down");
            }
            if keep {
                cmd.arg("--keep");
            }
            if quick {
                cmd.arg("--quick");
            }
            status(&mut cmd, "the demo")
        }
        Cmd::Bench(args) => bench::main(args),
        Cmd::RrServer { port } => bench::rr::server(port, std::time::Duration::from_secs(60)),
        Cmd::RrClient { addr, seconds } => {
            let r = bench::rr::client(addr, seconds)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::CpsServer { port } => bench::cps::server(port),
        Cmd::CpsClient { addr, seconds } => {
            let r = bench::cps::client(addr, seconds)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn setup() -> Result<()> {
    status(
        Command::new("bash").arg(root().join("scripts/setup.sh")),
        "scripts/setup.sh",
    )
}

/// The binaries the tests and the demo run (the eBPF object is built by build.rs).
fn build() -> Result<()> {
    status(
        cargo().args(["build", "--workspace", "--bins"]),
        "cargo build",
    )
}

/// Runs `cargo test`, passing its output through, and closes with one summary line
/// over every test binary.
/// Runs `cargo test` (all of it: a failing binary does not stop the others), then,
/// unless `filtered`, the forced-mode runs; one summary line over all.
fn run_tests(cmd: &mut Command, filtered: bool) -> Result<()> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let mut total = Totals::default();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        total.add(&line);
    }
    let st = child.wait()?;
    let forced = if filtered {
        Ok(())
    } else {
        test_forced_modes(&mut total)
    };
    println!(
        "tests: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );
    if !st.success() || total.failed > 0 {
        bail!("tests failed ({st})");
    }
    forced
}

/// The test binaries that also run on Linux 6.1, what each must skip there, and the
/// agents' forced modes (config lines; by default legacy TC is what 6.1 gets).
const UML_SUITE: &[(&str, &[&str], &str)] = &[
    ("packets", &[], ""),
    ("kernel", &[], ""),
    // Debian's UML kernel has no nftables NAT chains (CONFIG_NFT_NAT is off).
    ("node", &["pods_reach_the_outside_through_masquerade"], ""),
    ("overlay", &[], ""),
    // The forwarding pods DNAT with nftables: no NAT chains in this kernel.
    ("offload", &["a_merged_packet_a_pod_forwards"], ""),
    ("services", &[], ""),
    ("conntrack", &[], ""),
    ("flood", &[], ""),
    ("direct", &[], ""),
    ("monitor", &[], ""),
    ("policy", &[], ""),
    // The readiness test runs a real etcd: not in this single-CPU kernel.
    ("metrics", &["readyz_waits_for_the_lease"], ""),
    ("overlay", &[], DEVICE_DECAP),
];

const DEVICE_DECAP: &str = "decap = \"device\"";
const LEGACY_TC_DEVICE_DECAP: &str = "attach = \"tc\"\ndecap = \"device\"";
const TC_DECAP: &str = "decap = \"tc\"";

/// End-to-end binaries run again on this kernel with the agents' forced modes: the
/// older attach path and the other decapsulations.
const FORCED_MODES: &[(&str, &str)] = &[
    ("node", LEGACY_TC_DEVICE_DECAP),
    ("overlay", LEGACY_TC_DEVICE_DECAP),
    ("services", DEVICE_DECAP),
    ("overlay", TC_DECAP),
];

/// Runs the `FORCED_MODES` binaries; results go into `total`.
fn test_forced_modes(total: &mut Totals) -> Result<()> {
    let exes = test_executables()?;
    let mut failed = Vec::new();
    for (name, config) in FORCED_MODES {
        let exe = exe_of(&exes, name)?;
        println!("forced modes: {name} with `{}`", config.replace('\n', "; "));
        let mut child = Command::new(exe)
            .args(["--test-threads", "1"])
            .env(AGENT_CONFIG_ENV, config)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", exe.display()))?;
        use std::io::BufRead;
        let out = child.stdout.take().expect("piped");
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            total.add(&line);
        }
        if !child.wait()?.success() {
            failed.push(format!("{name} ({})", config.replace('\n', "; ")));
        }
    }
    if !failed.is_empty() {
        bail!("tests failed in forced modes: {}", failed.join(", "));
    }
    Ok(())
}

/// The tests' variable for extra agent config lines (`netcore_tests::EXTRA_CONFIG_ENV`).
const AGENT_CONFIG_ENV: &str = "NETCORE_TEST_AGENT_CONFIG";

fn exe_of<'a>(exes: &'a [(String, PathBuf)], name: &str) -> Result<&'a PathBuf> {
    exes.iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
        .with_context(|| format!("no test binary {name}"))
}

/// The end-to-end suite inside User-mode Linux 6.1 (or the binaries in `only`, each
/// `name` or `name:filter`).
fn test_uml(only: &[String]) -> Result<()> {
    let exes = test_executables()?;
    let mut runs = Vec::new();
    for (name, skip, config) in UML_SUITE {
        let wanted = only.iter().find(|o| o.split(':').next() == Some(name));
        if !only.is_empty() && wanted.is_none() {
            continue;
        }
        let exe = exe_of(&exes, name)?;
        let mut args = Vec::new();
        if let Some((_, filter)) = wanted.and_then(|w| w.split_once(':')) {
            args.push(filter.to_string());
        }
        for s in *skip {
            args.extend(["--skip".to_string(), s.to_string()]);
        }
        let env = vec![(AGENT_CONFIG_ENV.to_string(), config.to_string())];
        runs.push(uml::TestRun {
            exe: exe.clone(),
            args,
            env,
        });
    }
    let (module_dir, modules) = uml::module_plan()?;
    println!(
        "uml: booting Linux 6.1 (User-mode Linux) once for each of {} test binaries",
        runs.len()
    );
    // A boot per binary: UML 6.1 can panic purging the vmalloc space after many BPF
    // programs were loaded and freed in one boot (flush_tlb_kernel failed, errno
    // -22); a boot per binary keeps each boot's share small.
    let mut total = Totals::default();
    let mut failed_binaries = 0;
    for run in runs {
        let plan = uml::Plan {
            modules: modules.clone(),
            module_dir: module_dir.clone(),
            runs: vec![run],
        };
        let outcome = uml::boot(&plan, &root().join("target/uml"))?;
        outcome.lines.iter().for_each(|l| total.add(l));
        failed_binaries += outcome.failed_binaries.unwrap_or_else(|| {
            println!("uml: the Linux 6.1 run ended before its tests did (see uml| lines)");
            1
        });
    }
    println!(
        "tests on Linux 6.1 (UML): {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );
    match failed_binaries {
        n if n > 0 || total.failed > 0 => bail!("tests failed on Linux 6.1"),
        _ if total.passed == 0 => bail!("no test ran on Linux 6.1"),
        _ => Ok(()),
    }
}

/// The workspace's test executables by target name (built if needed).
fn test_executables() -> Result<Vec<(String, PathBuf)>> {
    let out = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the tests")?;
    if !out.status.success() {
        bail!("building the tests failed");
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str())
        else {
            continue;
        };
        if v["profile"]["test"] == true {
            exes.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(exes)
}

/// Sums libtest's "test result:" lines.
#[derive(Default, Debug, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

fn status(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("starting {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_libtest_result_lines() {
        let mut t = super::Totals::default();
        t.add("test result: ok. 9 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.64s");
        t.add("test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        t.add("running 3 tests");
        assert_eq!(
            t,
            super::Totals {
                passed: 11,
                failed: 3,
                ignored: 1
            }
        );
    }
}
