"""py-consul against one fsmhost server: what Consul's Python client sends and reads.

Usage: python catalog_kv_health.py HOST:PORT

Every check below is an assertion: the script exits non-zero on the first one that
fails, and the Rust test (tests/tests/cluster/wire_compat.rs) shows its output. It ends
by printing "ok".
"""

import sys

import consul

host, port = sys.argv[1].rsplit(":", 1)
# dc= makes py-consul send ?dc=dc1 (and "datacenter" in register bodies) on every call.
c = consul.Consul(host=host, port=int(port), dc="dc1")

# catalog.register sends lower-case keys: {"node", "address", "datacenter", "service", "check"}.
assert c.catalog.register(
    "n1",
    "10.0.0.1",
    service={"service": "web", "id": "web1", "port": 80, "tags": ["v1"]},
    check={"name": "web alive", "status": "passing", "serviceid": "web1"},
) is True
assert c.catalog.register(
    "n2",
    "10.0.0.2",
    service={"Service": "web", "ID": "web2", "Port": 81},
    check={"Name": "web2 alive", "Status": "critical", "ServiceID": "web2"},
) is True

index, nodes = c.catalog.nodes()
# The server registers itself (node s1), as Consul's leader does.
assert [n["Node"] for n in nodes] == ["n1", "n2", "s1"], nodes
assert nodes[0]["Address"] == "10.0.0.1", nodes
assert int(index) > 0, index

index, instances = c.catalog.service("web")
assert sorted((s["ServiceID"], s["ServicePort"]) for s in instances) == [("web1", 80), ("web2", 81)], instances
_, tagged = c.catalog.service("web", tag="v1")
assert [s["Node"] for s in tagged] == ["n1"], tagged

_, node = c.catalog.node("n1")
assert node["Services"]["web1"]["Tags"] == ["v1"], node

_, services = c.catalog.services()
assert services == {"consul": [], "web": ["v1"]}, services

assert c.catalog.datacenters() == ["dc1"]

# A blocking read at the current index returns after its wait with the same index.
again, _ = c.catalog.nodes(index=index, wait="1s")
assert again == index, (again, index)

assert c.kv.put("greeting", "hello") is True
_, entry = c.kv.get("greeting")
assert entry["Value"] == b"hello", entry
assert c.kv.put("greeting", "hi", cas=entry["ModifyIndex"]) is True
assert c.kv.put("greeting", "stale", cas=entry["ModifyIndex"]) is False
_, keys = c.kv.get("", keys=True)
assert keys == ["greeting"], keys
assert c.kv.delete("greeting") is True
_, gone = c.kv.get("greeting")
assert gone is None, gone

_, healthy = c.health.service("web", passing=True)
assert [e["Service"]["ID"] for e in healthy] == ["web1"], healthy
assert healthy[0]["Checks"][0]["Status"] == "passing", healthy
_, every = c.health.service("web")
assert len(every) == 2, every
_, checks = c.health.checks("web")
assert sorted(ch["CheckID"] for ch in checks) == ["web alive", "web2 alive"], checks
_, passing = c.health.state("passing")
assert sorted(ch["CheckID"] for ch in passing) == ["serfHealth", "web alive"], passing
_, proxies = c.health.connect("web")
assert proxies == [], proxies
_, proxies = c.catalog.connect("web")
assert proxies == [], proxies

assert c.catalog.deregister("n2") is True
_, nodes = c.catalog.nodes()
assert [n["Node"] for n in nodes] == ["n1", "s1"], nodes

# Another datacenter: Consul's 500 "No path to datacenter".
other = consul.Consul(host=host, port=int(port), dc="dc2")
try:
    other.catalog.nodes()
    raise AssertionError("dc2 answered")
except consul.ConsulException as e:
    assert "No path to datacenter" in str(e), e

print("ok")
