"""py-consul's agent, status and operator calls against one fsmhost server (dc1).

Usage: python agent_operator.py HOST:PORT

Assertions on what works, and on the calls known not to (so a change in either shows):
the script exits non-zero on the first failed assertion and prints "ok" at the end.
"""

import sys

import consul

host, port = sys.argv[1].rsplit(":", 1)
c = consul.Consul(host=host, port=int(port), dc="dc1")

me = c.agent.self()
assert me["Config"]["Datacenter"] == "dc1", me["Config"]
assert me["Config"]["NodeName"] == "s1", me["Config"]
assert me["Stats"]["consul"]["leader_addr"] == c.status.leader(), me["Stats"]
assert [m["Name"] for m in c.agent.members()] == ["s1"]
assert [m["Name"] for m in c.agent.members(wan=True)] == ["s1.dc1"]
assert me["Member"] == c.agent.members()[0], me["Member"]
assert c.status.peers() == [c.status.leader()]

raft = c.operator.raft_config()
assert [s["Node"] for s in raft["Servers"]] == ["s1"], raft

assert c.operator.update_autopilot_configuration(max_trailing_logs=300, last_contact_threshold="300ms") is True
conf = c.operator.autopilot_configuration()
assert (conf["MaxTrailingLogs"], conf["LastContactThreshold"]) == (300, "300ms"), conf
assert conf["ServerStabilizationTime"] == "10s", conf

health = c.operator.autopilot_health()
assert "Healthy" in health and "Servers" in health, health

assert c.catalog.register("n1", "10.0.0.1", service={"service": "web"}) is True
usage = c.operator.usage()
# With the server's own node and its `consul` service.
assert usage["Usage"]["dc1"]["Nodes"] == 2, usage
assert usage["Usage"]["dc1"]["ServiceInstances"] == 2, usage

try:
    c.operator.keyring_list()
    raise AssertionError("the keyring answered")
except consul.ConsulException as e:
    assert "Keyring is empty (encryption not enabled)" in str(e), e

txn = c.txn.put([{"KV": {"Verb": "set", "Key": "t", "Value": "dg=="}}])
assert txn["Errors"] is None, txn
_, entries = c.kv.get("", recurse=True)
assert [(e["Key"], e["Value"]) for e in entries] == [("t", b"v")], entries

# The agent's services and checks are the server's own node's (agent_services.py); the
# leader's `consul` service and serfHealth are not the agent's, as in Consul.
assert c.agent.services() == {}
# Not served: raft leadership transfer (openraft 0.9 has none), which py-consul POSTs
# without a Content-Type, so the server's guard against cross-site POSTs refuses it first.
try:
    c.operator.raft_transfer_leader()
    raise AssertionError("transfer-leader answered")
except consul.ConsulException as e:
    assert "415" in str(e), e

print("ok")
