"""The graceful drain as an operator sees it: ``twistd mpush-alloc`` in a child
process, pushes in flight at the moment of SIGTERM, fake mpush nodes in
their own processes (one delivering after 1 s, one never answering), real
ZooKeeper and Redis. Loopback only; every wait is bounded."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DRAIN_DELAY = 0.3  # s, mp.alloc.drain-delay
GRACE = 1.0  # s, mp.alloc.shutdown-grace
DELIVER_MS = 1000  # the delivering node answers after this


@dataclass
class Answer:
    status: int | None = None
    body: Any = None
    error: str | None = None
    at: float | None = None  # monotonic time the answer was complete


def health(port: int, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def push(port: int, payload: dict[str, Any], out: Answer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", "/push", json.dumps(payload),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()  # raises IncompleteRead if the answer is cut short
        out.status, out.body, out.at = resp.status, json.loads(raw), time.monotonic()
    except Exception as e:  # recorded: the test says which request broke
        out.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()


@pytest.fixture
def nodes(zk_server: ZooKeeperServer, zk_namespace: str,
          redis_server: RedisServer) -> Iterator[tuple[FakeNodeProcess, FakeNodeProcess]]:
    redis = f"127.0.0.1:{redis_server.port}"
    deliver = FakeNodeProcess(zk_server.connect_string, redis, namespace=zk_namespace,
                              users=4, user_prefix="d",
                              args=["--behaviour", f"delay:{DELIVER_MS}", "--cs-port", "3101"])
    silent = FakeNodeProcess(zk_server.connect_string, redis, namespace=zk_namespace,
                             users=3, user_prefix="s",
                             args=["--behaviour", "silent", "--cs-port", "3102"])
    try:
        yield deliver.start(), silent.start()
    finally:
        for node in (deliver, silent):
            node.kill()


def test_sigterm_with_pushes_in_flight_answers_every_one(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer, nodes: tuple[FakeNodeProcess, FakeNodeProcess]) -> None:
    port = free_port()
    config = write_config(tmp_path / "mpush.conf", port=port, zk=zk_server.connect_string,
                          namespace=zk_namespace,
                          redis_nodes=[f"127.0.0.1:{redis_server.port}"],
                          drain_delay=f"{int(DRAIN_DELAY * 1000)}ms",
                          alloc_extra=f"shutdown-grace = {int(GRACE * 1000)}ms")
    daemon = Daemon(tmp_path, config, port=port)
    try:
        daemon.start()
        # Serving, with both gateways connected.
        deadline = time.monotonic() + 15
        status, report = 0, {}
        while time.monotonic() < deadline:
            status, report = health(port)
            if status == 200 and report["gateways"]["connected"] == 2:
                break
            time.sleep(0.05)
        assert status == 200 and report["gateways"]["connected"] == 2, report
        assert report["draining"] is False

        orders: list[tuple[dict[str, Any], dict[str, str]]] = [
            ({"userId": "d0", "content": "a"}, {"d0": "success"}),
            ({"userId": "d1", "content": "b"}, {"d1": "success"}),
            ({"userIds": ["d2"], "content": "c", "timeout": 10000}, {"d2": "success"}),
            ({"userId": "s0", "content": "d", "timeout": 10000}, {"s0": "timeout"}),
            ({"userId": "s1", "content": "e", "timeout": 10000}, {"s1": "timeout"}),
            ({"userIds": ["d3", "s2"], "content": "f", "timeout": 10000},
             {"d3": "success", "s2": "timeout"}),
        ]
        answers = [Answer() for _ in orders]
        threads = [threading.Thread(target=push, args=(port, order, out), daemon=True)
                   for (order, _), out in zip(orders, answers, strict=True)]
        sent = time.monotonic()
        for t in threads:
            t.start()
        # Every push is at its gateway (7 requests pending) before the signal.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if health(port)[1]["gateways"]["pending"] == 7:
                break
            time.sleep(0.01)
        assert health(port)[1]["gateways"]["pending"] == 7
        assert time.monotonic() - sent < DELIVER_MS / 1000, "too slow to catch them in flight"

        assert daemon.process is not None
        daemon.process.send_signal(15)
        signalled = time.monotonic()

        # /health turns 503 at once, while the listener is still open.
        seen: tuple[int, dict[str, Any]] | None = None
        while time.monotonic() < signalled + DRAIN_DELAY * 0.8:
            status, report = health(port)
            if status == 503:
                seen = (status, report)
                break
            time.sleep(0.01)
        assert seen is not None, "/health never turned 503 within the drain delay"
        turned_503 = time.monotonic() - signalled
        assert seen[1]["draining"] is True and seen[1]["reasons"][0] == "draining"

        # Then new connections are refused (the listener closed).
        refused_at = None
        while time.monotonic() < signalled + DRAIN_DELAY + 2:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except ConnectionRefusedError:
                refused_at = time.monotonic() - signalled
                break
            time.sleep(0.01)
        assert refused_at is not None, "still accepting connections after the drain delay"
        assert refused_at >= DRAIN_DELAY * 0.9

        for t in threads:
            t.join(timeout=15)
        assert not any(t.is_alive() for t in threads)
        exit_status = daemon.process.wait(timeout=15)
        stopped = time.monotonic() - signalled
    finally:
        daemon.kill()

    # Every request got a complete 200 answer with the right outcome per user.
    for (order, expected), answer in zip(orders, answers, strict=True):
        assert answer.error is None and answer.status == 200, (order, answer)
        got = {r["userId"]: r["result"] for r in answer.body["results"]}
        assert got == expected, (order, answer.body)
        # The ones the grace cut short say so.
        reasons = {r["userId"]: r["reason"] for r in answer.body["results"]}
        assert reasons == {u: "shutdown" if e == "timeout" else None
                           for u, e in expected.items()}, (order, answer.body)
    # The silent ones ended when the grace ran out, not at their 10 s timeout.
    silent_at = [a.at - signalled for a in answers[3:] if a.at is not None]
    assert all(DRAIN_DELAY + GRACE - 0.2 < t < DRAIN_DELAY + GRACE + 1.5 for t in silent_at), \
        silent_at
    assert exit_status == -15  # twistd re-raises SIGTERM after a clean stop
    assert stopped < DRAIN_DELAY + GRACE + 6
    assert not daemon.pidfile.exists()

    log = daemon.log()
    steps = [m.group(1) for m in re.finditer(
        r"\] (draining:|listener closed;|shutdown grace over:|all push requests answered;"
        r"|stopping \w+$)", log, re.MULTILINE)]
    assert steps == ["draining:", "listener closed;", "shutdown grace over:",
                     "all push requests answered;", "stopping web", "stopping refresher",
                     "stopping gateways", "stopping redis", "stopping zookeeper"], log
    assert "listener closed; 7 push(es) still in flight in 6 request(s)" in log
    # In flight counts every user of an unfinished request (d3 with s2): 4.
    assert "4 push(es) still in flight end as timeout (3 gateway request(s) expired)" in log
    bad = [line for line in log.splitlines()
           if "#error]" in line or "#critical]" in line or "Traceback" in line]
    assert bad == []
    print(f"\n/health 503 after {turned_503 * 1000:.0f} ms; refused after"
          f" {refused_at * 1000:.0f} ms; silent pushes answered after"
          f" {[round(t * 1000) for t in silent_at]} ms; exit after {stopped * 1000:.0f} ms")
