#!/usr/bin/env bash
# The operators' API under load, against `fsmhost agent --dev` (one in-memory server):
# Consul KV writes and reads (default and ?stale) at 64 concurrent clients, the generic
# /v1/apply path for comparison, and 10,000 blocking reads held open at once (server memory
# per waiter, and the time for one write to wake them all). All in one run.
#
#   bash tests/bench-api.sh
#   CLIENTS=16 REQUESTS=20000 WATCHERS=2000 bash tests/bench-api.sh
#
# Builds fsmhost and loadgen in release.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
REQUESTS=${REQUESTS:-40000}
KEYSPACE=${KEYSPACE:-10000}
WATCHERS=${WATCHERS:-10000}

cargo build --release -p fsmhost --bin fsmhost -p fsmhost-tests --bin loadgen >&2
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FSMHOST="$TARGET_DIR/release/fsmhost"
LOADGEN="$TARGET_DIR/release/loadgen"

# Every blocked read holds a connection: one descriptor in the server, one in loadgen.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((WATCHERS + 256)) ]; then
  echo "open-file limit $(ulimit -n) is below what $WATCHERS waiters need; set WATCHERS lower" >&2
  exit 1
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port)
SERVER=$(port)
"$FSMHOST" agent --dev --ports-http "$HTTP" --ports-server "$SERVER" --log-level warn &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP/v1/status/leader" | grep -q ':' && break
  sleep 0.1
done

echo "machine: $(nproc) cores, $(uname -r)"
ADDR="127.0.0.1:$HTTP"
run() { "$LOADGEN" fsmhost --addr "$ADDR" --clients "$CLIENTS" "$@"; }
# The keys the reads use are written first (KEYSPACE of them, one client).
"$LOADGEN" fsmhost --addr "$ADDR" --clients 1 --requests "$KEYSPACE" --op kv-put >/dev/null
run --requests "$REQUESTS" --op kv-put
run --requests "$REQUESTS" --op apply
run --requests "$REQUESTS" --op kv-get --keyspace "$KEYSPACE"
run --requests "$REQUESTS" --op kv-get-stale --keyspace "$KEYSPACE"
"$LOADGEN" watchers --addr "$ADDR" --count "$WATCHERS" --pid "$PID"
