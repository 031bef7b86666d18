# Shared by the bench scripts (sourced, not run): the release build and a work directory
# cleaned up at exit (bench_setup), a free loopback port, and a 3-server fsmhost cluster
# started from config files.

# Builds fsmhost and loadgen in release (FSMHOST, LOADGEN), makes WORK, and at exit stops
# every process in the array PIDS and removes WORK.
bench_setup() {
  cargo build --release -p fsmhost --bin fsmhost -p fsmhost-tests --bin loadgen >&2
  local target_dir=${CARGO_TARGET_DIR:-target}
  FSMHOST="$target_dir/release/fsmhost"
  LOADGEN="$target_dir/release/loadgen"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/fsmhost-bench.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts servers s1..s3 with `bootstrap_expect = 3` (their server, HTTP and HTTPS ports in
# FS, FH and FHS) and waits for a leader; sets FSMHOST_LEADER to the leader's HTTP address
# and FSMHOST_LEADER_HTTPS to its HTTPS one. FSMHOST_EXTRA (TOML tables, such as [tls.*]
# and [acl]) goes into every config; with it set, the HTTPS port listens too. FSMHOST_TOP
# (top-level keys, such as tombstone_ttl) goes in before any table; FSMHOST_TABLES (tables
# such as [raft_logstore]) at the end, without HTTPS. The servers' pids are in FSMHOST_PIDS
# (stop_fsmhost stops them).
start_fsmhost() {
  local i join="" https=""
  FSMHOST_PIDS=()
  for i in 1 2 3; do FS[$i]=$(port); FH[$i]=$(port); FHS[$i]=$(port); join+="\"127.0.0.1:${FS[$i]}\", "; done
  for i in 1 2 3; do
    cat >"$WORK/s$i.toml" <<TOML
node_name = "s$i"
data_dir = "$WORK/s$i"
server = true
bootstrap_expect = 3
bind_addr = "127.0.0.1"
retry_join = [${join%, }]
log_level = "warn"
${FSMHOST_TOP:-}
ports.server = ${FS[$i]}
ports.http = ${FH[$i]}
$( [ -n "${FSMHOST_EXTRA:-}" ] && echo "ports.https = ${FHS[$i]}" )
${FSMHOST_EXTRA:-}
${FSMHOST_TABLES:-}
TOML
    "$FSMHOST" agent --config-file "$WORK/s$i.toml" >"$WORK/s$i.log" 2>&1 &
    PIDS+=($!)
    FSMHOST_PIDS+=($!)
  done
  for _ in $(seq 1 300); do
    l=$(curl -sf "http://127.0.0.1:${FH[1]}/v1/status/leader" 2>/dev/null | tr -d '"' || true)
    for i in 1 2 3; do
      if [ "$l" = "127.0.0.1:${FS[$i]}" ]; then
        FSMHOST_LEADER="127.0.0.1:${FH[$i]}"; FSMHOST_LEADER_HTTPS="127.0.0.1:${FHS[$i]}"; return 0
      fi
    done
    sleep 0.2
  done
  echo "fsmhost did not elect a leader; see $WORK/s*.log" >&2; exit 1
}

# Stops the servers start_fsmhost started and removes their data dirs.
stop_fsmhost() {
  local p
  for p in "${FSMHOST_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${FSMHOST_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"/s1 "$WORK"/s2 "$WORK"/s3
}

# The named field of the last JSON line on stdin.
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }
