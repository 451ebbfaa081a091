"""The daemon out of file descriptors, and a reconnect storm on its listen queue.

ZooKeeper and Redis on loopback, one connection server registered,
``twistd -n mpush-alloc`` in a subprocess under ``prlimit --nofile``. One
scenario per run:

* ``idle``: ``--connections`` connections opened and left idle (no byte
  sent), then 20 fresh ``GET /``;
* ``gateways``: ``--gateways`` gateway servers registered (listening
  sockets of this process that never accept: each connection the daemon
  opens stays up);
* ``burst``: ``--connections`` clients connecting at once, each sending
  ``GET /`` and reading the answer.

Printed: the daemon's open descriptors (``/proc/<pid>/fd``) and soft limit,
the statuses of the fresh ``GET /`` (or of the burst's), the log lines
about a descriptor shortage (EMFILE, "Could not accept"), and for
``gateways`` the daemon's gateway counts (``/health``), for ``burst`` the
kernel's ``ListenOverflows`` delta and the clients whose connect took over
0.9 s (a SYN resent). Every wait is bounded.

    PYTHONPATH=. .venv/bin/python benchmarks/fd_limits.py idle --nofile 1024:1024
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from benchmarks.cluster import wait_until
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import LocalServices, local_services
from tests.harness.registry import NodeRegistrar

SHORTAGE = re.compile(r"Too many open files|EMFILE|Could not accept new connection")
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def listen_overflows() -> int:
    lines = Path("/proc/net/netstat").read_text().splitlines()
    names, values = lines[0].split(), lines[1].split()  # the TcpExt rows
    return int(values[names.index("ListenOverflows")])


def fresh_gets(daemon: Daemon, count: int = 20) -> Counter[str]:
    statuses: Counter[str] = Counter()
    slowest = 0.0
    for _ in range(count):
        began = time.monotonic()
        try:
            statuses[str(daemon.get("/", timeout=5)[0])] += 1
        except OSError as e:
            statuses[type(e).__name__] += 1
        slowest = max(slowest, time.monotonic() - began)
    statuses[f"slowest {slowest:.2f} s"] = 1
    return statuses


def burst(port: int, clients: int, wait: float = 30.0) -> tuple[Counter[str], int]:
    """Every client connects at once, sends GET / and reads; (statuses, slow connects)."""
    selector = selectors.DefaultSelector()
    began, slow, statuses = time.monotonic(), 0, Counter[str]()
    for _ in range(clients):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, [b""])
    deadline = began + wait
    while selector.get_map() and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            sock, got = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:
                if time.monotonic() - began > 0.9:
                    slow += 1
                sock.sendall(GET)
                selector.modify(sock, selectors.EVENT_READ, got)
                continue
            try:
                data = sock.recv(65536)
            except OSError as e:
                data, got[0] = b"", type(e).__name__.encode()
            if data:
                got[0] += data
                continue
            selector.unregister(sock)
            sock.close()
            statuses[got[0].split(b" ", 2)[1].decode() if got[0][:5] == b"HTTP/"
                     else got[0].decode() or "closed"] += 1
    statuses["unanswered"] += len(selector.get_map())
    return statuses, slow


def start_daemon(local: LocalServices, nofile: str, alloc_extra: str = "") -> Daemon:
    port = free_port()
    config = write_config(local.work / "mpush.conf", port=port, zk=local.zk.connect_string,
                          redis_nodes=local.redis_nodes, alloc_extra=alloc_extra)
    soft, hard = (int(n) for n in nofile.split(":"))
    daemon = Daemon(local.work, config, port=port, open_files=(soft, hard))
    local.later.callback(daemon.kill)
    return daemon.start()


def report(daemon: Daemon, **figures: object) -> None:
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    soft = re.search(r"Max open files\s+(\d+)", limits)
    print(f"open fds: {len(os.listdir(f'/proc/{daemon.pid}/fd'))}"
          f" (soft limit {soft.group(1) if soft else '?'})")
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"descriptor-shortage log lines: {len(SHORTAGE.findall(daemon.log()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=["idle", "gateways", "burst"])
    parser.add_argument("--nofile", default="1024:1024", help="soft:hard for the daemon")
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--gateways", type=int, default=1500)
    parser.add_argument("--alloc", default="", help="extra mp.alloc lines")
    args = parser.parse_args()
    with local_services("mpush-bench-fds-") as local, ExitStack() as held:
        registrar = NodeRegistrar(local.zk.connect_string).start()
        local.later.callback(registrar.close)
        registrar.register("cs", "10.7.0.1", 3000)
        if args.scenario == "gateways":
            for _ in range(args.gateways):
                server = held.enter_context(socket.socket())
                server.bind(("127.0.0.1", 0))
                server.listen(8)
                registrar.register("gs", "127.0.0.1", server.getsockname()[1])
        daemon = start_daemon(local, args.nofile, args.alloc)
        daemon.wait_for_body(lambda body: b"10.7.0.1" in body)
        if args.scenario == "idle":
            idle = [held.enter_context(socket.create_connection(("127.0.0.1", daemon.port)))
                    for _ in range(args.connections)]
            time.sleep(2.0)  # let the daemon accept what it can (a benchmark, not a test)
            gets = fresh_gets(daemon)
            closed = 0
            for sock in idle:
                sock.setblocking(False)
                try:
                    closed += sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            report(daemon, fresh_get_statuses=dict(gets), idle_closed_by_daemon=closed)
        elif args.scenario == "gateways":
            def settled() -> bool:
                status, _, body = daemon.get("/health")
                return status in (200, 503) and json.loads(body)["gateways"]["known"] == \
                    args.gateways
            wait_until(settled, 60, "every gateway server known")
            time.sleep(3.0)  # the connections' attempts
            gateways = json.loads(daemon.get("/health")[2])["gateways"]
            report(daemon, gateway_connections=gateways["connections"],
                   gateways_known=gateways["known"], fresh_get_statuses=dict(fresh_gets(daemon)))
        else:
            before = listen_overflows()
            statuses, slow = burst(daemon.port, args.connections)
            report(daemon, burst_statuses=dict(statuses), connects_over_900ms=slow,
                   listen_overflows=listen_overflows() - before)


if __name__ == "__main__":
    main()
