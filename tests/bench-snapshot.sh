#!/usr/bin/env bash
# Snapshot save and restore through a real server, end to end: the archive of 1,000,000 kv
# entries that `cargo bench -p fsmhost --bench snapshot` writes is restored into a fresh
# `fsmhost agent --dev` with `fsmhost snapshot restore` (HTTP upload, checks, the restore
# entry through raft, a raft snapshot after it), then saved back with `fsmhost snapshot
# save` (a raft snapshot, packed, streamed, read back and verified). Reports wall times and
# the server's RSS before, after and at its peak (VmHWM).
#
#   bash tests/bench-snapshot.sh            # SNAPSHOT_BENCH_N=1000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d /tmp/fsmhost-bench-snapshot.XXXXXX)
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -p fsmhost
SNAPSHOT_BENCH_KEEP="$work/backup.snap" cargo bench -p fsmhost --bench snapshot
bin="$target/release/fsmhost"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
server_port=$(free_port)
addr="127.0.0.1:$http_port"
"$bin" agent --dev --ports-http "$http_port" --ports-server "$server_port" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
    leader=$(curl -sf "http://$addr/v1/status/leader" || true)
    [ -n "$leader" ] && [ "$leader" != '""' ] && break
    sleep 0.1
done
kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$agent_pid/status"; }
now() { date +%s.%N; }

rss_before=$(kb VmRSS)
t0=$(now)
"$bin" snapshot restore "$work/backup.snap" --http-addr "$addr"
t1=$(now)
sleep 2 # the snapshot the leader takes after a restore
rss_after=$(kb VmRSS)
hwm=$(kb VmHWM)
t2=$(now)
"$bin" snapshot save "$work/saved.snap" --http-addr "$addr"
t3=$(now)
"$bin" snapshot inspect "$work/saved.snap"

awk -v b="$rss_before" -v a="$rss_after" -v h="$hwm" -v r0="$t0" -v r1="$t1" \
    -v s0="$t2" -v s1="$t3" 'BEGIN { r = r1 - r0; s = s1 - s0
    printf "restore through the CLI: %.2f s\n", r
    printf "save through the CLI (raft snapshot, archive, download, read back): %.2f s\n", s
    printf "server RSS: %.1f MiB before, %.1f MiB after, peak %.1f MiB\n", b/1024, a/1024, h/1024
    printf "server peak over before, as a multiple of the state it holds (after - before): %.2fx\n", (h-b)/(a-b)
}'
