#!/usr/bin/env bash
# What TLS and ACLs cost: Consul KV writes and point reads at 64 clients against a 3-server
# cluster in plaintext without ACLs, then against one with mutual TLS on the server port,
# HTTPS for the API and ACLs denying by default (the client's token holds a policy of
# key_prefix rules, so every request is judged). Same machine, one run.
#
#   bash tests/bench-secure.sh
#   CLIENTS=16 REQUESTS=20000 bash tests/bench-secure.sh
#
# Builds fsmhost, loadgen and pki in release.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/bench-lib.sh

CLIENTS=${CLIENTS:-64}
REQUESTS=${REQUESTS:-40000}
KEYSPACE=${KEYSPACE:-10000}

bench_setup
cargo build --release -p fsmhost-tests --bin pki >&2
PKI="${CARGO_TARGET_DIR:-target}/release/pki"

run_load() { # label addr [loadgen flags...]
  local label=$1 addr=$2; shift 2
  for op in kv-put kv-get; do
    "$LOADGEN" fsmhost --addr "$addr" --op "$op" --clients "$CLIENTS" --requests "$REQUESTS" \
      --keyspace "$KEYSPACE" "$@" | tail -1 | sed "s/^/$label /"
  done
}

stop_all() { # and remove their data dirs: the next cluster reuses the names s1..s3
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  rm -rf "$WORK"/s1 "$WORK"/s2 "$WORK"/s3
}

# 1. Plaintext, no ACLs. The same client as below (fsmhost's own, which a token selects;
# the server ignores it without ACLs), so only the server side differs.
start_fsmhost
run_load plain "$FSMHOST_LEADER" --token unused
stop_all

# 2. Mutual TLS between servers, HTTPS, ACLs deny by default.
"$PKI" "$WORK/pki" >/dev/null
ROOT=$(python3 -c 'import uuid; print(uuid.uuid4())')
FSMHOST_EXTRA=$(cat <<TOML
[tls.defaults]
ca_file = "$WORK/pki/cluster-ca.pem"
cert_file = "$WORK/pki/cluster-server.pem"
key_file = "$WORK/pki/cluster-server-key.pem"
[tls.internal_rpc]
verify_server_hostname = true
[acl]
enabled = true
default_policy = "deny"
[acl.tokens]
initial_management = "$ROOT"
TOML
)
export FSMHOST_EXTRA
start_fsmhost
H="https://$FSMHOST_LEADER_HTTPS"
CA="$WORK/pki/cluster-ca.pem"
for _ in $(seq 50); do
  curl -sf --cacert "$CA" -H "X-Consul-Token: $ROOT" "$H/v1/acl/token/self" >/dev/null && break
  sleep 0.2
done
curl -sf --cacert "$CA" -X PUT -H "X-Consul-Token: $ROOT" "$H/v1/acl/policy" \
  -d '{"Name":"bench","Rules":"key_prefix \"\" { policy = \"write\" }\nkey_prefix \"secret/\" { policy = \"deny\" }"}' >/dev/null
TOKEN=$(curl -sf --cacert "$CA" -X PUT -H "X-Consul-Token: $ROOT" "$H/v1/acl/token" \
  -d '{"Description":"bench","Policies":[{"Name":"bench"}]}' | json_field SecretID)
run_load tls+acl "$H" --ca-file "$CA" --token "$TOKEN"
stop_all

# 3. The same TLS, without ACLs: what TLS alone costs.
FSMHOST_EXTRA=$(printf '%s\n' "$FSMHOST_EXTRA" | sed '/^\[acl/,$d')
start_fsmhost
run_load tls "https://$FSMHOST_LEADER_HTTPS" --ca-file "$CA" --token unused
