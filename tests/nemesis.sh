#!/usr/bin/env bash
# The nemesis suite for any duration: a 3-server fsmhost cluster (each server in its own
# network namespace when run as root), 12 clients on 8 keys through /v1/kv, faults one at a
# time (SIGKILL of the leader, a follower or all; SIGSTOP of the leader; partition of the
# leader or a follower), then the history checked for linearizability, the indexes, the
# servers' state hashes and their logs.
#
#   bash tests/nemesis.sh                              # 10 minutes, ?consistent reads
#   DURATION=3600 READS=mixed bash tests/nemesis.sh     # an hour, default and consistent
#   FAULTS=kill-leader,pause-leader SEED=7 OUT=/tmp/n1 bash tests/nemesis.sh
#   bash tests/nemesis.sh --clients 24 --think-ms 0     # any other option of the binary
#
# READS: consistent | default | mixed. FAULTS: a comma-separated list of kill-leader,
# pause-leader, partition-leader, kill-follower, partition-follower, kill-all (or all).
# Without root, partitions are not exercised, and the report says so.
# Keeps OUT (default target/nemesis/<date>-<seed>): history.jsonl (one operation per line,
# fsmhost-lincheck's format; `cargo run -p fsmhost-lincheck -- FILE` checks it again),
# ops.jsonl (the server each operation went to and its answer), report.txt (verdict, a
# failing key's report, the failover table, counts, anomalies), failover.md and logs/.
# Exits 1 when the run found a problem.
# Builds fsmhost and the nemesis binary in release.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
READS=${READS:-consistent}
FAULTS=${FAULTS:-all}
SEED=${SEED:-$(date +%s)}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/nemesis/$(date +%Y%m%d-%H%M%S)-$SEED}

cargo build --release -p fsmhost-tests --bin nemesis --bin fsmhost-node
mkdir -p "$OUT"
echo "nemesis: ${DURATION}s, reads $READS, faults $FAULTS, seed $SEED, outputs in $OUT"
status=0
"$TARGET/release/nemesis" --duration "$DURATION" --reads "$READS" --faults "$FAULTS" \
  --seed "$SEED" --out "$OUT" "$@" || status=$?
echo "outputs kept in $OUT"
exit $status
