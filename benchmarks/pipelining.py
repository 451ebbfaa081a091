"""Clients that pipeline requests and never read the answers, against the real daemon.

Starts ZooKeeper and Redis on loopback, registers one connection server, runs
``twistd -n mpush-alloc`` and then, for ``--duration`` seconds:

* ``--clients`` connections (in a child process, so that they do not share
  this one's interpreter lock with the measuring client) each with a
  receive buffer of ``--rcvbuf`` bytes send pipelined ``GET /openapi.json``
  as fast as the daemon takes them and never read an answer. A connection
  the daemon closes is opened again at once;
* another client sends ``GET /`` on a kept-alive connection every
  ``--interval`` seconds (each with a 10 s timeout) and times the answers.

Prints the daemon's RSS before, at its peak and at the end, the ``GET /``
p50/p99/max and its errors, and how many abusing connections the daemon
closed. Stops early (and says so) if the daemon's RSS passes ``--max-rss``
MiB. The targets (issue "hold under abuse", point 2): RSS growth under
50 MiB and ``GET /`` p99 under 50 ms with 20 such clients for 60 s.

    .venv/bin/python benchmarks/pipelining.py [--duration 60] [--clients 20]
"""

from __future__ import annotations

import argparse
import errno
import http.client
import multiprocessing
import selectors
import socket
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.local import local_services
from tests.harness.registry import NodeRegistrar

REQUEST = b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BURST = REQUEST * (65536 // len(REQUEST))  # what one send offers
TARGET_GROWTH_MIB = 50.0
TARGET_P99_MS = 50.0
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pipeliner(port: int, clients: int, rcvbuf: int, until: float, report: Connection) -> None:
    """The abusing connections: send, never read; reopen what the daemon closes."""
    selector = selectors.DefaultSelector()
    sent = closed = 0

    def open_one() -> None:
        sock = socket.socket()
        # Before connect: the window the client offers is fixed at the handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)

    for _ in range(clients):
        open_one()
    while time.monotonic() < until:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                sent += sock.send(BURST)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                selector.unregister(sock)
                sock.close()
                closed += 1
                open_one()
    report.send((sent, closed))
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]


def measure_root(port: int, until: float, interval: float) -> tuple[list[float], int]:
    """GET / on one kept-alive connection until ``until``: (seconds each, errors)."""
    took: list[float] = []
    errors = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except OSError:
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        took.append(time.perf_counter() - start)
        time.sleep(interval)
    conn.close()
    return took, errors


def percentile(took: list[float], q: float) -> float:
    ordered = sorted(took)
    return 1000 * ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rcvbuf", type=int, default=4096)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--max-rss", type=float, default=3072.0, help="MiB; stop beyond")
    args = parser.parse_args()

    with local_services("mpush-bench-pipelining-") as local:
        registrar = NodeRegistrar(local.zk.connect_string).start()
        local.later.callback(registrar.close)
        registrar.register("cs", "10.9.0.1", 3000)
        port = free_port()
        config = write_config(local.work / "mpush.conf", port=port,
                              zk=local.zk.connect_string, redis_nodes=local.redis_nodes)
        daemon = Daemon(local.work, config, port=port).start()
        local.later.callback(daemon.terminate)
        daemon.wait_for_body(lambda body: body == b"10.9.0.1:3000", wait=60)
        assert daemon.process is not None
        pid = daemon.process.pid
        before = rss_mib(pid)

        start = time.monotonic()
        until = start + args.duration
        ours, theirs = multiprocessing.Pipe()
        abusers = multiprocessing.Process(
            target=pipeliner, args=(port, args.clients, args.rcvbuf, until, theirs))
        abusers.start()
        peak = before
        took: list[float] = []
        errors = 0
        stopped_early = False
        while time.monotonic() < until:
            slice_end = min(until, time.monotonic() + 1.0)
            part, failed = measure_root(port, slice_end, args.interval)
            took += part
            errors += failed
            peak = max(peak, rss_mib(pid))
            if peak > args.max_rss:
                stopped_early = True
                break
        elapsed = time.monotonic() - start
        sent, closed = ours.recv() if not stopped_early else (0, -1)
        if stopped_early:
            abusers.terminate()
        abusers.join(timeout=30)
        after = rss_mib(pid)

    growth = peak - before
    p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
    worst = 1000 * max(took) if took else float("nan")
    print(f"{args.clients} pipelining clients (SO_RCVBUF {args.rcvbuf}) for {elapsed:.0f} s"
          + (f" -- STOPPED EARLY: RSS over {args.max_rss:.0f} MiB" if stopped_early else ""))
    if not stopped_early:
        print(f"  they sent {sent / 2**20:.1f} MiB of requests;"
              f" the daemon closed {closed} of their connections")
    print(f"daemon RSS: {before:.1f} MiB before, peak {peak:.1f} MiB, {after:.1f} MiB at the"
          f" end: growth {growth:.1f} MiB (target < {TARGET_GROWTH_MIB:g})")
    print(f"another client's GET /: {len(took)} answers, {errors} errors;"
          f" p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms"
          f" (target p99 < {TARGET_P99_MS:g})")
    ok = (not stopped_early and growth < TARGET_GROWTH_MIB and p99 < TARGET_P99_MS
          and errors == 0)
    print("ok" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
