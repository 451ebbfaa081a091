"""Measure ``GET /`` and ``GET /ws`` of the real daemon against a bare twisted.web Site.

Starts ZooKeeper and Redis on loopback, registers 50 connection servers and
50 websocket servers (one of each per IP, as a Java server with
``ws-server-port`` set) the Java way with online counts, runs ``twistd -n
mpush-alloc`` (file log, access log off: the default), and a bare Site
answering a body of the same size. Then wrk (Debian's) alternates between
``/``, ``/ws`` and the bare Site, ``-t2 -c50`` each, and measures the three
on one connection (``-t1 -c1``). Prints req/s and latency percentiles, and
the share of the bare Site's req/s of ``/`` and of ``/ws``.

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
WS_PORT = 8080  # as many digits as 3000: both bodies have the bare Site's size

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
    from mpush.web.root import RootResource, WebsocketResource
    from mpush.web.site import AllocSite

    def policy(port: int) -> BalancePolicy:
        made = BalancePolicy()
        made.set_servers([Candidate(f"10.9.0.{i}:{port}", f"10.9.0.{i}")
                          for i in range(1, SERVERS + 1)])
        token = made.begin_refresh()
        made.apply_counts(token, {f"10.9.0.{i}": i * 7 for i in range(1, SERVERS + 1)})
        return made

    root = RootResource(policy(3000))
    root.putChild(b"ws", WebsocketResource(policy(WS_PORT)))
    site = AllocSite(root)
    for path in (b"/", b"/ws"):
        took = time_in_process(site, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                               requests)
        took.sort()
        us = [1e6 * took[int(q * (len(took) - 1))] for q in (0.5, 0.99, 0.999)]
        print(f"server side only, GET {path.decode()} (in-process Site, {SERVERS} servers,"
              f" {requests} GETs): p50 {us[0]:.0f} µs, p99 {us[1]:.0f} µs,"
              f" p99.9 {us[2]:.0f} µs")


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
            registrar.register("ws", ip, WS_PORT)  # the same process's mp:oul set
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
        ws_body = daemon.wait_for_body(lambda b: b.count(b",") == SERVERS - 1, wait=30,
                                       path="/ws")
        assert len(ws_body) == len(body), (ws_body, body)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_site.py")),
                                 str(bare_port), body.decode()])
        local.later.callback(lambda: (bare.terminate(), bare.wait(timeout=10)))
        time.sleep(1.0)
        urls = {"ours /": f"http://127.0.0.1:{port}/",
                "ours /ws": f"http://127.0.0.1:{port}/ws",
                "bare": f"http://127.0.0.1:{bare_port}/"}
        print(f"{SERVERS} connection and {SERVERS} websocket servers; body {len(body)} bytes;"
              f" wrk {args.duration}s per run, {args.rounds} rounds alternating")
        for url in urls.values():  # warm-up
            wrk(url, 2, 50, 2)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for n in range(args.rounds):
            for name, url in urls.items():
                runs[name].append(wrk(url, 2, 50, args.duration))
                print(row(f"{name:<8} -t2 -c50 (round {n + 1})", runs[name][-1]), flush=True)
        one = {}
        for name, url in urls.items():
            one[name] = wrk(url, 1, 1, args.duration)
            print(row(f"{name:<8} -t1 -c1", one[name]))
        rps = {name: sum(r["rps"] for r in made) / len(made) for name, made in runs.items()}
        for name in ("ours /", "ours /ws"):
            print(f"-c50 mean: {name} {rps[name]:.0f} req/s, bare {rps['bare']:.0f} req/s "
                  f"-> {100 * rps[name] / rps['bare']:.1f} % of bare (target >= 90 %)")
            print(f"-c1: {name} p99 {one[name]['p99']:.3f} ms (target < 1 ms), "
                  f"{one[name]['rps']:.0f} req/s")
        server_side_latency()
        status, _, final = daemon.get("/")
        print(f"daemon still serving: {status}, {final.count(b',') + 1} servers listed")
        status, _, final = daemon.get("/ws")
        print(f"GET /ws still serving: {status}, {final.count(b',') + 1} servers listed")
        return 0


if __name__ == "__main__":
    sys.exit(main())
