"""Run the real daemon (``twistd mpush-alloc``) as a child process.

Used by the tests and benchmarks that must see what an operator sees: the
plugin found by twistd, the pidfile, the log file, exit statuses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def refused_ports(count: int) -> list[int]:
    """``count`` ports on 127.0.0.1 where nothing listens, below the ephemeral range.

    A client retrying a port inside that range may one day be given the very
    same port as its own local one and connect to itself (TCP simultaneous
    open): a "gateway" that answers. Below the range the kernel never picks
    them, so a connection there is refused as long as nobody listens.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    found: list[int] = []
    for port in range(max(1024, low - 8000), low):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"fewer than {count} free ports below {low}")


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket holds until the block ends."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def write_config(path: Path, *, port: int, zk: str, redis_nodes: list[str],
                 protocol: str = "http", namespace: str = "mpush", extra: str = "",
                 redis_extra: str = "", alloc_extra: str = "",
                 redis_mode: str = "single", redis_password: str | None = None,
                 sentinel_master: str | None = None, zk_digest: str | None = None,
                 drain_delay: str | None = "0") -> Path:
    """Write a config file in the Java alloc's format for a test daemon.

    ``zk_digest=None`` leaves ``mp.zk.digest`` out (the default, ``mpush``,
    applies); ``""`` turns ZooKeeper auth off. ``drain_delay`` is
    ``mp.alloc.drain-delay``: ``0`` by default, so that stopping a test
    daemon does not wait for load balancers; None leaves it out (2 s).
    """
    drain = "" if drain_delay is None else f"drain-delay = {drain_delay}"
    nodes = ", ".join(f'"{n}"' for n in redis_nodes)
    digest = "" if zk_digest is None else f'digest = "{zk_digest}"'
    master = "" if sentinel_master is None else f'sentinel-master = "{sentinel_master}"'
    path.write_text(
        f"""mp {{
  net {{
    alloc-server-port = {port}
    alloc-server-protocol = {protocol}
  }}
  zk {{
    server-address = "{zk}"
    namespace = "{namespace}"
    {digest}
    sessionTimeoutMs = 4000
    connectionTimeoutMs = 2000
  }}
  redis {{
    cluster-model = {redis_mode}
    nodes = [{nodes}]
    password = "{redis_password or ''}"
    {master}
    {redis_extra}
  }}
  alloc {{
    interface = "127.0.0.1"
    data-dir = "{path.parent / 'data'}"
    refresh-interval = 1s
    change-delay = 100ms
    {drain}
    {alloc_extra}
  }}
  {extra}
}}
"""
    )
    return path


class Daemon:
    """``twistd [-n] mpush-alloc --config FILE`` with a pidfile and a log file."""

    def __init__(self, workdir: Path, config: Path, *, port: int, foreground: bool = True,
                 protocol: str = "http", open_files: tuple[int, int] | None = None) -> None:
        """``open_files``: the (soft, hard) RLIMIT_NOFILE twistd starts with (else ours)."""
        self.workdir = workdir
        self.config = config
        self.port = port
        self.protocol = protocol
        self.foreground = foreground
        self.open_files = open_files
        self.pidfile = workdir / "twistd.pid"
        self.logfile = workdir / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.protocol}://127.0.0.1:{self.port}"

    def start(self, wait: float = 30.0) -> Daemon:
        args = [str(BIN / "twistd")]
        if self.foreground:
            args.append("-n")
        args += ["--pidfile", str(self.pidfile), "--logfile", str(self.logfile),
                 "mpush-alloc", "--config", str(self.config)]
        if self.open_files is not None:
            # As systemd's LimitNOFILE would; prlimit execs twistd (same pid).
            args = ["prlimit", "--nofile={}:{}".format(*self.open_files), "--", *args]
        self.process = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not self.foreground:
            # The launcher exits once the daemon has forked.
            self.process.wait(timeout=wait)
        self.wait_listening(wait)
        return self

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def wait_listening(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.foreground and self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"daemon not listening on {self.port}: {self.log()}")

    def get(self, path: str = "/", method: str = "GET",
            timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        context = None
        if self.protocol == "https":
            context = ssl._create_unverified_context()
        req = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def wait_for_body(self, predicate, wait: float = 10.0,  # type: ignore[no-untyped-def]
                      path: str = "/") -> bytes:
        deadline = time.monotonic() + wait
        body = b""
        while time.monotonic() < deadline:
            status, _, body = self.get(path)
            if status == 200 and predicate(body):
                return body
            time.sleep(0.05)
        raise TimeoutError(f"GET {path} never matched; last body {body!r}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def terminate(self, wait: float = 15.0) -> int | None:
        """SIGTERM the daemon; return the foreground exit status (None if daemonized)."""
        if self.foreground:
            assert self.process is not None
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=wait)
        pid = self.pid
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            time.sleep(0.05)
        raise TimeoutError(f"daemon {pid} did not stop")

    def kill(self) -> None:
        try:
            if self.foreground and self.process is not None:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait(timeout=10)
            elif self.pidfile.exists():
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError, FileNotFoundError):
            pass
