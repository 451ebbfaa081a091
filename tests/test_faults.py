"""Faults under load: the real daemon (``twistd -n mpush-alloc``) while
``GET /`` (~100/s) and ``POST /push`` (~30/s) keep coming, each from
blocking keep-alive clients in threads of their own.

1. ZooKeeper SIGKILLed, then restarted (same port and data);
2. ZooKeeper frozen (SIGSTOP) past every session timeout, then resumed: the
   sessions expire, the fake node re-registers as the Java server does;
3. Redis SIGKILLed, then restarted with its data (append-only file);
4. the gateway (a fake mpush node in its own process) SIGKILLed mid-push,
   then restarted on the same port;
5. the gateway frozen (SIGSTOP), so that pushes time out, then resumed.

For each: ``GET /`` answers ``200`` throughout (every request); every push
request is answered exactly once (sent = answered) with outcomes the fault
allows; ``/health`` shows the degradation during the fault and ``ok`` after
it; the daemon is the same process all along. A row per fault (``GET /``
availability, push outcomes, recovery time from the fault's end to
``/health`` ok) goes to the fault table, printed at the end of the session
and written to ``fault-table.txt`` in pytest's base temp directory.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

USERS = 20
PUSH_TIMEOUT_MS = 1000
NAMESPACE = "mpush"


# -- load ----------------------------------------------------------------------------

@dataclass
class PushAnswer:
    sent: float
    done: float
    status: int
    results: list[str]


@dataclass
class HealthSample:
    t: float
    code: int
    status: str
    reasons: list[str]
    doc: dict[str, Any]


@dataclass
class Load:
    """Paced clients, each a thread with one keep-alive ``http.client`` connection."""

    port: int
    get_threads: int = 2
    get_rate: float = 50.0       # per thread
    push_threads: int = 3
    push_rate: float = 10.0      # per thread
    health_interval: float = 0.05
    gets: list[tuple[float, int]] = field(default_factory=list)
    pushes_sent: list[float] = field(default_factory=list)
    pushes: list[PushAnswer] = field(default_factory=list)
    health: list[HealthSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._counter = 0

    # Each worker runs ``once(conn)`` at its pace until stopped; a connection
    # that failed is replaced (a failure is recorded by ``once``).
    def _paced(self, rate: float, once: Callable[[http.client.HTTPConnection], None]) -> None:
        interval = 1.0 / rate
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        nxt = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    once(conn)
                except Exception as e:
                    with self._lock:
                        self.errors.append(f"{threading.current_thread().name}: {e!r}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
                nxt = max(nxt + interval, time.monotonic())
                self._stop.wait(max(0.0, nxt - time.monotonic()))
        finally:
            conn.close()

    def _get(self, conn: http.client.HTTPConnection) -> None:
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except Exception:
            self.gets.append((time.monotonic(), -1))
            raise
        self.gets.append((time.monotonic(), status))

    def _push(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            n = self._counter
            self._counter += 1
        body = json.dumps({"userId": f"u{n % USERS}", "content": f"m{n}",
                           "timeout": PUSH_TIMEOUT_MS}).encode()
        sent = time.monotonic()
        self.pushes_sent.append(sent)
        conn.request("POST", "/push", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        results: list[str] = []
        if resp.status == 200:
            results = [r["result"] for r in json.loads(data)["results"]]
        self.pushes.append(PushAnswer(sent, time.monotonic(), resp.status, results))

    def _health(self, conn: http.client.HTTPConnection) -> None:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        self.health.append(HealthSample(time.monotonic(), resp.status, doc.get("status", ""),
                                        list(doc.get("reasons", [])), doc))

    def __enter__(self) -> Load:
        specs: list[tuple[str, float, Callable[[http.client.HTTPConnection], None]]] = []
        specs += [(f"get-{i}", self.get_rate, self._get) for i in range(self.get_threads)]
        specs += [(f"push-{i}", self.push_rate, self._push) for i in range(self.push_threads)]
        specs.append(("health", 1.0 / self.health_interval, self._health))
        for name, rate, once in specs:
            t = threading.Thread(target=self._paced, args=(rate, once), name=name, daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15.0)
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"load threads still running: {stuck}"

    # -- reading the records

    def health_between(self, start: float, end: float) -> list[HealthSample]:
        return [h for h in list(self.health) if start <= h.t <= end]

    def outcomes(self, answers: list[PushAnswer] | None = None) -> Counter[str]:
        c: Counter[str] = Counter()
        for a in self.pushes if answers is None else answers:
            if a.status != 200:
                c[f"http-{a.status}"] += 1
            c.update(a.results)
        return c


# -- the stack -----------------------------------------------------------------------

@dataclass
class Stack:
    zk: ZooKeeperServer
    redis: RedisServer
    daemon: Daemon
    node: FakeNodeProcess
    node_args: list[str]
    pid: int
    extra_nodes: list[FakeNodeProcess] = field(default_factory=list)

    def make_node(self, port: int = 0) -> FakeNodeProcess:
        node = FakeNodeProcess(self.zk.connect_string, ("127.0.0.1", self.redis.port),
                               namespace=NAMESPACE, users=USERS, port=port,
                               args=self.node_args)
        self.extra_nodes.append(node)
        return node.start()

    def health(self) -> dict[str, Any]:
        _, _, body = self.daemon.get("/health")
        return dict(json.loads(body))

    def wait_health_ok(self, timeout: float, what: str) -> float:
        """Wait for ``/health`` status ok; returns when it was seen (monotonic)."""
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.health()
            if doc["status"] == "ok":
                return time.monotonic()
            time.sleep(0.02)
        raise AssertionError(f"/health not ok after {timeout} s ({what}): {doc}")

    def warm(self) -> None:
        """One push to every user: their routes are cached, the path works."""
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10.0)
        try:
            for i in range(USERS):
                conn.request("POST", "/push", json.dumps({"userId": f"u{i}", "content": "w"}))
                resp = conn.getresponse()
                answer = json.loads(resp.read())
                assert resp.status == 200 and answer["summary"]["success"] == 1, answer
        finally:
            conn.close()

    def same_daemon(self) -> None:
        assert self.daemon.process is not None and self.daemon.process.poll() is None, \
            "the daemon exited"
        assert self.daemon.pid == self.pid, "the daemon was restarted"


def _stack(tmp_path: Path, node_args: list[str]) -> Iterator[Stack]:
    zk = ZooKeeperServer(base_dir=str(tmp_path / "zk"))
    redis = RedisServer(appendonly=True)
    daemon: Daemon | None = None
    stack: Stack | None = None
    try:
        zk.start()
        redis.start()
        node = FakeNodeProcess(zk.connect_string, ("127.0.0.1", redis.port),
                               namespace=NAMESPACE, users=USERS, args=node_args)
        node.start()
        workdir = tmp_path / "daemon"
        workdir.mkdir()
        port = free_port()
        # sessionTimeoutMs 4000 (write_config): the test server's 500 ms tick
        # grants 1..10 s sessions.
        config = write_config(workdir / "mpush.conf", port=port, zk=zk.connect_string,
                              namespace=NAMESPACE, redis_nodes=[f"127.0.0.1:{redis.port}"])
        daemon = Daemon(workdir, config, port=port).start()
        stack = Stack(zk, redis, daemon, node, node_args, daemon.pid)
        stack.wait_health_ok(15.0, "at start")
        stack.warm()
        yield stack
    finally:
        if daemon is not None:
            daemon.kill()
            print(f"---- {daemon.logfile} (last 80 lines)")
            print("\n".join(daemon.log().splitlines()[-80:]))
        nodes = [] if stack is None else [stack.node, *stack.extra_nodes]
        for n in nodes:
            if n.process is not None and n.process.poll() is None:
                os.kill(n.process.pid, signal.SIGCONT)
            n.kill()
        zk.kill()
        zk.close()
        redis.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path, ["--behaviour", "deliver"])


@pytest.fixture
def slow_stack(tmp_path: Path) -> Iterator[Stack]:
    """Pushes answered after 300 ms: some are always in flight."""
    yield from _stack(tmp_path, ["--behaviour", "delay:300"])


# -- the fault table -----------------------------------------------------------------

@dataclass
class Row:
    fault: str
    gets_ok: int
    gets: int
    pushes_sent: int
    pushes_answered: int
    outcomes: Counter[str]
    recovery: float

    def __str__(self) -> str:
        pct = 100.0 * self.gets_ok / self.gets if self.gets else 0.0
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.fault:<22} {self.gets_ok:>5}/{self.gets:<5} ({pct:6.2f} %)  "
                f"{self.pushes_answered:>4}/{self.pushes_sent:<4}  {outcomes:<40} "
                f"{self.recovery:6.2f} s")


HEADER = (f"{'fault':<22} {'GET / 200/sent':<22}  {'push ans/sent':<10} "
          f"{'push outcomes':<40} recovery")


@pytest.fixture(scope="session")
def fault_table(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    text = "\n".join([HEADER, *map(str, rows)])
    path = tmp_path_factory.getbasetemp() / "fault-table.txt"
    path.write_text(text + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(f"fault table ({path}):")
        for line in text.splitlines():
            reporter.write_line(line)


def record(table: list[Row], capsys: pytest.CaptureFixture[str], fault: str, load: Load,
           recovery: float) -> Row:
    row = Row(fault, sum(1 for _, s in load.gets if s == 200), len(load.gets),
              len(load.pushes_sent), len(load.pushes), load.outcomes(), recovery)
    table.append(row)
    with capsys.disabled():
        print(f"\n{HEADER}\n{row}")
    return row


def check_common(stack: Stack, load: Load, row: Row) -> None:
    """What holds for every fault."""
    assert not load.errors, f"{row}\nclient errors: {load.errors[:5]}"
    assert row.gets >= 100, f"too little GET load: {row}"
    bad = [s for _, s in load.gets if s != 200]
    assert not bad, f"GET / answered non-200 during the fault: {Counter(bad)}\n{row}"
    assert row.pushes_sent == row.pushes_answered, f"a push went unanswered: {row}"
    assert row.pushes_sent >= 30, f"too little push load: {row}"
    assert all(a.status == 200 for a in load.pushes), f"a push answered non-200: {row}"
    # Every push request is one user with one route: exactly one result.
    assert all(len(a.results) == 1 for a in load.pushes), f"not one result per push: {row}"
    bad_health = [h.code for h in load.health if h.code != 200]
    assert not bad_health, f"/health answered {Counter(bad_health)}: {row}"
    stack.same_daemon()


def degraded_seen(load: Load, start: float, end: float, words: tuple[str, ...]) -> list[str]:
    """The reasons of the degraded /health samples in [start, end] that
    mention one of ``words``."""
    found: list[str] = []
    for h in load.health_between(start, end):
        if h.status == "degraded":
            found += [r for r in h.reasons if any(w in r for w in words)]
    return found


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- the faults ----------------------------------------------------------------------

def test_zookeeper_killed_and_restarted(stack: Stack, fault_table: list[Row],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with Load(stack.daemon.port) as load:
        time.sleep(1.0)
        start = time.monotonic()
        stack.zk.kill()
        until(lambda: stack.health()["zookeeper"]["state"] != "connected", 5.0,
              "the daemon to notice ZooKeeper is gone")
        time.sleep(1.5)  # well within every session timeout
        stack.zk.start()  # same port, same data: the sessions survive
        end = time.monotonic()
        ok = stack.wait_health_ok(15.0, "after ZooKeeper restart")
        time.sleep(1.0)
    row = record(fault_table, capsys, "zookeeper SIGKILL", load, ok - end)
    check_common(stack, load, row)
    assert degraded_seen(load, start, ok, ("zookeeper",)), f"no zookeeper reason: {row}"
    # Routes are cached and the gateway connection does not need ZooKeeper:
    # pushes succeed throughout, but for the moment the node re-registers
    # (as Java's ZKClient does, it deletes and re-creates its nodes on
    # reconnect; the daemon drops the gateway, then connects to it again).
    # No push may hang to its timeout.
    assert set(row.outcomes) <= {"success", "failure"}, row
    failed = [a for a in load.pushes if a.results != ["success"]]
    assert all(end - 0.5 < a.sent and a.done < ok + 1.0 for a in failed), row
    assert row.outcomes["failure"] <= 0.1 * row.pushes_sent, row
    doc = stack.health()
    assert doc["zookeeper"]["connectionServers"] == 1 and doc["zookeeper"]["gatewayServers"] == 1
    assert ok - end < 10.0, row


def test_zookeeper_frozen_past_session_timeout(stack: Stack, fault_table: list[Row],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    session_before = stack.health()["zookeeper"]["sessionId"]
    with Load(stack.daemon.port) as load:
        time.sleep(1.0)
        start = time.monotonic()
        stack.zk.freeze()
        until(lambda: stack.health()["zookeeper"]["state"] != "connected", 8.0,
              "the daemon to notice ZooKeeper froze")
        # Past the daemon's 4 s session and the fake node's 5 s one.
        time.sleep(max(0.0, start + 7.0 - time.monotonic()))
        stack.zk.thaw()
        end = time.monotonic()
        # The node's session expired too: its nodes vanish, then it
        # re-registers them (new session) and the daemon sees them again.
        # Whether the node's own session expired or it reconnected first is
        # a race: wait for the daemon's view to settle (log quiet for 1.5 s).
        ok = stack.wait_health_ok(20.0, "after ZooKeeper thawed")
        quiet: list[tuple[float, int]] = [(time.monotonic(), len(stack.daemon.log()))]

        def settled() -> bool:
            size = len(stack.daemon.log())
            if size != quiet[-1][1]:
                quiet.append((time.monotonic(), size))
            return time.monotonic() - quiet[-1][0] > 1.5
        until(settled, 15.0, "the daemon's view to settle")
        settled_at = stack.wait_health_ok(5.0, "after the view settled")
        doc = stack.health()
        assert doc["zookeeper"]["gatewayServers"] == 1, doc
        assert doc["zookeeper"]["connectionServers"] == 1, doc
        time.sleep(1.0)
        after = [a for a in load.pushes if a.sent > settled_at]
    row = record(fault_table, capsys, "zookeeper SIGSTOP 7s", load, ok - end)
    check_common(stack, load, row)
    assert degraded_seen(load, start, ok, ("zookeeper",)), f"no zookeeper reason: {row}"
    # Whether the daemon's session expired is a race at the thaw: ZooKeeper's
    # expirer thread and the daemon's reconnect wake together. Either way
    # the view must be whole again (checked above); a real expiry is
    # covered deterministically by test_resilience (partition + takeover).
    doc = stack.health()
    if doc["zookeeper"]["sessionId"] != session_before:
        assert "expired" in stack.daemon.log().lower(), "a new session after an expiry"
    # While the nodes were gone (expired, not yet re-registered) a push may
    # fail; none may hang to its timeout, and pushes succeed again after.
    assert set(row.outcomes) <= {"success", "failure"}, row
    failed = [a for a in load.pushes if a.results != ["success"]]
    assert all(end - 0.5 < a.sent and a.done < settled_at for a in failed), row
    assert after and all(a.results == ["success"] for a in after), row
    assert ok - end < 15.0, row


def test_redis_killed_and_restarted_with_its_data(stack: Stack, fault_table: list[Row],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    online = stack.redis.call("ZCARD", "mp:oul:127.0.0.1")
    assert online == USERS
    with Load(stack.daemon.port) as load:
        time.sleep(1.0)
        start = time.monotonic()
        stack.redis.kill()
        until(lambda: stack.health()["status"] != "ok", 5.0, "the daemon to notice Redis is gone")
        time.sleep(2.0)
        stack.redis.start()
        end = time.monotonic()
        ok = stack.wait_health_ok(15.0, "after Redis restart")
        time.sleep(1.0)
    row = record(fault_table, capsys, "redis SIGKILL", load, ok - end)
    check_common(stack, load, row)
    assert stack.redis.call("ZCARD", "mp:oul:127.0.0.1") == online  # its data kept
    assert degraded_seen(load, start, ok, ("redis", "online counts")), f"no redis reason: {row}"
    # Every user's route was cached by the warm-up: success throughout.
    assert set(row.outcomes) == {"success"}, row
    assert ok - end < 10.0, row


def test_gateway_killed_mid_push_and_restarted(slow_stack: Stack, fault_table: list[Row],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    stack = slow_stack
    port = stack.node.port
    with Load(stack.daemon.port, push_threads=6, push_rate=5.0) as load:
        time.sleep(1.0)
        until(lambda: stack.health()["gateways"]["pending"] > 0, 5.0, "a push in flight")
        start = time.monotonic()
        stack.node.kill()  # SIGKILL: pushes waiting on it lose their connection
        time.sleep(1.5)
        stack.node = stack.make_node(port=port)  # same address: its users' routes hold
        end = time.monotonic()
        ok = stack.wait_health_ok(15.0, "after the gateway restarted")
        time.sleep(1.5)
        t_stop = time.monotonic()
    row = record(fault_table, capsys, "gateway SIGKILL 1.5s", load, ok - end)
    check_common(stack, load, row)
    assert degraded_seen(load, start, ok, ("gateway servers not connected",)), \
        f"no gateway reason: {row}"
    # Pending at the kill: failure, promptly (not the 1 s timeout).
    pending = [a for a in load.pushes if a.sent < start < a.done]
    assert pending, f"no push was in flight at the kill: {row}"
    assert all(a.results == ["failure"] and a.done - start < 0.5 for a in pending), \
        [(a.results, round(a.done - start, 3)) for a in pending]
    # During the outage: failure at once (no connection to that gateway).
    during = [a for a in load.pushes if start < a.sent and a.done < end]
    assert during and all(a.results == ["failure"] and a.done - a.sent < 0.5 for a in during), \
        [(a.results, round(a.done - a.sent, 3)) for a in during]
    assert set(row.outcomes) <= {"success", "failure"}, row
    after = [a for a in load.pushes if a.sent > ok]
    assert after and all(a.results == ["success"] for a in after), row
    assert t_stop > ok
    assert ok - end < 10.0, row


def test_gateway_frozen_then_resumed(stack: Stack, fault_table: list[Row],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.node.process is not None
    pid = stack.node.process.pid
    with Load(stack.daemon.port) as load:
        time.sleep(1.0)
        start = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        end = time.monotonic()
        ok = stack.wait_health_ok(15.0, "after the gateway resumed")
        time.sleep(1.5)
    row = record(fault_table, capsys, "gateway SIGSTOP 3s", load, ok - end)
    check_common(stack, load, row)
    # Sent while frozen (and not answered before it): timeout, after ~1 s. The
    # daemon's 1 s timer starts when it reads the request, which on a busy machine
    # can be a few hundred ms after the client sent it; a push sent in the last
    # second-and-a-half may still be answered once the gateway resumes, so only
    # those sent earlier are certain to time out.
    frozen = [a for a in load.pushes if start + 0.05 < a.sent and a.sent + 1.5 < end]
    assert frozen and all(a.results == ["timeout"] for a in frozen), \
        [(a.results, round(a.done - a.sent, 3)) for a in frozen]
    assert all(0.9 < a.done - a.sent < 2.0 for a in frozen), \
        [round(a.done - a.sent, 3) for a in frozen]
    assert set(row.outcomes) <= {"success", "timeout"}, row
    before = [a for a in load.pushes if a.done < start]
    after = [a for a in load.pushes if a.sent > end + 0.2]
    assert before and all(a.results == ["success"] for a in before), row
    assert after and all(a.results == ["success"] for a in after), row
    # /health shows requests piling up, then timing out, on the frozen gateway.
    samples = load.health_between(start + 0.2, end)
    assert any(h.doc["gateways"]["pending"] > 0 for h in samples), row
    assert degraded_seen(load, start, end, ("gateway servers not answering",)), \
        f"no gateway reason: {row}"
    assert ok - end < 5.0, row
