//! The Vagrant lab and the shell scripts: the Vagrantfile validates, every script
//! passes shellcheck.

use std::{path::PathBuf, process::Command};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_vagrantfile_validates() {
    let out = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(repo().join("vagrant"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .expect("vagrant is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "vagrant validate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let mut scripts: Vec<PathBuf> = Vec::new();
    for dir in ["scripts", "vagrant"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "sh") {
                scripts.push(p);
            }
        }
    }
    scripts.push(repo().join(".ci/run"));
    assert!(
        scripts.len() >= 6,
        "expected the set-up, demo, node-config and lab scripts, found {scripts:?}"
    );
    let out = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("shellcheck is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
