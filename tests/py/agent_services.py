"""py-consul's agent service and check calls against one fsmhost server (dc1, node s1): a
service registered through the agent lands on the server's own catalog node, TTL checks
are updated and expire, and health probes fsmhost does not run are refused.

Usage: python agent_services.py HOST:PORT

Every check is an assertion: the script exits non-zero on the first one that fails and
prints "ok" at the end.
"""

import sys
import time

import consul

host, port = sys.argv[1].rsplit(":", 1)
c = consul.Consul(host=host, port=int(port), dc="dc1")

# A service with a TTL check, through the agent.
assert c.agent.service.register(
    "web", service_id="web1", address="10.0.0.5", port=8080, tags=["v1"], check=consul.Check.ttl("10s")
) is True
services = c.agent.services()
assert list(services) == ["web1"], services
assert (services["web1"]["Service"], services["web1"]["Port"], services["web1"]["Tags"]) == ("web", 8080, ["v1"])
# It is in the catalog, on the server's node.
_, instances = c.catalog.service("web")
assert [(i["Node"], i["ServiceID"]) for i in instances] == [("s1", "web1")], instances

checks = c.agent.checks()
assert list(checks) == ["service:web1"], checks
assert checks["service:web1"]["Status"] == "critical", "a TTL check starts critical"
assert checks["service:web1"]["ServiceID"] == "web1"

# Passing while updated; the note is its output.
assert c.agent.check.ttl_pass("service:web1", notes="all good") is True
check = c.agent.checks()["service:web1"]
assert (check["Status"], check["Output"]) == ("passing", "all good"), check
_, healthy = c.health.service("web", passing=True)
assert [e["Service"]["ID"] for e in healthy] == ["web1"], healthy
assert c.agent.check.ttl_warn("service:web1") is True
assert c.agent.checks()["service:web1"]["Status"] == "warning"

# A check of its own, then left alone: critical once its TTL has passed.
assert c.agent.check.register("heartbeat", check=consul.Check.ttl("2s"), check_id="beat") is True
assert c.agent.check.ttl_pass("beat") is True
deadline = time.time() + 15
while c.agent.checks()["beat"]["Status"] != "critical":
    assert time.time() < deadline, "the TTL check never expired"
    time.sleep(0.5)
assert "TTL expired" in c.agent.checks()["beat"]["Output"], c.agent.checks()["beat"]

# Health probes fsmhost does not run are refused, with a message saying so.
try:
    c.agent.check.register("probe", check=consul.Check.http("http://127.0.0.1:1/", "10s"))
    raise AssertionError("an HTTP check was accepted")
except consul.ConsulException as e:
    assert "TTL" in str(e), e

# Maintenance mode: a critical check while enabled, gone when disabled.
assert c.agent.service.maintenance("web1", True, reason="deploying") is True
assert c.agent.checks()["_service_maintenance:web1"]["Status"] == "critical"
assert c.agent.service.maintenance("web1", False) is True
assert "_service_maintenance:web1" not in c.agent.checks()

# Deregistered: gone from the agent and from the catalog, checks with it.
assert c.agent.check.deregister("beat") is True
assert c.agent.service.deregister("web1") is True
assert c.agent.services() == {}
assert c.catalog.service("web")[1] == []
assert [k for k in c.agent.checks()] == [], c.agent.checks()

print("ok")
