"""Measure ``GET /`` of the real daemon against a bare twisted.web Site.

Starts ZooKeeper and Redis on loopback, registers 50 connection servers the
Java way with online counts, runs ``twistd -n mpush-alloc`` (file log,
access log off: the default), and a bare Site answering the same body. Then
wrk (Debian's) alternates between them, ``-t2 -c50`` each, and measures ours
and the bare Site on one connection (``-t1 -c1``). Prints req/s and latency
percentiles, and our share of the bare Site's req/s.

    .venv/bin/python benchmarks/alloc_http.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import local_services, time_in_process
from tests.harness.registry import NodeRegistrar

SERVERS = 50

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


WRK_PREFIX: list[str] = []


def wrk(url: str, threads: int, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [*WRK_PREFIX, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
         "--latency", url],
        capture_output=True, text=True, check=True, timeout=duration + 30,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        result[f"p{pct}"] = _ms(match.group(1)) if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def row(name: str, r: dict[str, float]) -> str:
    return (f"{name:<34} {r['rps']:>9.0f} req/s   p50 {r['p50']:6.2f} ms   "
            f"p90 {r['p90']:6.2f} ms   p99 {r['p99']:6.2f} ms   non-2xx {r['non2xx']:.0f}")


def server_side_latency(requests: int = 50_000) -> None:
    """Time our Site alone, in this process, on a StringTransport: what the
    resource, the policy and twisted.web cost per request, without the
    network and the scheduler (which dominate the -c1 tail on 2 cores)."""
    from mpush.balance import BalancePolicy, Candidate
    from mpush.web.root import RootResource
    from mpush.web.site import AllocSite

    policy = BalancePolicy()
    policy.set_servers([Candidate(f"10.9.0.{i}:3000", f"10.9.0.{i}") for i in range(1, 51)])
    token = policy.begin_refresh()
    policy.apply_counts(token, {f"10.9.0.{i}": i * 7 for i in range(1, 51)})
    site = AllocSite(RootResource(policy))
    took = time_in_process(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", requests)
    took.sort()
    us = [1e6 * took[int(q * (len(took) - 1))] for q in (0.5, 0.99, 0.999)]
    print(f"server side only (in-process Site, 50 servers, {requests} GETs): "
          f"p50 {us[0]:.0f} µs, p99 {us[1]:.0f} µs, p99.9 {us[2]:.0f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pin-wrk", action="store_true",
                        help="run wrk on CPU 1 only (taskset), away from the servers' core")
    args = parser.parse_args()
    if args.pin_wrk:
        WRK_PREFIX[:] = ["taskset", "-c", "1"]
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2

    with local_services() as local:
        zk, redis = local.zk, local.redis
        registrar = NodeRegistrar(zk.connect_string).start()
        local.later.callback(registrar.close)
        for i in range(1, SERVERS + 1):
            ip = f"10.9.0.{i}"
            registrar.register("cs", ip, 3000)
            # Uneven counts: the policy's handout accounting then reorders
            # the list during the run, as it would under real load.
            members = [x for j in range(i * 7) for x in (str(j), f"u{i}-{j}")]
            redis.call("ZADD", f"mp:oul:{ip}", *members)
        port = free_port()
        config = write_config(local.work / "mpush.conf", port=port, zk=zk.connect_string,
                              redis_nodes=local.redis_nodes,
                              alloc_extra="refresh-interval = 30s")
        daemon = Daemon(local.work, config, port=port).start()
        local.later.callback(daemon.terminate)
        body = daemon.wait_for_body(lambda b: b.count(b",") == SERVERS - 1, wait=30)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_site.py")),
                                 str(bare_port), body.decode()])
        local.later.callback(lambda: (bare.terminate(), bare.wait(timeout=10)))
        time.sleep(1.0)
        ours_url, bare_url = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{bare_port}/"
        print(f"{SERVERS} connection servers; body {len(body)} bytes; "
              f"wrk {args.duration}s per run, {args.rounds} rounds alternating")
        for url in (ours_url, bare_url):  # warm-up
            wrk(url, 2, 50, 2)
        ours_runs, bare_runs = [], []
        for n in range(args.rounds):
            ours_runs.append(wrk(ours_url, 2, 50, args.duration))
            print(row(f"ours  -t2 -c50 (round {n + 1})", ours_runs[-1]), flush=True)
            bare_runs.append(wrk(bare_url, 2, 50, args.duration))
            print(row(f"bare  -t2 -c50 (round {n + 1})", bare_runs[-1]), flush=True)
        ours_one = wrk(ours_url, 1, 1, args.duration)
        print(row("ours  -t1 -c1", ours_one))
        bare_one = wrk(bare_url, 1, 1, args.duration)
        print(row("bare  -t1 -c1", bare_one))
        ours_rps = sum(r["rps"] for r in ours_runs) / len(ours_runs)
        bare_rps = sum(r["rps"] for r in bare_runs) / len(bare_runs)
        print(f"-c50 mean: ours {ours_rps:.0f} req/s, bare {bare_rps:.0f} req/s "
              f"-> ours = {100 * ours_rps / bare_rps:.1f} % of bare (target >= 90 %)")
        print(f"-c1: ours p99 {ours_one['p99']:.3f} ms (target < 1 ms), "
              f"{ours_one['rps']:.0f} req/s")
        server_side_latency()
        status, _, final = daemon.get("/")
        print(f"daemon still serving: {status}, {final.count(b',') + 1} servers listed")
        return 0


if __name__ == "__main__":
    sys.exit(main())
