"""The client side of tests/bench-filter.sh: registers INSTANCES instances of service
`web` (8 threads, one registration per request), then times GET /v1/catalog/service/web
without and with ?filter=, alternating, RUNS times each, and prints the medians."""

import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

addr, instances, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = f"http://{addr}"

deadline = time.time() + 30
while True:
    try:
        if urllib.request.urlopen(base + "/v1/status/leader", timeout=1).read().strip() not in (b'""', b""):
            break
    except OSError:
        pass
    assert time.time() < deadline, "no leader"
    time.sleep(0.05)


def register(worker):
    for i in range(worker, instances, 8):
        body = json.dumps({
            "Node": f"n{i % 500}",
            "Address": f"10.0.{i % 500 // 250}.{i % 250}",
            "Service": {"ID": f"web{i}", "Service": "web", "Port": 8000 + i % 1000,
                        "Tags": ["v1"] if i % 2 else ["v2"],
                        "Meta": {"env": ["prod", "qa", "dev"][i % 3]}},
        }).encode()
        req = urllib.request.Request(base + "/v1/catalog/register", data=body, method="PUT")
        urllib.request.urlopen(req, timeout=30).read()


started = time.time()
threads = [threading.Thread(target=register, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"registered {instances} instances in {time.time() - started:.1f} s")

expr = urllib.parse.quote('ServiceMeta.env == prod and ServiceTags contains "v1"')
paths = {"unfiltered": "/v1/catalog/service/web", "filtered": f"/v1/catalog/service/web?filter={expr}"}
times = {k: [] for k in paths}
sizes = {}
for _ in range(runs):
    for k, p in paths.items():
        t = time.perf_counter()
        body = urllib.request.urlopen(base + p, timeout=60).read()
        times[k].append(time.perf_counter() - t)
        sizes[k] = (len(json.loads(body)), len(body))
u, f = statistics.median(times["unfiltered"]), statistics.median(times["filtered"])
print(f"unfiltered: median {u * 1e3:.1f} ms ({sizes['unfiltered'][0]} instances, {sizes['unfiltered'][1]} bytes)")
print(f"filtered:   median {f * 1e3:.1f} ms ({sizes['filtered'][0]} instances, {sizes['filtered'][1]} bytes)")
print(f"filtered / unfiltered: {f / u:.2f}x over {runs} runs each")
