"""Single-user pushes over TCP and over UDP gateways, side by side in one run.

Starts ZooKeeper and Redis on loopback and two fake mpush nodes in their own
processes (``python -m tests.harness.fakenode``), each with ``--users`` users
online: one with a TCP gateway port (ZooKeeper namespace ``bench-tcp``, users
``t<i>``), one with a UDP gateway port (``--udp``, namespace ``bench-udp``,
users ``d<i>``). In this process, on one reactor run: a ``PushClient`` over a
``GatewayPool`` (TCP) and another over ``UdpGateways`` (UDP), each with its
own ``ZkWatcher`` and a shared ``RedisService``. Each route cache is warmed
by one push to every user; then, alternating TCP and UDP for ``--rounds``
rounds: pushes with 100 in flight for ``--seconds`` (pushes/s), and with 10
in flight (latency: ``time.perf_counter`` around each ``push()``, p50/p99).
Also this process's CPU time per push at 100 in flight (``time.process_time``):
the pusher's own cost, whatever the fake nodes' share of the two cores; and
the fake node's (its gateway's) CPU per push, from ``/proc/<pid>/stat``.
``--pin`` runs this process on CPU 0 and the fake nodes on CPU 1.
``--profile PREFIX`` profiles this process during the 100-in-flight runs
(cProfile timing CPU, not wall time, into ``PREFIX-tcp.prof`` and ``PREFIX-udp.prof``; the
profiler's own cost inflates the CPU figures of that run).

All on loopback; every loop is bounded in count and time.

    .venv/bin/python benchmarks/push_udp.py [--users 10000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.push import drive_pushes, pct
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer


def measure(zk: str, redis_port: int, nodes: dict[str, FakeNodeProcess], users: int,
            args: argparse.Namespace) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per transport, a round's (pushes/s, p50 ms, p99 ms, non-success, CPU us/push, node's)."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred, maybeDeferred
    from twisted.internet.task import deferLater

    from mpush.cluster.gateway_udp import UdpGatewayOptions, UdpGateways
    from mpush.cluster.gateways import GatewayPool
    from mpush.cluster.redis import RedisService
    from mpush.cluster.zookeeper import ZkWatcher
    from mpush.config.settings import RedisSettings, ZkSettings
    from mpush.services.pusher import PushClient

    out: dict[str, Any] = {"tcp": [], "udp": []}
    profiles = ({kind: cProfile.Profile(time.process_time) for kind in ("tcp", "udp")}
                if args.profile else {})

    async def run() -> None:
        redis = RedisService(RedisSettings(nodes=(("127.0.0.1", redis_port),)))
        services: list[Any] = [redis]
        clients: dict[str, tuple[PushClient, list[str]]] = {}
        try:
            await maybeDeferred(redis.startService)
            for kind in ("tcp", "udp"):
                view = ZkWatcher(ZkSettings(server_address=zk, namespace=f"bench-{kind}"))
                requester: Any = (GatewayPool(view) if kind == "tcp" else UdpGateways(
                    view, options=UdpGatewayOptions(port=0, interface="127.0.0.1")))
                for service in (view, requester):
                    await maybeDeferred(service.startService)
                    services.append(service)
                address = nodes[kind].address
                deadline = time.monotonic() + 30
                while not requester.is_connected(address):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{kind}: gateway {address} never usable")
                    await deferLater(reactor, 0.05, lambda: None)
                client = PushClient(requester, redis, max_inflight=10_000)
                ids = [f"{kind[0]}{i}" for i in range(users)]
                n, secs, counts = await drive_pushes(client, iter(ids), 100, 120.0, None)  # warm
                if counts["success"] != n:
                    raise RuntimeError(f"{kind} warm-up: {dict(counts)}")
                clients[kind] = (client, ids)
            for _ in range(args.rounds):
                for kind, (client, ids) in clients.items():
                    cpu, node_cpu = time.process_time(), _process_cpu(nodes[kind])
                    if profiles:
                        profiles[kind].enable()
                    n, secs, counts = await drive_pushes(
                        client, itertools.islice(itertools.cycle(ids), args.max), 100,
                        args.seconds, None)
                    if profiles:
                        profiles[kind].disable()
                    cpu_us = (time.process_time() - cpu) / max(n, 1) * 1e6
                    node_us = (_process_cpu(nodes[kind]) - node_cpu) / max(n, 1) * 1e6
                    lat: list[float] = []
                    n10, _, counts10 = await drive_pushes(
                        client, itertools.islice(itertools.cycle(ids), args.max), 10,
                        args.seconds, lat)
                    bad = (n - counts["success"]) + (n10 - counts10["success"])
                    out[kind].append((n / secs, pct(lat, 50) * 1000, pct(lat, 99) * 1000, bad,
                                      cpu_us, node_us))
        finally:
            for service in reversed(services):
                await maybeDeferred(service.stopService)
            for kind, profile in profiles.items():
                profile.dump_stats(f"{args.profile}-{kind}.prof")

    def go() -> None:
        d = ensureDeferred(run())
        d.addErrback(lambda f: out.__setitem__("error", f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if "error" in out:
        out["error"].raiseException()
    return out


def _process_cpu(node: FakeNodeProcess) -> float:
    """CPU seconds (user + system) the node's process has used; 0 if unknown."""
    if node.process is None:
        return 0.0
    try:
        fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000, help="online users per node")
    parser.add_argument("--seconds", type=float, default=5.0, help="time bound of each run")
    parser.add_argument("--max", type=int, default=200_000, help="push bound of each run")
    parser.add_argument("--rounds", type=int, default=3, help="TCP, UDP alternations")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="cProfile the 100-in-flight runs: PREFIX-tcp.prof, PREFIX-udp.prof")
    parser.add_argument("--pin", action="store_true",
                        help="this process on CPU 0, the fake nodes on CPU 1")
    args = parser.parse_args()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mpush-bench-udp-"))
    zk = ZooKeeperServer(base_dir=str(work / "zk"))
    redis = RedisServer()
    nodes: dict[str, FakeNodeProcess] = {}
    try:
        zk.start()
        redis.start()
        for kind, extra in (("tcp", []), ("udp", ["--udp"])):
            nodes[kind] = node = FakeNodeProcess(zk.connect_string, f"127.0.0.1:{redis.port}",
                                                 namespace=f"bench-{kind}", users=args.users,
                                                 user_prefix=kind[0],
                                                 args=["--record", "0", *extra]).start()
            if args.pin and node.process is not None:
                os.sched_setaffinity(node.process.pid, {1})
        if args.pin:
            os.sched_setaffinity(0, {0})
        print(f"{os.cpu_count()} cores shared by both fake nodes and this process; load "
              f"average before: {os.getloadavg()[0]:.2f}", flush=True)
        figures = measure(zk.connect_string, redis.port, nodes, args.users, args)
        print(f"\n{'transport':<10} {'round':>5} {'pushes/s (100 in flight)':>26} "
              f"{'CPU us/push':>12} {'node us/push':>12} {'p50 ms (10)':>12} {'p99 ms (10)':>12}"
              f" {'non-success':>12}")
        for i in range(args.rounds):
            for kind in ("tcp", "udp"):
                rate, p50, p99, bad, cpu_us, node_us = figures[kind][i]
                print(f"{kind:<10} {i + 1:>5} {rate:>26,.0f} {cpu_us:>12.0f} {node_us:>12.0f}"
                      f" {p50:>12.2f} {p99:>12.2f} {bad:>12}")
        med = {k: (statistics.median(r[0] for r in v), statistics.median(r[2] for r in v),
                   statistics.median(r[4] for r in v), statistics.median(r[5] for r in v))
               for k, v in figures.items()}
        print(f"\nmedian pushes/s: tcp {med['tcp'][0]:,.0f}, udp {med['udp'][0]:,.0f} "
              f"(udp/tcp {med['udp'][0] / med['tcp'][0]:.2f}; target >= 1.00: "
              f"{'met' if med['udp'][0] >= med['tcp'][0] else 'MISSED'})")
        print(f"median p99 at 10 in flight: tcp {med['tcp'][1]:.2f} ms, udp {med['udp'][1]:.2f} ms")
        print(f"median CPU of this process per push: tcp {med['tcp'][2]:.0f} us,"
              f" udp {med['udp'][2]:.0f} us; of the fake node: tcp {med['tcp'][3]:.0f} us,"
              f" udp {med['udp'][3]:.0f} us")
        print(f"total run time {time.monotonic() - began:.0f} s")
        return 0
    finally:
        for node in nodes.values():
            try:
                node.terminate()
            finally:
                node.kill()
        redis.close()
        zk.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
