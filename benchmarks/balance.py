"""How evenly the allocation policies spread new clients (a simulation).

Ten connection servers, one per IP, start with 0, 1000, ..., 9000 online
users. 100,000 clients arrive evenly over 5 minutes; each asks GET / and
connects to the FIRST server of the answer, which raises that server's count
in the (simulated) Redis. The real policies and the real Refresher run on a
task.Clock with the in-memory ZooKeeper view and Redis of tests/fakes.py, so
nothing depends on wall-clock time and every run prints the same balance figures.

Run: .venv/bin/python benchmarks/balance.py
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.task import Clock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpush.balance import (
    JAVA_REFRESH_INTERVAL,
    AllocPolicy,
    BalancePolicy,
    Candidate,
    JavaPolicy,
)
from mpush.config import AllocSettings
from mpush.services.refresher import Refresher, RefreshSchedule
from tests.fakes import Cache, Node, View

# Ours refreshes at the default of mp.alloc.refresh-interval.
OUR_INTERVAL = float(AllocSettings.refresh_interval)

SERVERS = 10
START_COUNTS = [1000 * i for i in range(SERVERS)]
WEIGHTS = [1, 1, 1, 1, 1, 2, 2, 2, 4, 4]
CLIENTS = 100_000
DURATION = 300.0  # s
LIMIT = 1.05


def simulate(
    policy: AllocPolicy, interval: float, weights: Sequence[float], connect_delay: float = 0.0
) -> list[int]:
    """Final online count per server."""
    ips = [f"10.0.0.{i + 1}" for i in range(SERVERS)]
    view = View(*(
        Node(f"cs{i:02d}", ip, 3000, {"weight": w})
        for i, (ip, w) in enumerate(zip(ips, weights, strict=True))
    ))  # the cluster does not change during the run
    redis = Cache(dict(zip(ips, START_COUNTS, strict=True)), missing=0)
    clock = Clock()
    schedule = RefreshSchedule(interval=interval, change_delay=1.0)
    refresher = Refresher(policy, view, redis, schedule=schedule, reactor=clock)
    refresher.startService()

    # Late connects wait in a FIFO rather than as Clock calls: Clock keeps
    # its calls in one list, which makes hundreds of pending ones slow.
    connecting: deque[tuple[float, str]] = deque()

    def arrive(until: float) -> None:
        while connecting and connecting[0][0] <= until:
            redis.counts[connecting.popleft()[1]] += 1

    for i in range(CLIENTS):
        now = i * DURATION / CLIENTS
        arrive(now)
        clock.advance(now - clock.seconds())
        body = policy.allocate()
        assert body is not None
        ip = body.split(b",", 1)[0].rsplit(b":", 1)[0].decode()
        connecting.append((now + connect_delay, ip))
        arrive(now)
    arrive(float("inf"))
    clock.advance(DURATION - clock.seconds())
    refresher.stopService()
    return [redis.counts[ip] for ip in ips]


def ratio(counts: Sequence[int], weights: Sequence[float]) -> float:
    per_weight = [c / w for c, w in zip(counts, weights, strict=True)]
    return max(per_weight) / (sum(per_weight) / len(per_weight))


def allocate_cost(policy: AllocPolicy, calls: int = 200_000, servers: int = 50) -> float:
    """µs per allocate() with ``servers`` servers of mixed weights."""
    policy.set_servers(
        Candidate(f"10.1.{i // 200}.{i % 200 + 1}:3000", f"10.1.{i // 200}.{i % 200 + 1}",
                  float(1 + i % 4))
        for i in range(servers)
    )
    token = policy.begin_refresh()
    policy.apply_counts(token, {ip: 1000 * (i % 7) for i, ip in enumerate(token.ips)})
    allocate = policy.allocate
    for _ in range(calls // 4):  # warm up into the balanced regime
        allocate()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            allocate()
        best = min(best, time.perf_counter() - t0)
    return best / calls * 1e6


def main() -> int:
    flat = [1.0] * SERVERS
    runs: list[tuple[str, Callable[[], AllocPolicy], float, float, bool]] = [
        ("java   (sort at refresh)", JavaPolicy, JAVA_REFRESH_INTERVAL, 0.0, False),
        ("java order, our interval", JavaPolicy, OUR_INTERVAL, 0.0, False),
        ("ours   (handout counting)", BalancePolicy, OUR_INTERVAL, 0.0, True),
        ("ours, clients connect 2 s late", BalancePolicy, OUR_INTERVAL, 2.0, False),
    ]
    print(f"{SERVERS} servers, start counts {START_COUNTS[0]}..{START_COUNTS[-1]}, "
          f"{CLIENTS} clients over {DURATION:.0f} s; ratio = max/mean of online/weight")
    print(f"{'policy':32} {'interval':>8} {'equal w':>8} {'weighted':>8}  final counts (equal w)")
    ok = True
    for label, make, interval, delay, checked in runs:
        equal = simulate(make(), interval, flat, delay)
        weighted = simulate(make(), interval, WEIGHTS, delay)
        r_eq, r_w = ratio(equal, flat), ratio(weighted, WEIGHTS)
        print(f"{label:32} {interval:7.0f}s {r_eq:8.3f} {r_w:8.3f}  {equal}")
        if checked and (r_eq > LIMIT or r_w > LIMIT):
            ok = False
    print(f"weighted: weights {WEIGHTS}")
    print(f"allocate() cost, 50 servers: ours {allocate_cost(BalancePolicy()):.2f} µs/call, "
          f"java {allocate_cost(JavaPolicy()):.2f} µs/call")
    if not ok:
        print(f"FAIL: our ratio above {LIMIT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
