"""Measure the count refresh and ``/metrics`` at scale, and ``GET /`` behind them.

Starts ZooKeeper and Redis on loopback, registers ``--servers`` connection
servers (5,000 by default) the Java way, each with its online count in
``mp:oul:<ip>``, and runs ``twistd -n mpush-alloc`` with a 1 s refresh
interval (metrics on the main port). Then, for ``--duration`` seconds each:

1. a ``GET /`` client alone (refreshes running);
2. the same client while two ``/metrics`` scrapers loop (own processes, so
   that they do not share this process's interpreter lock with the timer).

``GET /`` is timed sequentially on one kept-alive connection. It prints, per
phase, ``GET /`` p50/p99/max, the refresh duration (mean and the histogram's
share over 10 ms, from the daemon's own ``mpush_alloc_refresh_duration_seconds``:
wall time, Redis round trips included), the scrape size and time, and the
daemon's RSS. The target: ``GET /`` p99 under 20 ms in phase 2.

Last, in this process, the refresher (real Redis, the same servers as
ZooKeeper nodes) refreshing every second for ``--duration`` seconds on the
reactor, with a 1 ms tick measuring how long the reactor was held: what the
daemon's own code costs, without HTTP and the other processes.

    .venv/bin/python benchmarks/refresh_scale.py [--servers 5000] [--duration 20]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cluster import percentiles, wait_until
from benchmarks.soak import rss_kib
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import local_services
from tests.harness.registry import NodeRegistrar

TARGET_P99_MS = 20.0
BATCH = 500  # Redis commands per pipeline when loading the counts


def ip_of(i: int) -> str:
    return f"10.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def scrape_loop(port: int, until: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Scrape /metrics back to back until ``until``; put (seconds, bytes) of each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    took: list[tuple[float, int]] = []
    while time.time() < until:
        start = time.perf_counter()
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        took.append((time.perf_counter() - start, len(body)))
    conn.close()
    out.put(took)


def refresh_figures(conn: http.client.HTTPConnection) -> tuple[float, float, float]:
    """(count, sum in s, count over 10 ms) of the refresh duration histogram."""
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mpush_alloc_refresh_duration_seconds"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    base = "mpush_alloc_refresh_duration_seconds"
    count = values[base + "_count"]
    return count, values[base + "_sum"], count - values[base + '_bucket{le="0.01"}']


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(port: int, pid: int, duration: float, scrapers: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    before = refresh_figures(conn)
    cpu = cpu_seconds(pid)
    until = time.time() + duration
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=scrape_loop, args=(port, until, results))
             for _ in range(scrapers)]
    for p in procs:
        p.start()
    took = []
    while time.time() < until:
        start = time.perf_counter()
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        took.append(time.perf_counter() - start)
        assert response.status == 200, response.status
    scrapes = [s for _ in procs for s in results.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    cpu = cpu_seconds(pid) - cpu
    after = refresh_figures(conn)
    conn.close()
    p50, p99, worst = percentiles(took)
    refreshes = after[0] - before[0]
    mean = 1000 * (after[1] - before[1]) / refreshes if refreshes else float("nan")
    print(f"  GET /      {len(took)} requests: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {worst:.2f} ms")
    print(f"  refreshes  {refreshes:.0f}: mean {mean:.1f} ms, "
          f"{after[2] - before[2]:.0f} over 10 ms")
    if scrapes:
        s50, s99, smax = percentiles([s for s, _ in scrapes])
        size = sum(n for _, n in scrapes) / len(scrapes)
        print(f"  /metrics   {len(scrapes)} scrapes of {size / 1024:.0f} KiB: "
              f"p50 {s50:.1f} ms, p99 {s99:.1f} ms, max {smax:.1f} ms")
    print(f"  daemon RSS {rss_kib(pid) / 1024:.1f} MiB, CPU {cpu:.1f} s in {duration:g} s")
    return p99 < TARGET_P99_MS


def reactor_holds(redis_nodes: list[str], servers: int, duration: float) -> None:
    """Refresh ``servers`` from Redis every second; print the longest gaps of a 1 ms tick."""
    import gc

    from twisted.internet import reactor, task
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    from mpush.balance import BalancePolicy
    from mpush.cluster.redis import RedisService
    from mpush.cluster.server_node import ServerNode
    from mpush.config import RedisSettings
    from mpush.services.refresher import Refresher, RefreshSchedule
    from tests.fakes import View

    host, port = redis_nodes[0].split(":")
    redis = RedisService(RedisSettings(mode="single", nodes=((host, int(port)),), password=None,
                                       connect_timeout=2.0, reply_timeout=3.0), reactor)
    view = View(*[ServerNode(f"cs-{i:05d}", ip_of(i), 3000, {"weight": 1})
                  for i in range(servers)])
    refresher = Refresher(BalancePolicy(), view, redis, schedule=RefreshSchedule(interval=1))
    gaps: list[float] = []
    last = [0.0]
    warnings: list[str] = []

    def keep(event: dict) -> None:  # type: ignore[type-arg]
        if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(keep)

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    def measure() -> None:
        gc.collect()
        gc.freeze()  # as the daemon does after its start
        last[0] = time.perf_counter()
        task.LoopingCall(tick).start(0.001)
        reactor.callLater(duration, reactor.stop)

    redis.startService()
    refresher.startService()
    reactor.callLater(3.0, measure)  # the first refreshes done
    reactor.run()
    held = sorted(gaps)
    longest = ", ".join(f"{1000 * g:.1f}" for g in held[-5:])
    for line in warnings[:3]:
        print(f"  logged: {line}")
    print(f"  {refresher.refreshes} refreshes, {refresher.failures} failed; 1 ms tick gaps: "
          f"p50 {1000 * held[len(held) // 2]:.2f} ms, p99 {1000 * held[int(0.99 * len(held))]:.2f}"
          f" ms, longest {longest} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()

    with local_services("mpush-bench-refresh-") as local:
        registrar = NodeRegistrar(local.zk.connect_string).start()
        local.later.callback(registrar.close)
        started = time.monotonic()
        commands = [("ZADD", f"mp:oul:{ip_of(i)}", 0, f"u{i}-{j}")
                    for i in range(args.servers) for j in range(i % 7)]
        with local.redis.client() as redis:
            for at in range(0, len(commands), BATCH):
                redis.pipeline(commands[at:at + BATCH])
        for i in range(args.servers):
            registrar.register("cs", ip_of(i), 3000)
        print(f"{args.servers} connection servers registered in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        port = free_port()
        config = write_config(local.work / "mpush.conf", port=port,
                              zk=local.zk.connect_string, redis_nodes=local.redis_nodes)
        daemon = Daemon(local.work, config, port=port).start()
        local.later.callback(daemon.terminate)
        daemon.wait_for_body(lambda b: b.count(b",") == args.servers - 1, wait=120)
        pid = daemon.process.pid  # type: ignore[union-attr]

        wait_until(lambda: b"mpush_alloc_refreshes_total 0" not in daemon.get(
            "/metrics", timeout=30)[2], 60, "a first refresh")
        time.sleep(2.0)  # a few refreshes in: caches and allocator warm
        print(f"daemon serving {args.servers} servers, refresh interval 1 s; "
              f"{args.duration:g} s per phase", flush=True)
        print("phase 1: GET / while refreshes run")
        phase(port, pid, args.duration, scrapers=0)
        print("phase 2: GET / while refreshes run and two /metrics scrapers loop")
        ok = phase(port, pid, args.duration, scrapers=2)
        print(f"GET / p99 under scrapes: {'ok' if ok else 'OVER'} (target < {TARGET_P99_MS:g} ms)")
        daemon.terminate()
        print(f"in process: refreshing {args.servers} servers every second for "
              f"{args.duration:g} s", flush=True)
        reactor_holds(local.redis_nodes, args.servers, args.duration)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
