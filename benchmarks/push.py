"""Measure single-user pushes against a fake mpush gateway in its own process.

Starts ZooKeeper and Redis on loopback and one fake mpush node
(``python -m tests.harness.fakenode``: a gateway server speaking the real
wire format) with ``--users`` users online (routes in Redis). Then:

1. **Library API**: ``PushClient`` with a real ``GatewayPool``, ``ZkWatcher``
   and ``RedisService`` in this process, on the reactor. The route cache is
   warmed by one push to every user; then single-user pushes with 100 in
   flight (throughput) and with 10 in flight (latency, ``time.perf_counter``
   around each ``push()``), each bounded by ``--lib-seconds`` and
   ``--lib-max`` pushes. Then ``--memory-ids`` distinct user ids (the
   registered ones and the rest without a route) once each, to show the route
   cache's size afterwards (``len(client.routes)``).
2. **POST /push of the real daemon** (``twistd -n mpush-alloc`` in a
   subprocess): its route cache warmed by one push to every user, then wrk
   (Debian's) with a Lua script posting ``{"userId":"u<i>","content":"hi"}``
   rotating over the users, ``-t2 -c100`` then ``-t1 -c10``; the script
   counts the answers that are not ``200`` with ``"success":1`` and keeps a
   sample body.
3. **Memory**: the daemon's VmRSS (``/proc/<pid>/status``, pid from its
   pidfile) before and after ``--memory-ids`` pushes, one per distinct user
   id (the registered users and the rest without a route, i.e. offline),
   posted by a bounded asyncio client on loopback.

All on loopback; every loop is bounded in count and time.

    .venv/bin/python benchmarks/push.py [--duration 10] [--lib-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer

CONTENT = b"hi"
PREFIX = "u"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

# wrk: each thread walks the users from its own offset; response() counts
# answers that are not 200 with exactly one success.
WRK_LUA = r"""
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  users = tonumber(args[1])
  i = tid * math.floor(users / 2 + 0.5)
  ok = 0
  bad = 0
  sample_ok = ""
  sample_bad = ""
end

function request()
  local body = '{"userId":"PREFIX' .. (i % users) .. '","content":"hi"}'
  i = i + 1
  return wrk.format("POST", "/push", {["Content-Type"] = "application/json"}, body)
end

local want = '"summary":{"success":1,"failure":0,"offline":0,"timeout":0}'

function response(status, headers, body)
  if status == 200 and string.find(body, want, 1, true) then
    ok = ok + 1
    if sample_ok == "" then sample_ok = body end
  else
    bad = bad + 1
    if sample_bad == "" then sample_bad = status .. " " .. body end
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("LUA ok=%d bad=%d\n", t:get("ok"), t:get("bad")))
    io.write("LUA sample_ok=" .. t:get("sample_ok") .. "\n")
    if t:get("sample_bad") ~= "" then
      io.write("LUA sample_bad=" .. t:get("sample_bad") .. "\n")
    end
  end
end
""".replace("PREFIX", PREFIX)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


# --------------------------------------------------------------------------
# 1. Library API, in this process, on the reactor
# --------------------------------------------------------------------------


async def drive_pushes(client: Any, ids: Iterator[str], in_flight: int, seconds: float,
                      latencies: list[float] | None) -> tuple[int, float, Counter[str]]:
    """``in_flight`` workers pushing ids from ``ids`` one user at a time until it
    ends or time is up: (pushes, seconds, results by outcome)."""
    from twisted.internet.defer import ensureDeferred

    counts: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        for uid in ids:
            t0 = time.perf_counter()
            results = await client.push([uid], CONTENT)
            t1 = time.perf_counter()
            if latencies is not None:
                latencies.append(t1 - t0)
            counts.update(r.result for r in results)
            if t1 > deadline:
                return

    start = time.perf_counter()
    for w in [ensureDeferred(worker()) for _ in range(in_flight)]:
        await w
    return sum(counts.values()), time.perf_counter() - start, counts


def library_phase(config: Path, gateway: str, users: int, args: argparse.Namespace
                  ) -> dict[str, Any]:
    """Run the library measurements on the reactor; returns the figures.

    The reactor runs once (it cannot be restarted): the services are stopped
    before it stops, and the daemon phases run after, without it.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred, maybeDeferred
    from twisted.internet.task import deferLater

    from mpush.cluster.gateways import GatewayPool, GatewayPoolOptions
    from mpush.cluster.redis import RedisService
    from mpush.cluster.zookeeper import ZkWatcher
    from mpush.config import load_settings
    from mpush.services.pusher import PushClient

    out: dict[str, Any] = {}
    user_ids = [f"{PREFIX}{i}" for i in range(users)]

    def cycle(n: int) -> Iterator[str]:
        return itertools.islice(itertools.cycle(user_ids), n)

    async def run() -> None:
        settings = load_settings(str(config))
        zk = ZkWatcher(settings.zk)
        redis = RedisService(settings.redis)
        options = GatewayPoolOptions(max_packet_size=settings.max_packet_size)
        pool = GatewayPool(zk, options=options)
        started = []
        try:
            for service in (zk, redis, pool):
                await maybeDeferred(service.startService)
                started.append(service)
            deadline = time.monotonic() + 30
            while not pool.is_connected(gateway):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the pool never connected to {gateway}")
                await deferLater(reactor, 0.05, lambda: None)
            client = PushClient(pool, redis, max_inflight=settings.alloc.max_inflight_pushes,
                                max_packet_size=settings.max_packet_size)

            # Warm-up: every route in the cache, the connections and code hot.
            n, secs, counts = await drive_pushes(client, iter(user_ids), 100, 60.0, None)
            out["warm"] = (n, secs, counts, client.routes.reads)
            n, secs, counts = await drive_pushes(client, cycle(5_000), 100, 5.0, None)

            reads_before = client.routes.reads
            n, secs, counts = await drive_pushes(client, cycle(args.lib_max), 100, args.lib_seconds,
                                          None)
            out["tput"] = (n, secs, counts, client.routes.reads - reads_before)

            lat: list[float] = []
            n, secs, counts = await drive_pushes(client, cycle(args.lib_max), 10,
                                                 args.lib_seconds, lat)
            out["lat"] = (n, secs, counts, lat)

            # The route cache after one push per distinct id (offline ones
            # are cached for negative_route_ttl, then linger until evicted).
            ids = [f"{PREFIX}{i}" for i in range(args.memory_ids)]
            random.Random(1).shuffle(ids)
            rss0 = rss_kib(os.getpid())
            n, secs, counts = await drive_pushes(client, iter(ids), 100, 60.0, None)
            out["cache"] = (n, secs, counts, len(client.routes), rss0, rss_kib(os.getpid()))
        finally:
            for service in reversed(started):
                await maybeDeferred(service.stopService)

    def go() -> None:
        d = ensureDeferred(run())
        d.addErrback(lambda f: out.__setitem__("error", f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if "error" in out:
        out["error"].raiseException()
    return out


# --------------------------------------------------------------------------
# 2. and 3. The daemon, over HTTP
# --------------------------------------------------------------------------


def post_push(url: str, user_id: str, timeout: float = 5.0) -> tuple[int, Any]:
    body = json.dumps({"userId": user_id, "content": "hi"}).encode()
    req = urllib.request.Request(url + "/push", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_pushable(url: str, user_id: str, wait: float = 30.0) -> None:
    """Until a push to ``user_id`` succeeds (the daemon sees and reaches the gateway)."""
    deadline = time.monotonic() + wait
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last = post_push(url, user_id)
            if status == 200 and last["summary"]["success"] == 1:
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"no successful push to {user_id} in {wait} s; last answer {last!r}")


async def _http_client(port: int, ids: list[str], connections: int, seconds: float
                       ) -> tuple[int, float, Counter[str], Counter[int], str]:
    """POST /push once per id over ``connections`` keep-alive connections.

    Bounded: each id once, the whole run within ``seconds``. Returns (answers,
    elapsed, result counts, status counts, a sample of a non-200 body).
    """
    results: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    bad_sample: list[str] = []
    source = iter(ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for uid in source:
                if loop.time() > deadline:
                    return
                body = b'{"userId":"%s","content":"hi"}' % uid.encode()
                writer.write(b"POST /push HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (port, len(body), body))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                assert length is not None, head
                data = await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10)
                statuses[status] += 1
                if status == 200:
                    for kind, count in json.loads(data)["summary"].items():
                        results[kind] += count
                elif not bad_sample:
                    bad_sample.append(f"{status} {data[:300]!r}")
        finally:
            writer.close()

    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return (sum(statuses.values()), loop.time() - start, results, statuses,
            bad_sample[0] if bad_sample else "")


def http_client(port: int, ids: list[str], connections: int = 50, seconds: float = 120.0
                ) -> tuple[int, float, Counter[str], Counter[int], str]:
    return asyncio.run(_http_client(port, ids, connections, seconds))


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(url: str, script: Path, users: int, threads: int, connections: int, duration: int
        ) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), url, "--", str(users)],
        capture_output=True, text=True, check=True, timeout=duration + 30,
    ).stdout
    result: dict[str, Any] = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }
    for p in ("50", "90", "99"):
        match = re.search(rf"^\s+{p}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        result[f"p{p}"] = _ms(match.group(1)) if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = socket_errors.group(1) if socket_errors else "none"
    result["ok"] = sum(int(m) for m in re.findall(r"LUA ok=(\d+)", out))
    result["bad"] = sum(int(m) for m in re.findall(r"LUA bad=(\d+)", out))
    result["sample_ok"] = next(iter(re.findall(r"LUA sample_ok=(.*)", out)), "")
    result["sample_bad"] = next(iter(re.findall(r"LUA sample_bad=(.*)", out)), "")
    return result


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000, help="online users (routes)")
    parser.add_argument("--duration", type=int, default=10, help="s per wrk run")
    parser.add_argument("--lib-seconds", type=float, default=5.0,
                        help="time bound of each library run")
    parser.add_argument("--lib-max", type=int, default=100_000,
                        help="push bound of each library run")
    parser.add_argument("--memory-ids", type=int, default=100_000,
                        help="distinct user ids pushed once each for the memory figures")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    if args.memory_ids < args.users:
        parser.error("--memory-ids must be at least --users")

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mpush-bench-push-"))
    zk = ZooKeeperServer(base_dir=str(work / "zk"))
    redis = RedisServer()
    node: FakeNodeProcess | None = None
    daemon: Daemon | None = None
    rows: list[tuple[str, str, str, bool | None]] = []  # (figure, value, target, met)

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    try:
        zk.start()
        redis.start()
        node = FakeNodeProcess(zk.connect_string, f"127.0.0.1:{redis.port}",
                               users=args.users, user_prefix=PREFIX,
                               args=["--record", "0"]).start()
        assert node.address is not None
        say(f"ZooKeeper {zk.connect_string}, Redis 127.0.0.1:{redis.port}, fake node "
            f"(pid {node.process.pid if node.process else '?'}) gateway {node.address}, "
            f"{args.users} users online")
        say(f"{os.cpu_count()} CPU cores: the fake node process, the pusher (this process "
            "or the daemon) and wrk/the HTTP client all compete for them; load average "
            f"before we start: {os.getloadavg()[0]:.2f} (anything else running skews the figures)")
        port = free_port()
        config = write_config(work / "mpush.conf", port=port, zk=zk.connect_string,
                              redis_nodes=[f"127.0.0.1:{redis.port}"],
                              alloc_extra="refresh-interval = 30s")

        # ---- 1. library
        say("library: PushClient + GatewayPool + ZkWatcher + RedisService in this process")
        lib = library_phase(config, node.address, args.users, args)
        n, secs, counts, reads = lib["warm"]
        say(f"library warm-up: {n} pushes (every user once) in {secs:.2f} s, "
            f"{dict(counts)}, {reads} Redis reads")
        n, secs, counts, reads = lib["tput"]
        tput = n / secs
        say(f"library 100 in flight: {n} pushes in {secs:.2f} s = {tput:.0f} pushes/s, "
            f"{dict(counts)}, {reads} Redis reads (cache warm)")
        rows.append(("library: pushes/s, 100 in flight", f"{tput:,.0f}", ">= 5,000",
                     tput >= 5000))
        rows.append(("library: non-success, 100 in flight",
                     str(n - counts["success"]), "0", n == counts["success"]))
        n, secs, counts, lat = lib["lat"]
        p50, p90, p99 = (pct(lat, p) * 1000 for p in (50, 90, 99))
        say(f"library 10 in flight: {n} pushes in {secs:.2f} s = {n / secs:.0f} pushes/s, "
            f"{dict(counts)}; latency p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, "
            f"mean {statistics.fmean(lat) * 1000:.2f} ms, max {max(lat) * 1000:.2f} ms")
        rows.append(("library: p50 latency, 10 in flight", f"{p50:.2f} ms", "", None))
        rows.append(("library: p99 latency, 10 in flight", f"{p99:.2f} ms", "< 10 ms",
                     p99 < 10))
        rows.append(("library: pushes/s, 10 in flight", f"{n / secs:,.0f}", "", None))
        n, secs, counts, cache_len, rss0, rss1 = lib["cache"]
        say(f"library, {n} distinct ids once each in {secs:.2f} s ({n / secs:.0f}/s): "
            f"{dict(counts)}; route cache now {cache_len} entries; this process's RSS "
            f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
        rows.append((f"library: route cache after {n:,} distinct ids",
                     f"{cache_len:,} entries", "<= 100,000", cache_len <= 100_000))

        # ---- 2. POST /push
        daemon = Daemon(work, config, port=port).start()
        url = daemon.url
        wait_pushable(url, f"{PREFIX}0")
        say(f"daemon pid {daemon.pid} on {url}: pushes succeed")
        n, secs, results, statuses, bad = http_client(port, [f"{PREFIX}{i}"
                                                              for i in range(args.users)])
        say(f"daemon warm-up: {n} POST /push (every user once) in {secs:.2f} s "
            f"({n / secs:.0f}/s, asyncio client, 50 connections): {dict(results)}, "
            f"statuses {dict(statuses)} {bad}")
        script = work / "push.lua"
        script.write_text(WRK_LUA)
        wrk(url, script, args.users, 2, 100, 2)  # warm-up
        r100 = wrk(url, script, args.users, 2, 100, args.duration)
        say(f"wrk -t2 -c100 {args.duration}s: {r100['requests']} requests, "
            f"{r100['rps']:.0f} req/s, p50 {r100['p50']:.2f} ms, p90 {r100['p90']:.2f} ms, "
            f"p99 {r100['p99']:.2f} ms; 200+success {r100['ok']}, other {r100['bad']}, "
            f"non-2xx {r100['non2xx']}, socket errors: {r100['socket_errors']}")
        say(f"  sample answer: {r100['sample_ok']}")
        if r100["sample_bad"]:
            say(f"  sample bad answer: {r100['sample_bad']}")
        r10 = wrk(url, script, args.users, 1, 10, args.duration)
        say(f"wrk -t1 -c10 {args.duration}s: {r10['requests']} requests, "
            f"{r10['rps']:.0f} req/s, p50 {r10['p50']:.2f} ms, p90 {r10['p90']:.2f} ms, "
            f"p99 {r10['p99']:.2f} ms; 200+success {r10['ok']}, other {r10['bad']}, "
            f"non-2xx {r10['non2xx']}")
        if r10["sample_bad"]:
            say(f"  sample bad answer: {r10['sample_bad']}")
        rows.append(("POST /push: req/s, wrk -t2 -c100", f"{r100['rps']:,.0f}", ">= 2,000",
                     r100["rps"] >= 2000))
        rows.append(("POST /push: p50 / p99, -c100",
                     f"{r100['p50']:.2f} / {r100['p99']:.2f} ms", "", None))
        rows.append(("POST /push: answers not 200+success, -c100",
                     f"{r100['bad']} of {r100['ok'] + r100['bad']} (non-2xx "
                     f"{r100['non2xx']})", "0", r100["bad"] == 0 and r100["non2xx"] == 0))
        rows.append(("POST /push: req/s, wrk -t1 -c10", f"{r10['rps']:,.0f}", "", None))
        rows.append(("POST /push: p50 / p99, -c10",
                     f"{r10['p50']:.2f} / {r10['p99']:.2f} ms", "", None))
        rows.append(("POST /push: answers not 200+success, -c10",
                     f"{r10['bad']} of {r10['ok'] + r10['bad']} (non-2xx "
                     f"{r10['non2xx']})", "0", r10["bad"] == 0 and r10["non2xx"] == 0))

        # ---- 3. memory
        pid = daemon.pid
        ids = [f"{PREFIX}{i}" for i in range(args.memory_ids)]
        random.Random(2).shuffle(ids)
        time.sleep(1.0)
        before = rss_kib(pid)
        n, secs, results, statuses, bad = http_client(port, ids)
        time.sleep(1.0)
        after = rss_kib(pid)
        say(f"memory: {n} POST /push to {len(ids)} distinct ids in {secs:.2f} s "
            f"({n / secs:.0f}/s): {dict(results)}, statuses {dict(statuses)} {bad}")
        say(f"daemon RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
            f"(+{(after - before) / 1024:.1f} MiB, "
            f"{(after - before) * 1024 / max(1, len(ids) - args.users):.0f} B per new id)")
        rows.append(("daemon RSS before", f"{before / 1024:.1f} MiB", "", None))
        rows.append((f"daemon RSS after {n:,} pushes / {len(ids):,} ids",
                     f"{after / 1024:.1f} MiB", "", None))
        rows.append(("daemon RSS growth", f"+{(after - before) / 1024:.1f} MiB", "", None))
        # A second pass over as many new ids, none with a route: the route
        # cache is full now, so memory must stay flat (its bound at work).
        more = [f"{PREFIX}x{i}" for i in range(args.memory_ids)]
        n2, secs2, results2, _, _ = http_client(port, more)
        time.sleep(1.0)
        again = rss_kib(pid)
        say(f"memory, second pass: {n2} POST /push to {len(more)} more new ids in "
            f"{secs2:.2f} s: {dict(results2)}; daemon RSS {after / 1024:.1f} -> "
            f"{again / 1024:.1f} MiB")
        rows.append((f"daemon RSS after {n2:,} more pushes / new ids",
                     f"{again / 1024:.1f} MiB ({(again - after) / 1024:+.1f})",
                     "flat (within 5 %)", abs(again - after) <= 0.05 * after))
        expected = {"success": args.users, "offline": len(ids) - args.users}
        got = {k: v for k, v in results.items() if v}
        rows.append(("  results of those pushes",
                     ", ".join(f"{k} {v:,}" for k, v in got.items()),
                     ", ".join(f"{k} {v:,}" for k, v in expected.items()),
                     got == expected and set(statuses) == {200}))
        rows.append(("daemon route cache size", "not observable", "<= 100,000", None))
        status, _, _ = daemon.get("/")
        say(f"daemon still serving: GET / -> {status}")
        # The log must not grow with pushes (twistd rotates its file every
        # 1 MB and keeps every rotated one): single pushes log nothing.
        logs = sorted(work.glob(daemon.logfile.name + "*"))
        log_mib = sum(f.stat().st_size for f in logs) / 2**20
        say(f"daemon log: {len(logs)} files ({daemon.logfile.name} and rotated ones), "
            f"{log_mib:.1f} MiB")
        rows.append(("daemon log files / size after the run", f"{len(logs)} / {log_mib:.1f} MiB",
                     "", None))

        print()
        print(f"{'figure':<46} {'value':>30}   {'target':<30} met")
        print("-" * 116)
        for name, value, target, met in rows:
            verdict = "" if met is None else ("yes" if met else "MISSED")
            print(f"{name:<46} {value:>30}   {target:<30} {verdict}")
        print("-" * 116)
        print("The daemon's route cache has no outside view; the library run's cache, same "
              "defaults and same ids, held the figure above.")
        print(f"{os.cpu_count()} cores shared by the fake node process, the pusher (the "
              "library run's process, or the daemon) and wrk / the HTTP client: the "
              "figures are for that contention, not for a dedicated machine.")
        print(f"total run time {time.monotonic() - began:.0f} s; 1-min load average now "
              f"{os.getloadavg()[0]:.2f} (about 2 is this benchmark alone)")
        return 0
    finally:
        if daemon is not None:
            daemon.terminate()
        if node is not None:
            try:
                node.terminate()
            finally:
                node.kill()
        redis.close()
        zk.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

