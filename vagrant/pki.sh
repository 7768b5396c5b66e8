#!/usr/bin/env bash
# The lab's etcd PKI and password, made once on the host before `vagrant up` (the
# synced folder carries them to the VMs): a CA, a server certificate for etcd on
# node 1, a client certificate the agents present, and the root password. etcd
# requires both the certificate and the password: pods reach node addresses, so
# without them any pod could write leases and services.
#   pki.sh ETCD_IP
set -euo pipefail
ETCD_IP=$1
DIR="$(cd "$(dirname "$0")" && pwd)/pki"
[ -f "$DIR/client.crt" ] && exit 0
mkdir -p "$DIR"
cd "$DIR"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=netcore-lab-ca 2>/dev/null
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "/CN=netcore-lab-$who" 2>/dev/null
done
printf 'subjectAltName=IP:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' "$ETCD_IP" >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
for who in server client; do
  openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$who.crt" -days 3650 -extfile "$who.ext" 2>/dev/null
done
openssl rand -hex 16 >etcd-password
rm -f ./*.csr ./*.ext ca.srl
echo "lab PKI in $DIR"
