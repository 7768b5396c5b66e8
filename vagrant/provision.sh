#!/usr/bin/env bash
# Provisions one lab VM: the same set-up script as the demo and the tests, netcore
# built from the synced repo, etcd on node 1, the agent as a systemd unit, two pods.
#   provision.sh INDEX NODE_IP ETCD_IP
set -euo pipefail
INDEX=$1 NODE_IP=$2 ETCD_IP=$3
REPO=/netcore

if ! command -v cargo >/dev/null; then
  # The lab VMs have the network; rustup's stable toolchain builds the userspace.
  apt-get update -qq && apt-get install -y -qq curl ca-certificates >/dev/null
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
export PATH="$HOME/.cargo/bin:$PATH"
bash "$REPO/scripts/setup.sh"

# The PKI pki.sh made on the host, from the synced folder.
PKI=/etc/netcore/pki
install -d -m 0700 "$PKI"
install -m 0600 "$REPO"/vagrant/pki/{ca.crt,client.crt,client.key,etcd-password} "$PKI"/
PASSWORD=$(cat "$PKI/etcd-password")

if [ "$INDEX" = 1 ]; then
  install -m 0600 "$REPO"/vagrant/pki/{server.crt,server.key} "$PKI"/
  chown etcd "$PKI"/server.* && chmod 0711 "$PKI"
  cat >/etc/default/etcd <<ETCD
ETCD_LISTEN_CLIENT_URLS="https://$ETCD_IP:2379,https://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS="https://$ETCD_IP:2379"
ETCD_CERT_FILE=$PKI/server.crt
ETCD_KEY_FILE=$PKI/server.key
ETCD_CLIENT_CERT_AUTH=true
ETCD_TRUSTED_CA_FILE=$PKI/ca.crt
ETCD
  systemctl restart etcd
  ctl() { ETCDCTL_API=3 etcdctl --endpoints "https://127.0.0.1:2379" --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" "$@"; }
  if ! ctl --user "root:$PASSWORD" auth status 2>/dev/null | grep -q 'Authentication Status: true'; then
    ctl user add "root:$PASSWORD"
    ctl user grant-role root root
    ctl auth enable
  fi
fi

(cd "$REPO" && cargo build --release --bin netcore)
install -m 0755 "$REPO/target/release/netcore" /usr/local/bin/netcore

uplink=$(ip -o -4 addr show | awk -v ip="$NODE_IP" '$4 ~ "^"ip"/" {print $2; exit}')
mkdir -p /etc/netcore
bash "$REPO/scripts/node-config.sh" "node$INDEX" "$uplink" "etcd://$ETCD_IP:2379" \
  /var/lib/netcore /sys/fs/bpf/netcore /run/netcore/netcore.sock >/etc/netcore/node.toml
cat >>/etc/netcore/node.toml <<TOML
etcd_cafile = "$PKI/ca.crt"
etcd_certfile = "$PKI/client.crt"
etcd_keyfile = "$PKI/client.key"
etcd_username = "root"
etcd_password = "$PASSWORD"
TOML
chmod 0600 /etc/netcore/node.toml

install -m 0644 "$REPO/deploy/netcore-agent.service" "$REPO/deploy/sys-fs-bpf.mount" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now netcore-agent.service

for _ in $(seq 1 100); do netcore status >/dev/null 2>&1 && break; sleep 0.2; done
for pod in a b; do
  netcore pod list --json | grep -q "\"name\": \"node$INDEX-$pod\"" || netcore pod add "node$INDEX-$pod"
done
netcore status
