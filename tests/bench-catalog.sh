#!/usr/bin/env bash
# The catalog plugin on a 3-server fsmhost cluster on loopback: register throughput and
# latency (`PUT /v1/catalog/register`, one node + one service + one check per request) next
# to KV writes (`PUT /v1/kv/<key>`) measured in the same run, then the latency of reading a
# service with 1,000 instances (`GET /v1/health/service/<name>`, `/v1/catalog/service/<name>`).
#
#   bash tests/bench-catalog.sh                  # CLIENTS="1 16 64" by default
#   CLIENTS="1 64" REQUESTS=5000 bash tests/bench-catalog.sh
#
# Builds fsmhost and loadgen in release.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1 16 64"}
INSTANCES=${INSTANCES:-1000}
READS=${READS:-500}
requests_for() { if [ -n "${REQUESTS:-}" ]; then echo "$REQUESTS"; elif [ "$1" -le 1 ]; then echo 1000; else echo 10000; fi; }

source tests/bench-lib.sh
bench_setup
start_fsmhost
LEADER=$FSMHOST_LEADER
echo "machine: $(nproc) cores, $(uname -r); leader $LEADER" >&2

rows=()
run() { # label, loadgen args...
  local label=$1; shift
  local out
  out=$("$LOADGEN" fsmhost --addr "$LEADER" "$@")
  echo "$out" | head -1 >&2
  rows+=("$(printf '| %s | %s | %.0f | %.2f | %.2f | %.2f |' "$label" \
    "$(echo "$out" | json_field clients)" "$(echo "$out" | json_field throughput)" \
    "$(echo "$out" | json_field p50_ms)" "$(echo "$out" | json_field p99_ms)" "$(echo "$out" | json_field max_ms)")")
}

for c in $CLIENTS; do
  run "catalog register" --op catalog-register --service "reg$c" --clients "$c" --requests "$(requests_for "$c")"
  run "kv put" --op kv-put --clients "$c" --requests "$(requests_for "$c")"
done
run "register $INSTANCES instances of big" --op catalog-register --service big --clients 1 --requests "$INSTANCES"
run "health/service/big ($INSTANCES instances)" --op health-service --service big --clients 1 --requests "$READS"
run "catalog/service/big ($INSTANCES instances)" --op catalog-service --service big --clients 1 --requests "$READS"
n=$(curl -sf "http://$LEADER/v1/catalog/service/big" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "instances of big: $n" >&2
[ "$n" = "$INSTANCES" ] || { echo "expected $INSTANCES instances of big, found $n" >&2; exit 1; }

printf '\n| operation | clients | requests/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n'
printf '%s\n' "${rows[@]}"
