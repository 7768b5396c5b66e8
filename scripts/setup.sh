#!/usr/bin/env bash
# Installs what netcore needs on a fresh Debian 12 machine, and skips what is there:
# Debian packages (eBPF toolchain, network tools), bpf-linker built for LLVM 22, and
# bpffs mounted. A second run takes seconds.
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
PACKAGES=(
  # eBPF toolchain: Debian's rustc with library sources (-Z build-std), LLVM for bpf-linker
  rustc-web cargo-web rust-web-src llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev
  # what the agent and the tests drive; etcd for the cluster store (the client's
  # build compiles etcd's protos)
  iproute2 nftables util-linux etcd-server etcd-client protobuf-compiler libprotobuf-dev
  # traffic, captures and benchmarks
  iperf3 socat iputils-ping tcpdump bpftool ethtool jq curl
  # the metrics tests: the Prometheus project's own parsers
  python3-prometheus-client
  # the lab's checks: Vagrantfile validation, shell linting
  vagrant shellcheck
  # the CNI tests: a real runtime (podman's CNI backend with runc), the reference
  # plugins (portmap, bandwidth, tuning) and a static busybox for container roots
  podman runc containernetworking-plugins busybox-static iptables
  # the suite on Linux 6.1: Debian 12's kernel as a program (User-mode Linux)
  user-mode-linux
  # the benchmark's chart, and its iptables network-policy bed (kube-router's ipsets)
  gnuplot-nox ipset
)

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it installs packages and mounts bpffs)"; exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! "$CARGO_BIN/bpf-linker" --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION for LLVM 22 (about 2 minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
    --no-default-features --features llvm-22 --quiet
fi

if ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
