//! Builds netcore-ebpf for `bpfel-unknown-none` with the eBPF toolchain that
//! `scripts/setup.sh` installs (Debian's rustc-web with its library sources, and
//! bpf-linker), and hands the object's path to the agent through `NETCORE_EBPF_OBJ`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Debian's rustc-web: the only toolchain here with `rust-src` for `-Z build-std`.
const EBPF_RUSTC: &str = "/usr/bin/rustc";
const EBPF_CARGO: &str = "/usr/bin/cargo";

fn main() -> Result<()> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("..");
    let ebpf_dir = root.join("netcore-ebpf");
    for dir in ["netcore-ebpf/src", "netcore-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("Cargo.toml").display()
    );

    let target_dir = root.join("target").join("bpf");
    let obj = build_ebpf(&ebpf_dir, &target_dir)?;
    println!("cargo:rustc-env=NETCORE_EBPF_OBJ={}", obj.display());
    Ok(())
}

fn build_ebpf(ebpf_dir: &Path, target_dir: &Path) -> Result<PathBuf> {
    for tool in [EBPF_RUSTC, EBPF_CARGO] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing: run scripts/setup.sh (or `cargo xtask setup`) first");
        }
    }
    let mut cmd = Command::new(EBPF_CARGO);
    cmd.current_dir(ebpf_dir)
        .args(["build", "--release", "--target-dir"])
        .arg(target_dir);
    // The outer cargo's variables describe the host build: keep none of them.
    for (key, _) in env::vars() {
        let host_build = key.starts_with("CARGO") || key.starts_with("RUST");
        if host_build && key != "CARGO_HOME" && key != "RUSTUP_HOME" {
            cmd.env_remove(key);
        }
    }
    let path = env::var("PATH").unwrap_or_default();
    let cargo_home = env::var("CARGO_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cargo",
            env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    cmd.env("PATH", format!("{cargo_home}/bin:{path}"))
        .env("RUSTC", EBPF_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf",
        );
    let status = cmd.status().context("running the eBPF build")?;
    if !status.success() {
        bail!("building netcore-ebpf failed ({status})");
    }
    Ok(target_dir.join("bpfel-unknown-none/release/netcore"))
}
