#!/usr/bin/env bash
# A hostile restore archive's cost in server memory (the "Security" issue: a 43 KiB archive
# with valid SHA256SUMS, size and CRC, rows of 1 MiB of zeros and a wrong state hash grew a
# server's RSS by 1.7 GB before it was refused; the goal is a peak under 64 MiB over
# baseline). With tests/hostile_archive.py, in one run:
#   - fills `fsmhost agent --dev` with KEYS values of VALUE_BYTES zeros (1,700 x 1 MiB by
#     default) through POST /v1/apply/kv/set, saves an archive with GET /v1/snapshot;
#   - forges it: the state hash at the end of state.bin flipped, state.bin and the archive
#     recompressed at gzip -9, meta.json's Size and CRC and SHA256SUMS fixed;
#   - PUTs the forged archive to /v1/snapshot of a fresh server: the refusal, the time, the
#     server's RSS before and its peak (VmHWM) after, that it still serves and its state is
#     unchanged;
#   - restores the unmodified archive into another fresh server, for comparison (that one
#     builds the whole state, so its peak is about the state's size).
# One summary line per measurement, then a JSON line. One server runs at a time, but the
# fill server (dev mode: the raft log in memory too) reached ~8 GB of RSS for the default
# 1.7 GB of values, and the unmodified restore ~2 GB: scale down on a small machine
# (KEYS=500 for 0.5 GB of values); the fill stops if the machine nears 3 GB available.
#
#   bash tests/bench-hostile-archive.sh
#   KEYS=1000 CLIENTS=1 bash tests/bench-hostile-archive.sh
#   FSMHOST=target/release/fsmhost bash tests/bench-hostile-archive.sh   # no build
#
# Builds fsmhost in release unless FSMHOST names a binary. Exits non-zero unless the forged
# archive is refused for its hash within the goal and both servers' states are as expected.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1700}
VALUE_BYTES=${VALUE_BYTES:-1048576}
CLIENTS=${CLIENTS:-2}

if [ -z "${FSMHOST:-}" ]; then
  cargo build --release -p fsmhost --bin fsmhost >&2
  FSMHOST="${CARGO_TARGET_DIR:-target}/release/fsmhost"
fi
[ -x "$FSMHOST" ] || { echo "no fsmhost binary at $FSMHOST" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fsmhost-bench-hostile.XXXXXX")
# Kept when the run fails: the servers' logs are there.
cleanup() {
  local rc=$?
  if [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else echo "kept $WORK (server logs)" >&2; fi
}
trap cleanup EXIT

version=$("$FSMHOST" version)
echo "machine: $(nproc) cores, $(uname -r); ${version%%$'\n'*}"
python3 tests/hostile_archive.py --fsmhost "$FSMHOST" --work "$WORK" \
  --keys "$KEYS" --value-bytes "$VALUE_BYTES" --clients "$CLIENTS"
