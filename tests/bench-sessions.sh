#!/usr/bin/env bash
# Sessions and locks on a 3-server cluster, one run (BENCHMARKS.md, "Sessions"):
#   - session create + acquire + release (+ destroy) cycles per second, CLIENTS clients;
#   - lock hand-off latency between two clients, p50 and p99, HANDOFFS hand-offs;
#   - reaping TOMBSTONES tombstones after a short tombstone_ttl: the time taken and the
#     latency of a probe write every 20 ms meanwhile (how long applies stall).
#
#   bash tests/bench-sessions.sh
#   CLIENTS=8 SECONDS_=20 TOMBSTONES=100000 bash tests/bench-sessions.sh
#
# Builds fsmhost and lockbench in release.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/bench-lib.sh

CLIENTS=${CLIENTS:-4}
SECONDS_=${SECONDS_:-20}
HANDOFFS=${HANDOFFS:-300}
TOMBSTONES=${TOMBSTONES:-1000000}

bench_setup
cargo build --release -p fsmhost-tests --bin lockbench >&2
LOCKBENCH="${CARGO_TARGET_DIR:-target}/release/lockbench"

# A TTL long enough for the fill to finish before the first bucket is due.
FSMHOST_TOP='tombstone_ttl = "2m"' start_fsmhost
# Sessions default to the serving server's node: wait for the leader's reconcile.
for _ in $(seq 1 150); do
  n=$(curl -sf "http://$FSMHOST_LEADER/v1/health/service/consul?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0)
  [ "$n" = 3 ] && break
  sleep 0.2
done
echo "machine: $(nproc) cores; fsmhost 3 servers on loopback"
"$LOCKBENCH" "$FSMHOST_LEADER" cycles "$CLIENTS" "$SECONDS_"
"$LOCKBENCH" "$FSMHOST_LEADER" handoff "$HANDOFFS"
"$LOCKBENCH" "$FSMHOST_LEADER" fill reap/ "$TOMBSTONES"
"$LOCKBENCH" "$FSMHOST_LEADER" reap reap/
