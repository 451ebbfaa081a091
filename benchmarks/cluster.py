"""Measure ``GET /cluster`` with 200 connection servers and 20 gateway servers.

Starts ZooKeeper and Redis on loopback, registers 200 connection servers the
Java way (with uneven online counts in ``mp:oul:<ip>``) and 20 gateway
servers (loopback ports that accept connections and never answer: the
daemon's gateway connections are up), and runs ``twistd -n mpush-alloc``.
Then, on one kept-alive HTTP connection from 127.0.0.1 (inside the default
``mp.alloc.push-allow``), it times sequential ``GET /cluster`` requests,
``GET /health`` for comparison, and prints p50/p99 (the target: under 5 ms
in the daemon). Last, the same resource alone in this process (a Site on a
StringTransport): what rendering costs without the network.

    .venv/bin/python benchmarks/cluster.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import local_services, time_in_process
from tests.harness.registry import NodeRegistrar

SERVERS = 200
GATEWAYS = 20
TARGET_MS = 5.0


def ip_of(i: int) -> str:
    return f"10.9.{i // 250}.{i % 250 + 1}"


def percentiles(took: list[float]) -> tuple[float, float, float]:
    """p50, p99, max in ms."""
    took = sorted(took)
    pick = [took[int(q * (len(took) - 1))] for q in (0.5, 0.99)]
    return 1000 * pick[0], 1000 * pick[1], 1000 * took[-1]


def timed(conn: http.client.HTTPConnection, path: str, n: int) -> tuple[list[float], bytes]:
    took, body = [], b""
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        took.append(time.perf_counter() - start)
        assert response.status == 200, (response.status, body[:300])
    return took, body


def wait_until(check: Callable[[], bool], wait: float, what: str) -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"never: {what}")
        time.sleep(0.1)


def in_process(requests: int) -> tuple[float, float, float]:
    """The resource on a StringTransport: 200 servers, 20 gateways, from the test fakes."""
    from mpush.balance import BalancePolicy, Candidate
    from mpush.web.cluster import ClusterResource
    from mpush.web.push_access import PushAccess
    from mpush.web.root import RootResource
    from mpush.web.site import AllocSite
    from tests.fakes import Fakes, FakeZk, Node

    fakes = Fakes()
    policy = BalancePolicy()
    policy.set_servers([Candidate(f"{ip_of(i)}:3000", ip_of(i)) for i in range(SERVERS)])
    policy.apply_counts(policy.begin_refresh(), {ip_of(i): 3 * i for i in range(SERVERS)})
    fakes.policy = policy  # type: ignore[assignment]
    fakes.zk = FakeZk(cs={f"cs{i}": Node(f"cs{i}", ip_of(i), since=1.7e9 + i)
                          for i in range(SERVERS)})
    fakes.gateways.servers = {f"10.9.1.{i}:3001": {"connected": 1, "configured": 1,
                                                   "pending": 0} for i in range(GATEWAYS)}
    root = RootResource(policy)
    root.putChild(b"cluster", ClusterResource(
        fakes.status(), PushAccess(token=None, allow=("127.0.0.1/32",))))
    site = AllocSite(root)
    took = time_in_process(site, b"GET /cluster HTTP/1.1\r\nHost: x\r\n\r\n", requests)
    return percentiles(took)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    with local_services("mpush-bench-cluster-") as local:
        registrar = NodeRegistrar(local.zk.connect_string).start()
        local.later.callback(registrar.close)
        for i in range(SERVERS):
            registrar.register("cs", ip_of(i), 3000)
            if i:
                members = [x for j in range(3 * i) for x in (0, f"u{i}-{j}")]
                local.redis.call("ZADD", f"mp:oul:{ip_of(i)}", *members)
        for _ in range(GATEWAYS):
            # Accepted by the kernel (backlog), never answered: a connection up.
            sock = local.later.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            registrar.register("gs", "127.0.0.1", sock.getsockname()[1])
        port = free_port()
        config = write_config(local.work / "mpush.conf", port=port,
                              zk=local.zk.connect_string, redis_nodes=local.redis_nodes)
        daemon = Daemon(local.work, config, port=port).start()
        local.later.callback(daemon.terminate)
        daemon.wait_for_body(lambda b: b.count(b",") == SERVERS - 1, wait=60)

        def complete() -> bool:
            status, _, body = daemon.get("/cluster")
            doc = json.loads(body)
            rows = doc["connectionServers"]
            return (status == 200 and len(rows) == SERVERS
                    and sum(s["online"] for s in rows) == 3 * sum(range(SERVERS))
                    and sum(g["connections"] for g in doc["gatewayServers"]) == GATEWAYS)

        wait_until(complete, 60, "200 servers and 20 connected gateways in /cluster")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        timed(conn, "/cluster", 200)  # warm-up
        cluster_took, body = timed(conn, "/cluster", args.requests)
        health_took, _ = timed(conn, "/health", args.requests)
        conn.close()
        doc = json.loads(body)
        print(f"{len(doc['connectionServers'])} connection servers, "
              f"{len(doc['gatewayServers'])} gateway servers; /cluster body {len(body)} bytes; "
              f"{args.requests} sequential requests each, one kept-alive connection")
        for name, took in (("GET /cluster", cluster_took), ("GET /health", health_took)):
            p50, p99, worst = percentiles(took)
            print(f"{name:<14} p50 {p50:6.3f} ms   p99 {p99:6.3f} ms   max {worst:6.3f} ms")
        p50, p99, worst = percentiles(cluster_took)
        verdict = "ok" if p99 < TARGET_MS else "OVER"
        print(f"GET /cluster p99 {p99:.3f} ms: {verdict} (target < {TARGET_MS:g} ms)")
        p50, p99, worst = in_process(args.requests)
        print(f"server side only (in-process Site, {SERVERS} servers, {GATEWAYS} gateways): "
              f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {worst:.3f} ms")
        return 0 if verdict == "ok" else 1

if __name__ == "__main__":
    sys.exit(main())
