#!/usr/bin/env bash
# Pings every lab pod from every lab pod, across the VMs.
set -euo pipefail
cd "$(dirname "$0")"
NODES=(node1 node2 node3)
declare -A IPS
for n in "${NODES[@]}"; do
  IPS[$n]=$(vagrant ssh "$n" -c "sudo netcore pod list --json" 2>/dev/null | sed -n 's/^    "ip": "\(.*\)",/\1/p' | tr '\n' ' ')
done
failed=0
for src in "${NODES[@]}"; do
  for pod in a b; do
    for dst_node in "${NODES[@]}"; do
      for ip in ${IPS[$dst_node]}; do
        if vagrant ssh "$src" -c "sudo ip netns exec $src-$pod ping -c1 -W1 $ip" >/dev/null 2>&1; then
          echo "ok   $src-$pod -> $ip ($dst_node)"
        else
          echo "FAIL $src-$pod -> $ip ($dst_node)"; failed=$((failed + 1))
        fi
      done
    done
  done
done
[ "$failed" -eq 0 ] && echo "every lab pod reaches every lab pod"
exit "$failed"
