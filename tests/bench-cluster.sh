#!/usr/bin/env bash
# Write throughput and latency of a 3-server fsmhost cluster on loopback, with each raft log
# backend (wal, redb) and through both APIs (POST /v1/apply/kv/set and Consul's
# PUT /v1/kv/<key>), next to a 3-member etcd 3.4 cluster and one fdatasync, all measured in
# the same run on the same disk.
#
#   bash tests/bench-cluster.sh            # 1, 16 and 64 clients, 8-byte keys, 256-byte values
#   CLIENTS="1 64" REQUESTS=5000 bash tests/bench-cluster.sh
#   ONLY="etcd fsmhost-wal" bash tests/bench-cluster.sh   # targets: etcd fsmhost-wal fsmhost-redb
#
# Installs Debian's etcd-server if `etcd` is missing. Builds fsmhost and loadgen in release.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1 16 64"}
ONLY=${ONLY:-}
KEY_SIZE=${KEY_SIZE:-8}
VALUE_SIZE=${VALUE_SIZE:-256}
requests_for() { # clients -> measured requests
  if [ -n "${REQUESTS:-}" ]; then echo "$REQUESTS"; elif [ "$1" -le 1 ]; then echo 2000; else echo 20000; fi
}

if ! command -v etcd >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y etcd-server >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y etcd-server >/dev/null; }
fi

source tests/bench-lib.sh
bench_setup

start_etcd() {
  local cluster="" i
  for i in 1 2 3; do
    EC[$i]=$(port); EP[$i]=$(port)
    cluster+="e$i=http://127.0.0.1:${EP[$i]},"
  done
  cluster=${cluster%,}
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
      --listen-client-urls "http://127.0.0.1:${EC[$i]}" --advertise-client-urls "http://127.0.0.1:${EC[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${EP[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${EP[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
      >"$WORK/etcd$i.log" 2>&1 &
    PIDS+=($!)
  done
  # The leader: the member whose status names itself as leader.
  for _ in $(seq 1 100); do
    for i in 1 2 3; do
      s=$(curl -sf -X POST -d '{}' "http://127.0.0.1:${EC[$i]}/v3/maintenance/status" 2>/dev/null || true)
      if [ -n "$s" ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d.get("leader") and d["leader"]==d["header"]["member_id"] else 1)' "$s"; then
        ETCD_LEADER="127.0.0.1:${EC[$i]}"; return 0
      fi
    done
    sleep 0.2
  done
  echo "etcd did not elect a leader; see $WORK/etcd*.log" >&2; exit 1
}


echo "machine: $(nproc) cores, $(uname -r); disk of $WORK: $(df -h "$WORK" | awk 'NR==2{print $1}')" >&2
FSYNC=$("$LOADGEN" fsync --dir "$WORK" --count 500)
FSYNC_P50=$(echo "$FSYNC" | json_field p50_ms)
echo "$FSYNC" | head -1 >&2

declare -A TP P50 P99 MAX
run() { # target op clients
  local out
  if [ "$1" = etcd ]; then
    out=$("$LOADGEN" etcd --endpoints "$ETCD_LEADER" --clients "$3" --requests "$(requests_for "$3")" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE")
  else
    out=$("$LOADGEN" fsmhost --addr "$FSMHOST_LEADER" --op "$2" --clients "$3" --requests "$(requests_for "$3")" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE")
  fi
  echo "$1 $2: $(echo "$out" | head -1)" >&2
  TP[$1,$2,$3]=$(echo "$out" | json_field throughput)
  P50[$1,$2,$3]=$(echo "$out" | json_field p50_ms)
  P99[$1,$2,$3]=$(echo "$out" | json_field p99_ms)
  MAX[$1,$2,$3]=$(echo "$out" | json_field max_ms)
}

ops_of() { if [ "$1" = etcd ]; then echo put; else echo "apply kv-put"; fi; }

TARGETS=${ONLY:-"etcd fsmhost-wal fsmhost-redb"}
for t in $TARGETS; do
  case $t in
    etcd) start_etcd ;;
    fsmhost-*) FSMHOST_TABLES=$(printf '[raft_logstore]\nbackend = "%s"' "${t#fsmhost-}") start_fsmhost ;;
  esac
  for op in $(ops_of "$t"); do for c in $CLIENTS; do run "$t" "$op" "$c"; done; done
  case $t in fsmhost-*) stop_fsmhost ;; esac
done

printf '\n| target | API | clients | writes/s | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|\n'
for t in $TARGETS; do for op in $(ops_of "$t"); do for c in $CLIENTS; do
  printf '| %s | %s | %s | %.0f | %.2f | %.2f | %.2f |\n' "$t" "$op" "$c" "${TP[$t,$op,$c]}" "${P50[$t,$op,$c]}" "${P99[$t,$op,$c]}" "${MAX[$t,$op,$c]}"
done; done; done
printf '\nfdatasync of the same disk (256 B append): p50 %.3f ms\n' "$FSYNC_P50"
case " $TARGETS " in *" etcd "*)
  for t in $TARGETS; do [ "$t" = etcd ] && continue
    for op in $(ops_of "$t"); do for c in $CLIENTS; do
      printf '%s %s, %s clients: %.2fx etcd writes/s; p50 %.2f vs etcd %.2f ms = %.1f fdatasyncs\n' "$t" "$op" "$c" \
        "$(python3 -c "print(${TP[$t,$op,$c]}/${TP[etcd,put,$c]})")" "${P50[$t,$op,$c]}" "${P50[etcd,put,$c]}" \
        "$(python3 -c "print(${P50[$t,$op,$c]}/$FSYNC_P50)")"
    done; done
  done ;;
esac
