#!/usr/bin/env bash
# netcore's multi-node demo on one host: three nodes (network namespaces; n1 and n2 on
# one underlay segment, n3 behind a router on another), one agent each, two pods per
# node, flannel's vxlan backend with DirectRouting; then a connectivity matrix, a
# throughput figure across nodes, and the data-path counters.
#
#   demo.sh [--keep] [--quick]    build the cluster, show it, remove it (or --keep it)
#   demo.sh --down                remove a cluster left by --keep
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETCORE=${NETCORE:-netcore}
# NETCORE_DEMO_PREFIX names everything the demo makes (namespaces, files, pins).
PREFIX=${NETCORE_DEMO_PREFIX:-ncdemo}
NODES=(1 2 3)
PODS=(a b)
RUN=/run/$PREFIX
PINS=/sys/fs/bpf/$PREFIX
KEEP=0 QUICK=0 DOWN=0
for arg in "$@"; do
  case $arg in
    --keep) KEEP=1 ;;
    --quick) QUICK=1 ;;
    --down) DOWN=1 ;;
    *) echo "usage: $0 [--keep] [--quick] | --down" >&2; exit 2 ;;
  esac
done

if [ "$DOWN" = 0 ]; then
  for tool in jq iperf3 ping nsenter; do
    command -v "$tool" >/dev/null || { echo "demo: $tool is missing (cargo xtask setup installs it)" >&2; exit 1; }
  done
fi

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
node_ns() { echo "$PREFIX-n$1"; }
sock() { echo "$RUN/n$1/api.sock"; }
nc_cli() { local n=$1; shift; "$NETCORE" --socket "$(sock "$n")" "$@"; }
in_node() { local n=$1; shift; nsenter --net="/run/netns/$(node_ns "$n")" "$@"; }

# SIGTERM, then SIGKILL if the agent has not exited within 5 s.
stop_agent() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
}

demo_namespaces() {
  ip netns list | awk -v p="$PREFIX-" 'index($1, p) == 1 {print $1}'
}

down() {
  for n in "${NODES[@]}"; do
    if [ -f "$RUN/n$n/agent.pid" ]; then
      stop_agent "$(cat "$RUN/n$n/agent.pid")"
    fi
  done
  # Whatever else runs in a demo namespace (iperf3 servers, pods' processes).
  for ns in $(demo_namespaces); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for n in "${NODES[@]}"; do
    if [ -f "$RUN/n$n/config.toml" ] && ip netns pids "$(node_ns "$n")" >/dev/null 2>&1; then
      in_node "$n" "$NETCORE" reset --config "$RUN/n$n/config.toml" || true
    fi
  done
  for ns in $(demo_namespaces); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$RUN" "$PINS"
}

if [ "$DOWN" = 1 ]; then
  step "removing the demo cluster"
  down
  exit 0
fi

on_error() {
  echo "demo: a step failed (see above); removing what it made" >&2
  for n in "${NODES[@]}"; do
    if [ -f "$RUN/n$n/agent.log" ]; then
      echo "--- agent n$n log (last lines)" >&2
      tail -n 5 "$RUN/n$n/agent.log" >&2
    fi
  done
  down
}
trap on_error ERR

down
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

step "underlay: a switch namespace with two segments (bridges), 192.168.60.0/24 and 192.168.61.0/24, and a router between them"
ip netns add "$PREFIX-sw"
ip netns add "$PREFIX-rt"
for seg in 0 1; do
  ip -n "$PREFIX-sw" link add "sw$seg" type bridge
  ip -n "$PREFIX-sw" link set "sw$seg" up
  ip -n "$PREFIX-sw" link add "rt$seg" type veth peer name "eth$seg" netns "$PREFIX-rt"
  ip -n "$PREFIX-sw" link set "rt$seg" master "sw$seg" up
  ip -n "$PREFIX-rt" addr add "192.168.6$seg.1/24" dev "eth$seg"
  ip -n "$PREFIX-rt" link set "eth$seg" up
done
ip netns exec "$PREFIX-rt" sysctl -qw net.ipv4.ip_forward=1

step "the cluster's network config: flannel's vxlan backend with DirectRouting (nodes on one segment talk directly, across the router over VXLAN)"
mkdir -p "$RUN/store/coreos.com/network"
echo '{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","DirectRouting":true}}' \
  >"$RUN/store/coreos.com/network/config"

for n in "${NODES[@]}"; do
  ns=$(node_ns "$n")
  seg=0; [ "$n" = 3 ] && seg=1
  step "node n$n: namespace $ns, uplink 192.168.6$seg.1$n"
  ip netns add "$ns"
  ip -n "$PREFIX-sw" link add "p$n" type veth peer name eth0 netns "$ns"
  ip -n "$PREFIX-sw" link set "p$n" master "sw$seg" up
  ip -n "$ns" addr add "192.168.6$seg.1$n/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add "192.168.6$((1 - seg)).0/24" via "192.168.6$seg.1"
  mkdir -p "$RUN/n$n"
  bash "$HERE/node-config.sh" "$PREFIX-n$n" eth0 "file://$RUN/store" "$RUN/n$n/state" "$PINS/n$n" "$(sock "$n")" \
    >"$RUN/n$n/config.toml"
  # nsenter execs the agent: $! is the agent's pid.
  nsenter --net="/run/netns/$ns" "$NETCORE" agent --config "$RUN/n$n/config.toml" >"$RUN/n$n/agent.log" 2>&1 &
  echo $! >"$RUN/n$n/agent.pid"
done

step "waiting for the agents"
for n in "${NODES[@]}"; do
  for _ in $(seq 1 300); do
    nc_cli "$n" status >/dev/null 2>&1 && break
    kill -0 "$(cat "$RUN/n$n/agent.pid")" 2>/dev/null || { cat "$RUN/n$n/agent.log" >&2; false; }
    sleep 0.1
  done
  nc_cli "$n" status >/dev/null
done

step "waiting until every node routes to every other (subnet leases in the embedded store $RUN/store)"
for n in "${NODES[@]}"; do
  for _ in $(seq 1 100); do
    [ "$(nc_cli "$n" node list --json | grep -c '"in_map": true')" -ge $((${#NODES[@]} - 1)) ] && break
    sleep 0.1
  done
  subnet=$(nc_cli "$n" status --json | sed -n 's/^  "pod_cidr": "\(.*\)",/\1/p')
  echo "  n$n leased $subnet and routes to $(nc_cli "$n" node list --json | grep -c '"in_map": true') other nodes"
done

declare -A IP NODE_OF
for n in "${NODES[@]}"; do
  for p in "${PODS[@]}"; do
    pod="$PREFIX-n$n-$p"
    step "pod $pod on n$n"
    IP[$pod]=$(nc_cli "$n" pod add "$pod" --json | sed -n 's/^  "ip": "\(.*\)",/\1/p')
    NODE_OF[$pod]=$n
  done
done
ALL=()
for n in "${NODES[@]}"; do for p in "${PODS[@]}"; do ALL+=("$PREFIX-n$n-$p"); done; done

# Packets node $1's programs have redirected into a local pod, sent directly, and
# encapsulated, so far.
paths_of() {
  nc_cli "$1" status --json |
    jq -r '(.counters | map({(.reason): .packets}) | add) as $c
           | "\($c["redirected-local"] // 0) \($c["forwarded-direct"] // 0) \($c["encapsulated"] // 0)"'
}

# One ping from pod $1 to pod $2; prints the path its request took, read from the
# source node's counters: R (redirected on the node), D (directly to the other node,
# unencapsulated) or V (VXLAN), "-" if unanswered.
ping_path() {
  local n=${NODE_OF[$1]} r0 d0 v0 r1 d1 v1
  read -r r0 d0 v0 <<<"$(paths_of "$n")"
  ip netns exec "$1" ping -q -c 1 -W 1 "${IP[$2]}" >/dev/null 2>&1 || { echo -; return; }
  read -r r1 d1 v1 <<<"$(paths_of "$n")"
  if [ "$v1" -gt "$v0" ]; then echo V; elif [ "$d1" -gt "$d0" ]; then echo D;
  elif [ "$r1" -gt "$r0" ]; then echo R; else echo "?"; fi
}

# The path a pod on node $1 should take to a pod on node $2.
expected_path() {
  if [ "$1" = "$2" ]; then echo R; elif [ "$1" = 3 ] || [ "$2" = 3 ]; then echo V; else echo D; fi
}

step "waiting until n1 and n2 have learned each other's uplink MAC (direct routes accept only the owning node's packets)"
for n in 1 2; do
  for _ in $(seq 1 100); do
    [ "$(nc_cli "$n" node list --json | jq '[.[] | select(.route == "direct" and .underlay_mac != null)] | length')" -ge 1 ] && break
    sleep 0.1
  done
done

step "connectivity matrix (ping from row to column; the path each request took, from the source node's counters: R = eBPF redirect on the node, D = directly across the segment, unencapsulated, V = VXLAN in eBPF through the router)"
printf '%-14s' ""
for dst in "${ALL[@]}"; do printf '%-12s' "${dst#"$PREFIX"-}"; done
echo
failed=0
for src in "${ALL[@]}"; do
  printf '%-14s' "${src#"$PREFIX"-}"
  for dst in "${ALL[@]}"; do
    if [ "$src" = "$dst" ]; then printf '%-12s' "-"; continue; fi
    want=$(expected_path "${NODE_OF[$src]}" "${NODE_OF[$dst]}")
    path=$(ping_path "$src" "$dst")
    if [ "$path" = "$want" ]; then
      printf '%-12s' "ok $path"
    elif [ "$path" = - ]; then
      printf '%-12s' "FAIL"; failed=$((failed + 1))
    else
      printf '%-12s' "WRONG $path"; failed=$((failed + 1))
    fi
  done
  echo
done
if [ "$failed" -gt 0 ]; then echo "demo: $failed pairs unreachable or not on the path expected" >&2; false; fi
echo "all ${#ALL[@]} pods reach each other"

secs=3; [ "$QUICK" = 1 ] && secs=1
step "throughput across nodes: $PREFIX-n1-a -> $PREFIX-n2-a and -> $PREFIX-n3-a (iperf3, ${secs}s, one TCP stream)"
ip netns exec "$PREFIX-n2-a" iperf3 -s -1 -D >/dev/null
for _ in $(seq 1 50); do ip netns exec "$PREFIX-n2-a" ss -ltn | grep -q 5201 && break; sleep 0.1; done
ip netns exec "$PREFIX-n1-a" iperf3 -c "${IP[$PREFIX-n2-a]}" -t "$secs" -f g | grep -E 'receiver' | awk '{print "  " $7 " " $8 " directly routed in eBPF"}'
ip netns exec "$PREFIX-n3-a" iperf3 -s -1 -D >/dev/null
for _ in $(seq 1 50); do ip netns exec "$PREFIX-n3-a" ss -ltn | grep -q 5201 && break; sleep 0.1; done
ip netns exec "$PREFIX-n1-a" iperf3 -c "${IP[$PREFIX-n3-a]}" -t "$secs" -f g | grep -E 'receiver' | awk '{print "  " $7 " " $8 " over VXLAN in eBPF, through the router"}'

step "node n1: status and data-path counters"
nc_cli 1 status

if [ "$KEEP" = 1 ]; then
  trap - ERR
  cat <<MSG

The cluster keeps running. Explore it:
  ip netns exec $PREFIX-n1-a ping ${IP[$PREFIX-n3-b]}
  $NETCORE --socket $(sock 2) status
  $NETCORE --socket $(sock 1) pod list
  ip netns exec $PREFIX-n1 bpftool link show
Remove it with: cargo xtask demo --down
MSG
else
  step "removing the demo cluster"
  trap - ERR
  down
fi
