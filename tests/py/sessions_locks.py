"""py-consul's sessions and locks against one fsmhost server (dc1, node s1): what Vault's
HA mode, `consul lock` and Terraform's Consul backend do.

Usage: python sessions_locks.py HOST:PORT

Every check is an assertion: the script exits non-zero on the first one that fails and
prints "ok" at the end. The server registers itself (node s1, check serfHealth) within
seconds of leading; the script waits for that first, as Consul's clients do.
"""

import sys
import time

import consul

host, port = sys.argv[1].rsplit(":", 1)
c = consul.Consul(host=host, port=int(port), dc="dc1")


def wait_for(what, f, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout}s for {what}")


# 1. The server's own node, with serfHealth passing and the consul service.
wait_for("the server's node", lambda: c.catalog.node("s1")[1])
_, checks = c.health.node("s1")
assert [(x["CheckID"], x["Status"]) for x in checks] == [("serfHealth", "passing")], checks
_, consul_nodes = c.catalog.service("consul")
assert [n["Node"] for n in consul_nodes] == ["s1"], consul_nodes
assert consul_nodes[0]["Datacenter"] == "dc1", consul_nodes

# 2. A session with the defaults: this node, serfHealth, release, 15s of lock-delay.
sid = c.session.create(name="web-leader")
_, s = c.session.info(sid)
assert (s["Node"], s["Name"], s["Behavior"]) == ("s1", "web-leader", "release"), s
assert s["NodeChecks"] == ["serfHealth"], s
assert s["LockDelay"] == 15 * 10**9, s
_, listed = c.session.list()
assert [x["ID"] for x in listed] == [sid], listed
_, on_node = c.session.node("s1")
assert [x["ID"] for x in on_node] == [sid], on_node

# 3. A lock: acquire, a second session is refused, release, re-acquire bumps LockIndex.
other = c.session.create(name="standby", lock_delay=0)
assert c.kv.put("service/web/leader", "me", acquire=sid) is True
assert c.kv.put("service/web/leader", "you", acquire=other) is False
_, e = c.kv.get("service/web/leader")
assert (e["Session"], e["LockIndex"], e["Value"]) == (sid, 1, b"me"), e
assert c.kv.put("service/web/leader", "x", release=other) is False
assert c.kv.put("service/web/leader", "me", release=sid) is True
_, e = c.kv.get("service/web/leader")
assert "Session" not in e or e["Session"] is None, e
assert c.kv.put("service/web/leader", "you", acquire=other) is True
_, e = c.kv.get("service/web/leader")
assert (e["Session"], e["LockIndex"]) == (other, 2), e

# 4. Destroying the holder releases the key; a lock-delay of 0 lets the next one in at once.
assert c.session.destroy(other) is True
_, e = c.kv.get("service/web/leader")
assert e.get("Session") is None, e
assert c.kv.put("service/web/leader", "me", acquire=sid) is True

# 5. Lock-delay: the key cannot be taken for LockDelay after its holder was invalidated.
delayed = c.session.create(lock_delay=2)
assert c.kv.put("jobs/cron", "a", acquire=delayed) is True
assert c.session.destroy(delayed) is True
third = c.session.create(lock_delay=0)
assert c.kv.put("jobs/cron", "b", acquire=third) is False, "taken during the lock-delay"
time.sleep(2.5)
assert c.kv.put("jobs/cron", "b", acquire=third) is True

# 6. behavior=delete: invalidating the session deletes the keys it holds.
deleter = c.session.create(behavior="delete", lock_delay=0)
assert c.kv.put("tmp/owned", "x", acquire=deleter) is True
assert c.session.destroy(deleter) is True
assert c.kv.get("tmp/owned")[1] is None

# 7. A check going critical invalidates the sessions on it, and releases their locks.
assert c.catalog.register("n1", "10.0.0.1", check={"checkid": "app", "name": "app", "status": "passing"})
on_check = c.session.create(node="n1", checks=["app"], lock_delay=0)
assert c.kv.put("n1/lock", "x", acquire=on_check) is True
assert c.catalog.register("n1", "10.0.0.1", check={"checkid": "app", "name": "app", "status": "critical"})
assert c.session.info(on_check)[1] is None
assert c.kv.get("n1/lock")[1].get("Session") is None
try:
    c.session.create(node="n1", checks=["app"])
    raise AssertionError("a session on a critical check")
except consul.ConsulException as e:
    assert "Check 'app' is in critical state" in str(e), e

# 8. Deregistering a node invalidates its sessions.
assert c.catalog.register("n2", "10.0.0.2")
on_node = c.session.create(node="n2", checks=[], lock_delay=0)
assert c.catalog.deregister("n2") is True
assert c.session.info(on_node)[1] is None

# 9. Renew answers the session; a destroyed one is gone.
ttl = c.session.create(ttl=10)
renewed = c.session.renew(ttl)
assert renewed["ID"] == ttl and renewed["TTL"] == "10s", renewed
assert c.session.destroy(ttl) is True
try:
    c.session.renew(ttl)
    raise AssertionError("renewed a destroyed session")
except consul.NotFound:
    pass

# 10. Transactions: lock, check-session, unlock.
txn = c.txn.put([
    {"KV": {"Verb": "lock", "Key": "txn/k", "Value": "dg==", "Session": sid}},
    {"KV": {"Verb": "check-session", "Key": "txn/k", "Session": sid}},
])
assert txn["Errors"] is None, txn
txn = c.txn.put([{"KV": {"Verb": "unlock", "Key": "txn/k", "Value": "dg==", "Session": sid}}])
assert txn["Errors"] is None, txn

print("ok")
