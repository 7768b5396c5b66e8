#!/usr/bin/env bash
# Prints a netcore agent config (TOML). Used by the demo and the Vagrant lab alike.
#   node-config.sh NAME UPLINK STORE STATE_DIR PIN_DIR SOCKET
set -euo pipefail
if [ "$#" -ne 6 ]; then
  echo "usage: $0 NAME UPLINK STORE STATE_DIR PIN_DIR SOCKET" >&2
  exit 2
fi
cat <<TOML
node_name = "$1"
uplink = "$2"
cluster_cidr = "10.244.0.0/16"
store = "$3"
state_dir = "$4"
pin_dir = "$5"
api_socket = "$6"
TOML
