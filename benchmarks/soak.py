"""Soak the real daemon: paced ``GET /`` and pushes while connection servers churn.

Starts ZooKeeper and Redis on loopback, one fake mpush node
(``python -m tests.harness.fakenode``: gateway server, its own cs node,
``--users`` users online in Redis) and ``--stable`` more connection servers
registered the Java way (``NodeRegistrar``) with online counts in Redis. Runs
``twistd -n mpush-alloc`` in a subprocess, warms its route cache with one push
to every user, then for ``--warmup`` + ``--duration`` seconds:

* ``GET /`` at ``--get-rate`` req/s and single-user ``POST /push`` at
  ``--push-rate`` req/s, **open loop**: request *i* of a stream is sent at
  ``t0 + i / rate`` whether or not earlier ones have been answered (bounded in
  count: rate x time), over keep-alive HTTP/1.1 connections (asyncio, at most
  ``--connections`` per stream); every request has a ``--timeout``.
  ``--offline-share`` of the pushes go to ids that were never online, each
  id used once, so the daemon's negative route cache fills and expires all
  the time;
* every ``--churn-every`` seconds ``--churn`` new connection servers (fresh
  addresses, with online counts in Redis) are registered in ZooKeeper and as
  many of the oldest churned ones unregistered (their Redis keys deleted);
* the daemon's VmRSS is printed at the end of the warm-up (the baseline) and
  every 10 s of the measured window, with the counts so far.

At the end: requests sent and answers received, by status (``GET /``) and by
push outcome; errors (connect errors, timeouts, closed connections, non-2xx,
unexpected push outcomes). Exit status 0 only if the daemon's RSS at the end
is within 5 % of the baseline, every request got an answer and there was no
error.

    .venv/bin/python benchmarks/soak.py [--duration 60] [--warmup 10]
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
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import ZooKeeperServer

PREFIX = "u"
RSS_TOLERANCE = 0.05


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


# --------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client (asyncio)
# --------------------------------------------------------------------------


class HttpError(Exception):
    """A request that got no usable answer; ``kind`` is the error's class."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")
_CLOSE = re.compile(rb"(?im)^connection:\s*close\s*$")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, keep-alive)."""
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            raise HttpError("closed", f"connection closed before an answer ({len(e.partial)} "
                                      "bytes)") from None
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError("protocol", f"bad status line {head[:80]!r}") from None
        length = _LENGTH.search(head)
        if length is None:
            raise HttpError("protocol", f"no Content-Length in {head[:200]!r}")
        try:
            body = await self.reader.readexactly(int(length.group(1)))
        except asyncio.IncompleteReadError:
            raise HttpError("closed", "connection closed in a body") from None
        return status, body, _CLOSE.search(head) is None


class Pool:
    """Keep-alive connections to one host:port, at most ``size`` at once.

    A request waits for an idle connection (or opens one while under
    ``size``); the wait counts against its timeout.
    """

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.idle: deque[Connection] = deque()
        self.open = 0
        self.opened = 0
        self.peak = 0
        self._slots = asyncio.Semaphore(size)

    async def _acquire(self) -> Connection:
        await self._slots.acquire()
        while self.idle:
            conn = self.idle.pop()
            if not conn.reader.at_eof():
                return conn
            # The server closed it while idle (twisted.web's idle timeout,
            # 60 s): a client must not send on it, as browsers don't.
            conn.close()
            self.open -= 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as e:
            self._slots.release()
            raise HttpError("connect", f"{type(e).__name__}: {e}") from None
        self.open += 1
        self.opened += 1
        self.peak = max(self.peak, self.open)
        return Connection(reader, writer)

    def _release(self, conn: Connection, reuse: bool) -> None:
        if reuse:
            self.idle.append(conn)
        else:
            conn.close()
            self.open -= 1
        self._slots.release()

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        conn: Connection | None = None
        reuse = False
        try:
            async with asyncio.timeout(timeout):
                conn = await self._acquire()
                status, body, reuse = await conn.request(raw)
                return status, body
        except TimeoutError:
            raise HttpError("timeout", f"no answer in {timeout} s") from None
        except (ConnectionError, OSError) as e:
            raise HttpError("connection", f"{type(e).__name__}: {e}") from None
        finally:
            if conn is not None:
                self._release(conn, reuse)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


# --------------------------------------------------------------------------
# The load
# --------------------------------------------------------------------------


@dataclass
class Stream:
    """Counts of one paced stream of requests."""

    name: str
    sent: int = 0
    answered: int = 0  # an HTTP answer came back (any status)
    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # push results
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)  # one example per error kind
    latencies: list[float] = field(default_factory=list)
    max_lag: float = 0.0  # how late the pacer sent a request, worst case

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.samples.setdefault(kind, detail[:300])

    def summary(self) -> str:
        return (f"sent {self.sent}, answered {self.answered}, "
                f"statuses {dict(sorted(self.statuses.items()))}"
                + (f", outcomes {dict(sorted(self.outcomes.items()))}" if self.outcomes else "")
                + f", errors {dict(self.errors) or 0}")


async def paced(rate: float, count: int, start: float,
                send: Callable[[int], Awaitable[None]], stream: Stream,
                tasks: set[asyncio.Task[None]]) -> None:
    """Open loop: request ``i`` goes out at ``start + i / rate``, not after
    the previous answer. Ticks every 5 ms and sends whatever is due."""
    loop = asyncio.get_running_loop()
    i = 0
    while i < count:
        now = loop.time()
        while i < count and start + i / rate <= now:
            stream.max_lag = max(stream.max_lag, now - (start + i / rate))
            stream.sent += 1
            task = asyncio.create_task(send(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, min(0.005, start + i / rate - loop.time())))


class Load:
    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.port = port
        self.args = args
        self.get_pool = Pool(port, args.connections)
        self.push_pool = Pool(port, args.connections)
        self.get = Stream("GET /")
        self.push = Stream("POST /push")
        self.servers_listed: Counter[int] = Counter()
        self.rng = random.Random(5)
        self.offline_seq = itertools.count()
        self.tasks: set[asyncio.Task[None]] = set()
        self._get_raw = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)

    def push_raw(self, user_id: str) -> bytes:
        body = b'{"userId":"%s","content":"hi"}' % user_id.encode()
        return (b"POST /push HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (self.port, len(body), body))

    async def one_get(self, _: int) -> None:
        s = self.get
        t0 = time.perf_counter()
        try:
            status, body = await self.get_pool.request(self._get_raw, self.args.timeout)
        except HttpError as e:
            s.error(e.kind, str(e))
            return
        s.latencies.append(time.perf_counter() - t0)
        s.answered += 1
        s.statuses[status] += 1
        if status != 200:
            s.error("non-2xx", f"{status} {body[:200]!r}")
        elif not body:
            s.error("empty list", "200 with an empty body")
        else:
            self.servers_listed[body.count(b",") + 1] += 1

    async def one_push(self, _: int) -> None:
        if self.rng.random() < self.args.offline_share:
            user_id, want = f"off{next(self.offline_seq)}", "offline"
        else:
            user_id, want = f"{PREFIX}{self.rng.randrange(self.args.users)}", "success"
        await self.push_to(user_id, want, self.push)

    async def push_to(self, user_id: str, want: str, s: Stream) -> None:
        t0 = time.perf_counter()
        try:
            status, body = await self.push_pool.request(self.push_raw(user_id),
                                                        self.args.timeout)
        except HttpError as e:
            s.error(e.kind, str(e))
            return
        s.latencies.append(time.perf_counter() - t0)
        s.answered += 1
        s.statuses[status] += 1
        if status != 200:
            s.error("non-2xx", f"{status} {body[:200]!r}")
            return
        try:
            summary = json.loads(body)["summary"]
        except (ValueError, KeyError, TypeError):
            s.error("bad body", repr(body[:200]))
            return
        got = [k for k, v in summary.items() if v]
        for k in got:
            s.outcomes[k] += summary[k]
        if got != [want] or summary[want] != 1:
            s.error("unexpected outcome", f"{user_id}: wanted {want}, got {summary}")

    async def drain(self) -> None:
        """Wait for every request in flight (each is bounded by its timeout)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def close(self) -> None:
        self.get_pool.close()
        self.push_pool.close()


# --------------------------------------------------------------------------
# Connection servers coming and going
# --------------------------------------------------------------------------


class Churn:
    """Registers and unregisters cs nodes on a cycle, in a thread of its own
    (kazoo and the Redis client are blocking)."""

    def __init__(self, registrar: NodeRegistrar, redis: RedisServer, every: float,
                 per_cycle: int, keep: int) -> None:
        self.registrar = registrar
        self.redis = redis.client()
        self.every = every
        self.per_cycle = per_cycle
        self.keep = keep
        self.live: deque[tuple[str, str]] = deque()  # (path, ip), oldest first
        self.added = 0
        self.removed = 0
        self.errors: list[str] = []
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-churn", daemon=True)

    def start(self) -> Churn:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop cycling (idempotent); the nodes still registered stay."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self.redis.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.cycle()
            except Exception as e:  # reported, not fatal: the soak goes on
                self.errors.append(f"{type(e).__name__}: {e}")

    def cycle(self) -> None:
        for _ in range(self.per_cycle):
            n = next(self._seq)
            ip = f"10.{77 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}"
            # The Java server's online users first, then its node.
            self.redis.execute("ZADD", f"mp:oul:{ip}", *[x for j in range(1 + n % 20)
                                                         for x in (str(j), f"c{n}-{j}")])
            self.live.append((self.registrar.register("cs", ip, 3000), ip))
            self.added += 1
        while len(self.live) > self.keep:
            path, ip = self.live.popleft()
            self.registrar.unregister(path)
            self.redis.execute("DEL", f"mp:oul:{ip}")
            self.removed += 1


# --------------------------------------------------------------------------


async def soak(daemon_pid: int, port: int, args: argparse.Namespace, churn: Churn,
               say: Callable[[str], None]) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    load = Load(port, args)
    try:
        # Route cache warm: one push to every user (closed loop, bounded).
        prewarm = Stream("prewarm")
        ids = iter(range(args.users))

        async def warm_worker() -> None:
            for i in ids:
                prewarm.sent += 1
                await load.push_to(f"{PREFIX}{i}", "success", prewarm)

        t = loop.time()
        await asyncio.gather(*(warm_worker() for _ in range(args.connections)))
        say(f"route cache warm-up: one push to each of {args.users} users in "
            f"{loop.time() - t:.1f} s: {prewarm.summary()}")
        if prewarm.errors:
            say(f"  samples: {prewarm.samples}")

        churn.start()
        total = args.warmup + args.duration
        start = loop.time() + 0.1
        pacers = [
            asyncio.create_task(paced(args.get_rate, round(args.get_rate * total), start,
                                      load.one_get, load.get, load.tasks)),
            asyncio.create_task(paced(args.push_rate, round(args.push_rate * total), start,
                                      load.one_push, load.push, load.tasks)),
        ]
        say(f"load: GET / at {args.get_rate:g}/s and POST /push at {args.push_rate:g}/s "
            f"({args.offline_share:.0%} to never-seen ids), open loop, for {args.warmup:g} s "
            f"warm-up + {args.duration:g} s; cs churn: {args.churn} in / {args.churn} out "
            f"every {args.churn_every:g} s")
        rss: list[tuple[float, int]] = []

        def report(label: str) -> int:
            kib = rss_kib(daemon_pid)
            say(f"{label}: daemon RSS {kib / 1024:.1f} MiB; GET / {load.get.summary()}; "
                f"push {load.push.summary()}; cs added {churn.added} removed "
                f"{churn.removed}; in flight {len(load.tasks)}")
            return kib

        await asyncio.sleep(max(0.0, start + args.warmup - loop.time()))
        baseline = report("warm-up end (baseline)")
        rss.append((args.warmup, baseline))
        tick = 10.0
        at = tick
        while at < args.duration:
            await asyncio.sleep(max(0.0, start + args.warmup + at - loop.time()))
            rss.append((args.warmup + at, report(f"t+{at:4.0f} s")))
            at += tick
        await asyncio.gather(*pacers)
        t = loop.time()
        await load.drain()
        say(f"all {load.get.sent + load.push.sent} requests sent; the last answers came "
            f"{loop.time() - t:.2f} s after the last request")
        churn.stop()
        await asyncio.sleep(1.0)  # let the daemon settle (refresh, timers) before the figure
        end = report("end")
        return {"load": load, "baseline": baseline, "end": end, "rss": rss,
                "prewarm": prewarm}
    finally:
        for task in list(load.tasks):
            task.cancel()
        load.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="paced load before the RSS baseline, s")
    parser.add_argument("--get-rate", type=float, default=1000.0, help="GET / per s")
    parser.add_argument("--push-rate", type=float, default=300.0, help="POST /push per s")
    parser.add_argument("--users", type=int, default=10_000, help="online users (routes)")
    parser.add_argument("--offline-share", type=float, default=0.1,
                        help="share of pushes to ids never online (each id once)")
    parser.add_argument("--connections", type=int, default=50,
                        help="max keep-alive connections per stream")
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, s")
    parser.add_argument("--stable", type=int, default=10,
                        help="connection servers registered for the whole run")
    parser.add_argument("--churn", type=int, default=2,
                        help="cs nodes added and as many removed per cycle")
    parser.add_argument("--churn-every", type=float, default=2.0, help="s between cycles")
    parser.add_argument("--churn-keep", type=int, default=6,
                        help="churned cs nodes alive at once")
    args = parser.parse_args()

    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="mpush-soak-"))
    zk = ZooKeeperServer(base_dir=str(work / "zk"))
    redis = RedisServer()
    node: FakeNodeProcess | None = None
    registrar: NodeRegistrar | None = None
    churn: Churn | None = None
    daemon: Daemon | None = None
    try:
        zk.start()
        redis.start()
        node = FakeNodeProcess(zk.connect_string, f"127.0.0.1:{redis.port}",
                               users=args.users, user_prefix=PREFIX,
                               args=["--record", "0"]).start()
        registrar = NodeRegistrar(zk.connect_string).start()
        for i in range(1, args.stable + 1):
            ip = f"10.9.0.{i}"
            redis.call("ZADD", f"mp:oul:{ip}",
                       *[x for j in range(i * 7) for x in (str(j), f"s{i}-{j}")])
            registrar.register("cs", ip, 3000)
        port = free_port()
        config = write_config(work / "mpush.conf", port=port, zk=zk.connect_string,
                              redis_nodes=[f"127.0.0.1:{redis.port}"])
        daemon = Daemon(work, config, port=port).start()
        daemon.wait_for_body(lambda b: b.count(b",") + 1 >= args.stable + 1, wait=30)
        say(f"ZooKeeper {zk.connect_string}, Redis 127.0.0.1:{redis.port}, fake node "
            f"gateway {node.address} with {args.users} users, {args.stable} stable cs + the "
            f"node's; daemon pid {daemon.pid} on {daemon.url}; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}")
        churn = Churn(registrar, redis, args.churn_every, args.churn, args.churn_keep)
        out = asyncio.run(soak(daemon.pid, port, args, churn, say))
        if churn.errors:
            say(f"churn errors: {len(churn.errors)}, first: {churn.errors[0]}")

        load = out["load"]
        assert isinstance(load, Load)
        baseline, end = out["baseline"], out["end"]
        assert isinstance(baseline, int) and isinstance(end, int)
        status, _, body = daemon.get("/")
        alive = daemon.process is not None and daemon.process.poll() is None
        say(f"daemon still serving: GET / -> {status}, {body.count(b',') + 1} servers listed; "
            f"running: {alive}")

        print()
        for s in (load.get, load.push):
            p50, p99 = (pct(s.latencies, p) * 1000 for p in (50, 99))
            print(f"{s.name:<11} {s.summary()}")
            print(f"{'':<11} latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, max "
                  f"{max(s.latencies, default=float('nan')) * 1000:.1f} ms; pacer worst lag "
                  f"{s.max_lag * 1000:.1f} ms")
            for kind, sample in s.samples.items():
                print(f"{'':<11} e.g. {kind}: {sample}")
        print(f"connections: GET / {load.get_pool.opened} opened (peak {load.get_pool.peak}), "
              f"push {load.push_pool.opened} opened (peak {load.push_pool.peak})")
        listed = sorted(load.servers_listed)
        print(f"servers listed by GET /: {listed[0] if listed else '-'} to "
              f"{listed[-1] if listed else '-'}; cs nodes added {churn.added}, removed "
              f"{churn.removed}, churn errors {len(churn.errors)}")
        print("RSS (s since load start, MiB): " + ", ".join(
            f"{t:.0f}: {k / 1024:.1f}" for t, k in out["rss"]) + f", end: {end / 1024:.1f}")  # type: ignore[attr-defined]
        logs = sorted(work.glob(daemon.logfile.name + "*"))
        print(f"daemon log: {len(logs)} files, "
              f"{sum(f.stat().st_size for f in logs) / 2**20:.1f} MiB")

        drift = (end - baseline) / baseline
        checks = [
            (f"RSS end {end / 1024:.1f} MiB vs after warm-up {baseline / 1024:.1f} MiB",
             f"{drift:+.1%}", abs(drift) <= RSS_TOLERANCE),
            ("GET / requests == answers", f"{load.get.sent} / {load.get.answered}",
             load.get.sent == load.get.answered),
            ("push requests == answers", f"{load.push.sent} / {load.push.answered}",
             load.push.sent == load.push.answered),
            ("errors (GET /, push, churn)",
             f"{sum(load.get.errors.values())}, {sum(load.push.errors.values())}, "
             f"{len(churn.errors)}",
             not load.get.errors and not load.push.errors and not churn.errors),
            ("daemon alive and serving", f"{status}", alive and status == 200),
        ]
        print()
        for name, value, ok in checks:
            print(f"{name:<56} {value:>18}   {'ok' if ok else 'FAILED'}")
        passed = all(ok for _, _, ok in checks)
        say(f"soak {'passed' if passed else 'FAILED'}")
        return 0 if passed else 1
    finally:
        if churn is not None:
            churn.stop()
        if daemon is not None:
            try:
                daemon.terminate()
            except Exception:
                daemon.kill()
        if registrar is not None:
            registrar.close()
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
