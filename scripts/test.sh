#!/usr/bin/env bash
# Runs the whole test suite: unit, simulation and doc tests, then the integration
# scenarios against real etcd 3.5.1 and 3.4.23 (installed first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-etcd.sh

echo "== cargo test --workspace (etcd 3.5.1)"
AETCD_ETCD_VERSION=3.5.1 cargo test --workspace

echo "== integration scenarios again, against etcd 3.4.23"
AETCD_ETCD_VERSION=3.4.23 cargo test -p aetcd-tests
