"""How evenly the allocation policies spread new clients (a simulation).

Ten connection servers, one per IP, start with 0, 1000, ..., 9000 online
users. 100,000 clients arrive evenly over 5 minutes; each asks GET / and
connects to the FIRST server of the answer, which raises that server's count
in the (simulated) Redis. The real policies and the real Refresher run on a
task.Clock with the in-memory ZooKeeper view and Redis of tests/fakes.py, so
nothing depends on wall-clock time and every run prints the same balance figures.

Then several alloc instances behind one load balancer (issue 10, part 3):
K = 1, 2, 4, 8 instances, each its own policy, refresher and (when sharing)
handout sharer on the same view and Redis, their refreshes at different
phases, fed by round-robin or by (seeded) random balancing; each alone or
sharing handout counts through a shared sum (the Redis hash, in memory).
The measure is max/mean of the final online counts per weight: what a
connection server carries is what balance is for. Cases: the steady run above
(equal and mixed weights), and a burst: ten servers at 5,000 users, one
restarts empty, 10,000 clients arrive in the next 10 s (ideal: it gets 5,500).

Run: .venv/bin/python benchmarks/balance.py
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
from mpush.services.handout_sharing import HandoutSharer
from mpush.services.refresher import Refresher, RefreshSchedule
from tests.fake_sharing import MemorySums
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


# -- several instances ---------------------------------------------------------

SHARE_INTERVAL = float(AllocSettings.share_handouts_interval)  # s between two exchanges
INSTANCES = (1, 2, 4, 8)
BALANCERS = ("round-robin", "random")


@dataclass(frozen=True)
class Case:
    name: str
    start: Sequence[int]  # online users per server before the clients come
    weights: Sequence[float]
    clients: int
    duration: float  # s over which they arrive
    restart: bool = False  # server 0 restarts empty (0 users, a new node) just before


CASES = (
    Case("steady, equal w", START_COUNTS, [1.0] * SERVERS, CLIENTS, DURATION),
    Case("steady, weighted", START_COUNTS, WEIGHTS, CLIENTS, DURATION),
    Case("burst after restart", [5000] * SERVERS, [1.0] * SERVERS, 10_000, 10.0, restart=True),
)


def run_instances(case: Case, k: int, balancer: str, share: float | None, seed: int = 7) -> float:
    """max/mean of the final online counts per weight, ``k`` instances."""
    ips = [f"10.0.0.{i + 1}" for i in range(SERVERS)]
    nodes = [Node(f"cs{i:02d}", ip, 3000, {"weight": w})
             for i, (ip, w) in enumerate(zip(ips, case.weights, strict=True))]
    view = View(*nodes)
    redis = Cache(dict(zip(ips, case.start, strict=True)), missing=0)
    clock = Clock()
    sums = MemorySums()
    policies: list[BalancePolicy] = []
    services: list[Refresher | HandoutSharer] = []
    schedule = RefreshSchedule(interval=OUR_INTERVAL, change_delay=AllocSettings.change_delay)
    for j in range(k):
        policy = BalancePolicy()
        policies.append(policy)
        # Different phases: instance j started j/k of a period after instance 0.
        services.append(Refresher(policy, view, redis, schedule=schedule, reactor=clock))
        clock.callLater(j * OUR_INTERVAL / k, services[-1].startService)
        if share is not None:
            services.append(HandoutSharer(policy, sums, interval=share, reactor=clock))
            clock.callLater(j * share / k + 1e-4, services[-1].startService)
    clock.advance(OUR_INTERVAL)  # every instance has its list
    if case.restart:
        redis.counts[ips[0]] = 0
        view.set(replace(nodes[0]), *nodes[1:])  # a new node object: re-registered
        clock.advance(0.5)
    start = clock.seconds()
    rng = random.Random(seed)
    for i in range(case.clients):
        clock.advance(start + i * case.duration / case.clients - clock.seconds())
        j = i % k if balancer == "round-robin" else rng.randrange(k)
        body = policies[j].allocate()
        assert body is not None
        redis.counts[body.split(b",", 1)[0].rsplit(b":", 1)[0].decode()] += 1
    for service in services:
        service.stopService()
    return ratio([redis.counts[ip] for ip in ips], case.weights)


def instances_table() -> bool:
    """Prints the table; True if sharing meets the target in every case."""
    print()
    print(f"{'case':22} {'K':>2} {'balancer':12} {'alone':>7} {'shared':>7}   "
          f"(max/mean of final online/weight; sharing every {SHARE_INTERVAL:g} s)")
    ok = True
    for case in CASES:
        for k in INSTANCES:
            for balancer in BALANCERS:
                alone = run_instances(case, k, balancer, None)
                shared = run_instances(case, k, balancer, SHARE_INTERVAL)
                ok = ok and shared <= LIMIT
                print(f"{case.name:22} {k:2} {balancer:12} {alone:7.3f} {shared:7.3f}")
    return ok


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
    ok = instances_table() and ok
    if not ok:
        print(f"FAIL: our ratio above {LIMIT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
