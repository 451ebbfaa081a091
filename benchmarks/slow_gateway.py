"""The daemon against a gateway that accepts its connection and never reads it.

The scenario of the issue "hold under abuse": ZooKeeper and Redis on
loopback, one fake mpush node in its own process
(``python -m tests.harness.fakenode --never-read``: registered in ZooKeeper,
``--users`` users online in Redis, its gateway accepting and reading
nothing), ``twistd -n mpush-alloc`` in a subprocess. Then ``--requests``
``POST /push`` of ``--users`` users each, ``--content`` bytes of content and
a ``--timeout`` of 1000 ms, ``--concurrency`` at a time, while another
client times a sequential ``GET /`` every ``--get-every`` seconds.

Printed: the daemon's VmRSS (``/proc/<pid>/status``) before the pushes,
once they are all answered and ``--settle`` seconds later; the push rows
by result and reason; the answers' statuses; ``GET /`` p50/p99/max; the
daemon's view of the gateway (``/cluster``). Every wait is bounded.

    PYTHONPATH=. .venv/bin/python benchmarks/slow_gateway.py [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from collections import Counter

from benchmarks.cluster import wait_until
from benchmarks.soak import pct, rss_kib
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.local import local_services

PREFIX = "u"


def post(port: int, path: str, body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Pushes:
    """``requests`` POST /push from ``concurrency`` threads; rows counted by (result, reason)."""

    def __init__(self, port: int, body: bytes, requests: int, concurrency: int) -> None:
        self.port, self.body = port, body
        self.left = itertools.count()
        self.requests = requests
        self.rows: Counter[tuple[str, str | None]] = Counter()
        self.statuses: Counter[int | str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.work, daemon=True)
                        for _ in range(concurrency)]

    def work(self) -> None:
        while next(self.left) < self.requests:
            try:
                status, data = post(self.port, "/push", self.body)
            except OSError as e:
                with self.lock:
                    self.statuses[type(e).__name__] += 1
                continue
            rows = json.loads(data).get("results", []) if status == 200 else []
            with self.lock:
                self.statuses[status] += 1
                self.rows.update((r["result"], r["reason"]) for r in rows)

    def run(self, wait: float) -> float:
        began = time.monotonic()
        for t in self.threads:
            t.start()
        for t in self.threads:
            t.join(max(0.0, began + wait - time.monotonic()))
        if any(t.is_alive() for t in self.threads):
            raise TimeoutError(f"pushes not all answered within {wait} s")
        return time.monotonic() - began


class Sampler(threading.Thread):
    """A sequential ``GET /`` every ``every`` seconds on one keep-alive connection."""

    def __init__(self, port: int, every: float) -> None:
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.took: list[float] = []
        self.errors: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        while not self.stop.wait(self.every):
            start = time.perf_counter()
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
            except OSError as e:
                self.errors[type(e).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
                continue
            if response.status == 200:
                self.took.append(time.perf_counter() - start)
            else:
                self.errors[str(response.status)] += 1
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--users", type=int, default=100, help="users per request")
    parser.add_argument("--content", type=int, default=9000, help="bytes of content")
    parser.add_argument("--concurrency", type=int, default=10, help="requests at a time")
    parser.add_argument("--get-every", type=float, default=0.02, help="s between GET /")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="s after the last answer before the last RSS reading")
    parser.add_argument("--wait", type=float, default=600.0, help="bound on the pushes, s")
    args = parser.parse_args()
    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    with local_services("mpush-bench-slowgw-") as local:
        node = FakeNodeProcess(local.zk.connect_string, local.redis_nodes[0], users=args.users,
                               user_prefix=PREFIX, args=["--record", "0", "--never-read"])
        local.later.enter_context(node)
        port = free_port()
        config = write_config(local.work / "mpush.conf", port=port,
                              zk=local.zk.connect_string, redis_nodes=local.redis_nodes)
        daemon = Daemon(local.work, config, port=port).start()
        local.later.callback(daemon.kill)
        daemon.wait_for_body(lambda body: b":" in body, wait=30.0)
        wait_until(lambda: json.loads(daemon.get("/health")[2])["gateways"]["connected"] > 0,
                   30.0, "the gateway connected")
        say(f"daemon pid {daemon.pid}; gateway {node.address} never reads; "
            f"{args.requests} x {args.users} users x {args.content} B, timeout 1000 ms, "
            f"{args.concurrency} at a time")
        body = json.dumps({"userIds": [f"{PREFIX}{i}" for i in range(args.users)],
                           "content": "x" * args.content, "timeout": 1000}).encode()
        rss_before = rss_kib(daemon.pid)
        sampler = Sampler(port, args.get_every)
        sampler.start()
        pushes = Pushes(port, body, args.requests, args.concurrency)
        took = pushes.run(args.wait)
        rss_answered = rss_kib(daemon.pid)
        time.sleep(args.settle)
        sampler.stop.set()
        sampler.join(15.0)
        rss_settled = rss_kib(daemon.pid)
        say(f"pushes answered in {took:.1f} s; statuses {dict(pushes.statuses)}")
        for (result, reason), n in sorted(pushes.rows.items(), key=lambda kv: -kv[1]):
            say(f"  {n:6d} rows {result}/{reason}")
        say(f"daemon VmRSS: before {rss_before / 1024:.1f} MiB, all answered "
            f"{rss_answered / 1024:.1f} MiB, {args.settle:g} s later "
            f"{rss_settled / 1024:.1f} MiB")
        lat = sampler.took
        say(f"GET / during the pushes: {len(lat)} answered, errors {dict(sampler.errors)}; "
            f"p50 {pct(lat, 50) * 1000:.2f} ms, p99 {pct(lat, 99) * 1000:.2f} ms, "
            f"max {max(lat, default=float('nan')) * 1000:.2f} ms")
        for row in json.loads(daemon.get("/cluster")[2]).get("gatewayServers", []):
            say(f"/cluster gateway row: {json.dumps(row)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
