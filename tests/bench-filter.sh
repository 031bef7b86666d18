#!/usr/bin/env bash
# ?filter= end to end (BENCHMARKS.md, "Consul wire compatibility"): one server
# (`agent --dev`), 10,000 instances of one service registered, then GET
# /v1/catalog/service/web unfiltered and with a filter keeping about a third of them,
# alternating, RUNS times each; medians and their ratio.
#
#   bash tests/bench-filter.sh
#   INSTANCES=2000 RUNS=11 bash tests/bench-filter.sh
#
# Builds fsmhost in release.
set -euo pipefail
cd "$(dirname "$0")/.."
INSTANCES=${INSTANCES:-10000}
RUNS=${RUNS:-21}
cargo build --release -p fsmhost --bin fsmhost >&2
FSMHOST="${CARGO_TARGET_DIR:-target}/release/fsmhost"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FSMHOST" agent --dev --http-port "$PORT" --server-port "$SPORT" >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
echo "machine: $(nproc) cores; fsmhost agent --dev"
python3 tests/bench_filter.py "127.0.0.1:$PORT" "$INSTANCES" "$RUNS"
