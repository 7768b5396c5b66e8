//! The README's main command: the multi-node demo runs end to end, every pod reaches
//! every pod, and `--down` leaves nothing behind.

use std::{path::Path, process::Command};

use anyhow::Result;
use netcore_tests::{netcore_bin, unique};

fn demo(prefix: &str, args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .env("NETCORE", netcore_bin())
        .env("NETCORE_DEMO_PREFIX", prefix)
        .output()
        .expect("bash runs")
}

fn leftovers(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    left.extend(
        String::from_utf8_lossy(&netns.stdout)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from),
    );
    for path in [format!("/run/{prefix}"), format!("/sys/fs/bpf/{prefix}")] {
        if Path::new(&path).exists() {
            left.push(path);
        }
    }
    let ps = Command::new("pgrep")
        .args(["-f", &format!("/run/{prefix}/")])
        .output()
        .unwrap();
    left.extend(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .map(|p| format!("process {p}")),
    );
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&nft.stdout).contains("netcore") {
        left.push("an nftables table named netcore in the host namespace".into());
    }
    left
}

#[test]
fn the_demo_shows_a_full_matrix_and_down_removes_everything() -> Result<()> {
    let prefix = unique("ncd");
    let up = demo(&prefix, &["--quick", "--keep"]);
    let out = String::from_utf8_lossy(&up.stdout);
    let down = demo(&prefix, &["--down"]);
    assert!(
        up.status.success(),
        "the demo failed:\n{out}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        out.contains("all 6 pods reach each other"),
        "the whole matrix must be reachable:\n{out}"
    );
    assert!(!out.contains("FAIL"), "no pair may fail:\n{out}");
    // 3 nodes × 2 pods: 6 ordered pairs on one node, 8 between n1 and n2 (one
    // segment: direct), 16 to or from n3 (behind the router: VXLAN); the path is read
    // from the counters, so a wrong one shows as WRONG.
    assert_eq!(
        (
            out.matches("ok R").count(),
            out.matches("ok D").count(),
            out.matches("ok V").count()
        ),
        (6, 8, 16),
        "same-node pairs redirected, same-segment pairs direct, the rest over VXLAN:\n{out}"
    );
    assert!(
        out.contains("directly routed in eBPF") && out.contains("over VXLAN in eBPF"),
        "throughput figures across nodes:\n{out}"
    );
    assert!(
        out.contains("redirected-local") && out.contains("encapsulated"),
        "the counters:\n{out}"
    );
    assert!(
        down.status.success(),
        "--down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let left = leftovers(&prefix);
    assert!(
        left.is_empty(),
        "--down must leave nothing behind, found: {left:?}"
    );
    Ok(())
}
