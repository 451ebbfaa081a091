"""Three real alloc daemons behind a (simulated) round-robin load balancer.

Starts ZooKeeper and Redis on loopback, registers ten connection servers the
Java way with uneven online counts (0, 100, ..., 900 users in
``mp:oul:<ip>``), and runs three ``twistd -n mpush-alloc`` on them (started
one after another, so their refreshes run at different phases; the default
30 s refresh interval). Then 30,000 ``GET /`` go round-robin over the three
on kept-alive connections; each answer's first server is the one the client
connects to, so the script adds that client to the server's ``mp:oul:<ip>``
(in batches of 50 answers: clients connect a little after they asked).

Printed per run (sharing off, then on at the default interval): the
handouts summed per server (the first entries), the final online counts and
their max/mean, the figure the 1.05 target is about.

    .venv/bin/python benchmarks/instances.py [--requests 30000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpush.config import AllocSettings
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import LocalServices, local_services
from tests.harness.registry import NodeRegistrar

SERVERS = 10
INSTANCES = 3
START = [100 * i for i in range(SERVERS)]
BATCH = 50  # answers between two writes of the connected clients to Redis
LIMIT = 1.05


def ip_of(i: int) -> str:
    return f"127.1.0.{i + 1}"  # only named in ZooKeeper: nothing connects to it


def wait_until(check: object, wait: float, what: str) -> None:
    deadline = time.monotonic() + wait
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"never: {what}")
        time.sleep(0.1)


def run(local: LocalServices, name: str, interval: str, requests: int) -> float:
    """One run with ``mp.alloc.share-handouts-interval = interval``; returns max/mean."""
    redis = local.redis
    redis.call("FLUSHALL")
    redis.client().pipeline([("ZADD", f"mp:oul:{ip_of(i)}",
                              *[x for u in range(n) for x in (0, f"start-{u}")])
                             for i, n in enumerate(START) if n])
    daemons = []
    for k in range(INSTANCES):
        work = local.work / f"{name}-{k}"
        work.mkdir()
        port = free_port()
        extra = f"refresh-interval = {AllocSettings.refresh_interval:g}s\n" \
                f"    share-handouts-interval = {interval}"
        config = write_config(work / "mpush.conf", port=port, zk=local.zk.connect_string,
                              redis_nodes=local.redis_nodes, alloc_extra=extra)
        daemon = Daemon(work, config, port=port).start()
        local.later.callback(daemon.terminate)
        daemon.wait_for_body(lambda b: b.count(b",") == SERVERS - 1, wait=60)
        daemons.append(daemon)

    def counted(d: Daemon) -> bool:
        rows = json.loads(d.get("/cluster")[2])["connectionServers"]
        return sum(r["online"] for r in rows) == sum(START)

    for d in daemons:
        wait_until(lambda d=d: counted(d), 60, "online counts read")  # type: ignore[misc]
    connections = [http.client.HTTPConnection("127.0.0.1", d.port, timeout=10) for d in daemons]
    handouts: Counter[str] = Counter()
    pending: list[str] = []
    client = redis.client()
    started = time.monotonic()
    for i in range(requests):
        conn = connections[i % INSTANCES]
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:200])
        ip = body.split(b",", 1)[0].rsplit(b":", 1)[0].decode()
        handouts[ip] += 1
        pending.append(ip)
        if len(pending) == BATCH or i == requests - 1:
            client.pipeline([("ZADD", f"mp:oul:{p}", 0, f"c{i}-{j}")
                             for j, p in enumerate(pending)])
            pending = []
    took = time.monotonic() - started
    for conn in connections:
        conn.close()
    client.close()
    final = [int(redis.call("ZCARD", f"mp:oul:{ip_of(i)}")) for i in range(SERVERS)]
    ratio = max(final) / (sum(final) / len(final))
    print(f"sharing {name:4} ({interval:>5}): {requests} GET / in {took:.1f} s "
          f"({requests / took:.0f}/s), max/mean of final online {ratio:.3f}")
    print(f"  handouts per server: {[handouts[ip_of(i)] for i in range(SERVERS)]}")
    print(f"  final online:        {final}")
    for d in daemons:
        d.terminate()
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30_000)
    args = parser.parse_args()
    default = f"{int(AllocSettings.share_handouts_interval * 1000)}ms"
    print(f"{INSTANCES} daemons, {SERVERS} connection servers starting at {START} users, "
          f"round-robin")
    with local_services("mpush-bench-instances-") as local:
        registrar = NodeRegistrar(local.zk.connect_string).start()
        local.later.callback(registrar.close)
        for i in range(SERVERS):
            registrar.register("cs", ip_of(i), 3000)
        run(local, "off", "0", args.requests)
        shared = run(local, "on", default, args.requests)
    print(f"with sharing: {'ok' if shared <= LIMIT else 'OVER'} (target max/mean <= {LIMIT})")
    return 0 if shared <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
