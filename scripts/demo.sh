#!/usr/bin/env bash
# Runs the aetcd demo. With an endpoint (e.g. http://127.0.0.1:2379) it talks to
# that etcd; without one it installs etcd if needed, starts a throwaway etcd on a
# free loopback port, runs the demo against it, and stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=tokio
if [ "${1:-}" = "--smol" ]; then runtime=smol; shift; fi

if [ $# -ge 1 ]; then
  exec cargo run -q -p "aetcd-$runtime" --example demo -- "$1"
fi

scripts/install-etcd.sh >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port=$(free_port)
peer_port=$(free_port)
data=$(mktemp -d)
.etcd/3.5.1/etcd --name demo --data-dir "$data/etcd" \
  --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$data/etcd.log" 2>&1 &
etcd_pid=$!
trap 'rc=$?; kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null || true; rm -rf "$data"; exit $rc' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then break; fi
  kill -0 $etcd_pid 2>/dev/null || { cat "$data/etcd.log"; echo "etcd failed to start" >&2; exit 1; }
  sleep 0.1
done
echo "started etcd 3.5.1 on http://127.0.0.1:$client_port (log: $data/etcd.log)"
cargo run -q -p "aetcd-$runtime" --example demo -- "http://127.0.0.1:$client_port"
