"""The daemon under a low open-file limit: the cap on HTTP connections, the gateway
pool's share, the listen backlog (``twistd mpush-alloc`` in a child process, real
ZooKeeper and Redis, loopback sockets)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = pytest.mark.integration

#: What a descriptor shortage looks like in Twisted's log.
EMFILE = re.compile(r"Too many open files|EMFILE|Could not accept new connection")


@pytest.fixture
def limited_daemon(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
                   redis_server: RedisServer, make_registrar: Callable[..., NodeRegistrar],
                   ) -> Iterator[Callable[..., Daemon]]:
    """Starts a daemon with ``alloc_extra`` config under the (soft, hard) ``open_files``;
    a connection server is registered, so that ``GET /`` answers 200."""
    made: list[Daemon] = []
    registrar = make_registrar(zk_server.connect_string, namespace=zk_namespace)
    registrar.register("cs", "10.7.0.1", 3000)

    def start(alloc_extra: str, open_files: tuple[int, int]) -> Daemon:
        port = free_port()
        config = write_config(tmp_path / "mpush.conf", port=port,
                              zk=zk_server.connect_string, namespace=zk_namespace,
                              redis_nodes=[f"127.0.0.1:{redis_server.port}"],
                              alloc_extra=alloc_extra)
        daemon = Daemon(tmp_path, config, port=port, open_files=open_files)
        made.append(daemon)
        daemon.start()
        daemon.wait_for_body(lambda body: b"10.7.0.1" in body)
        return daemon

    yield start
    for daemon in made:
        daemon.kill()


def until(predicate: Callable[[], Any], wait: float, what: str) -> Any:
    deadline = time.monotonic() + wait
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def closed_by_peer(sock: socket.socket, wait: float = 5.0) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False if it stays open ``wait`` s."""
    sock.settimeout(wait)
    try:
        sock.recv(4096)  # EOF, or an answer: every answer here comes with a close
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def ss(*args: str) -> list[list[str]]:
    listed = subprocess.run(["ss", "-tnH", *args], capture_output=True, text=True, timeout=10,
                            check=True).stdout
    return [line.split() for line in listed.splitlines()]


def all_read(port: int, count: int) -> bool:
    """``count`` connections to ``port`` are open and the daemon read all they sent."""
    # The daemon's side of each: local port ``port``; Recv-Q (2nd column) unread bytes.
    rows = ss("state", "established", f"sport = :{port}")
    return len(rows) == count and all(row[0] == "0" for row in rows)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_over_the_cap_are_closed_oldest_first(
        limited_daemon: Callable[..., Daemon]) -> None:
    # systemd's case: a low soft limit under a higher hard one.
    daemon = limited_daemon("max-connections = 20", open_files=(256, 512))
    log = daemon.log()
    assert "open-file limit: soft 256 -> 512, hard 512" in log
    assert re.search(r"Max open files\s+512\s+512", Path(f"/proc/{daemon.pid}/limits")
                     .read_text())
    with contextlib.ExitStack() as stack:
        idle = []
        for _ in range(40):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
            idle.append(sock)
            # In order: each one in before the next (the oldest idle goes first).
            until(lambda: daemon.get("/health")[0] in (200, 503), 5, "an answer")
        # The 20 oldest made room for the 20 newest (and for each /health).
        assert all(closed_by_peer(sock) for sock in idle[:20])
        assert not closed_by_peer(idle[-1], wait=0.5)
        status, _, body = daemon.get("/")
        assert status == 200 and b"10.7.0.1" in body
        assert open_fds(daemon.pid) < 256
    assert not EMFILE.search(daemon.log())


def test_when_every_connection_is_busy_new_ones_are_refused_until_they_go(
        limited_daemon: Callable[..., Daemon]) -> None:
    daemon = limited_daemon("max-connections = 20", open_files=(256, 256))
    with contextlib.ExitStack() as stack:
        busy = []
        for _ in range(20):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
            sock.sendall(b"GET / HT")  # a slow head: the request is in progress
            busy.append(sock)
        # Read by the daemon: now busy, not idle (else a new one would take its place).
        until(lambda: all_read(daemon.port, 20), 5, "the 20 slow heads read")
        # Each refusal is a 503 at once, never a hang or a reset.
        for _ in range(50):
            status, _, body = daemon.get("/", timeout=5)
            assert status == 503, body
            assert json.loads(body) == {"error": "too many connections", "status": 503}
        assert not any(closed_by_peer(sock, wait=0.1) for sock in busy)
        stack.close()  # the slow clients give up
        until(lambda: daemon.get("/")[0] == 200, 5, "GET / served again")
    log = daemon.log()
    # Fifty refusals, one message: the log's repeat limit keeps its first 20.
    refusals = [line for line in log.splitlines() if "HTTP connection refused" in line]
    assert 1 <= len(refusals) <= 20, log
    assert not EMFILE.search(log)


def test_the_gateway_pool_opens_only_its_share_of_the_descriptors(
        limited_daemon: Callable[..., Daemon], zk_server: ZooKeeperServer,
        zk_namespace: str, make_registrar: Callable[..., NodeRegistrar]) -> None:
    # 200 gateway servers that accept and never answer (their listen queues
    # hold the connections): more than the 256 descriptors allow.
    registrar = make_registrar(zk_server.connect_string, namespace=zk_namespace)
    with contextlib.ExitStack() as stack:
        for _ in range(200):
            server = stack.enter_context(socket.socket())
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            registrar.register("gs", "127.0.0.1", server.getsockname()[1])
        # 256 - 128 reserved - 20 HTTP = 108 gateway connections.
        daemon = limited_daemon("max-connections = 20", open_files=(256, 256))

        def gateways() -> dict[str, Any]:
            status, _, body = daemon.get("/health")
            seen = json.loads(body)["gateways"] if status in (200, 503) else {}
            return seen if seen.get("known") == 200 and seen.get("connections") == 108 else {}

        seen = until(gateways, 20, "200 gateway servers known, 108 connections")
        assert seen["configuredConnections"] == 108
        assert open_fds(daemon.pid) < 256
        assert daemon.get("/")[0] == 200
    log = daemon.log()
    assert len(re.findall(r"gateway connections: the budget of 108", log)) == 1, log
    assert not EMFILE.search(log)


def test_the_listen_backlog_is_the_configured_one(
        limited_daemon: Callable[..., Daemon]) -> None:
    daemon = limited_daemon("listen-backlog = 300", open_files=(1024, 1024))
    # For a listening socket, ss shows the backlog as Send-Q.
    (state, _, send_q, *_), = ss("-l", f"sport = :{daemon.port}")
    assert (state, send_q) == ("LISTEN", "300")
