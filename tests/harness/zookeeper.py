"""A real, throw-away standalone ZooKeeper server for tests and demos.

Runs the Debian ``zookeeper`` package's server class in its own JVM, on a
free loopback port, with a private data directory. The process can be
stopped, killed, frozen (SIGSTOP) and restarted on the same port and data
dir, which is what the outage tests need: a restart keeps the data and the
sessions (ZooKeeper persists them), a fresh data dir would not.

Synchronous on purpose: used from fixtures, before and after the reactor
work of a test, never from reactor code.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

JAVA_DIR = Path("/usr/share/java")

# zookeeper.jar's manifest Class-Path already names its runtime jars (jute,
# netty, slf4j-api, ...). Only an slf4j binding is missing: slf4j-simple
# writes to stderr, which goes to the log file.
CLASSPATH_JARS = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar")

MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"

#: A client session that outlives a restart of a test ZooKeeper on a busy
#: machine. ZooKeeper 3.8 can leave a connection made while it starts open
#: (NullPointerException "zkDb is null" when closing it) until its 10 s
#: sessionless-connection timeout, and kazoo drops a connection that stays
#: silent for 2/3 of the session timeout; a shorter session can expire meanwhile.
SURVIVING_SESSION = 20.0
#: How long a client may take to be back after such a restart: seen 11 s loaded.
RECONNECT_WAIT = SURVIVING_SESSION + 5.0

# Small, quick JVM: C1 only and serial GC start in ~0.3 s here.
JVM_FLAGS = (
    "-Xmx128m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
    "-Dzookeeper.jmx.log4j.disable=true",
    # Test data is disposable: skip fsync so restarts and writes are fast.
    "-Dzookeeper.forceSync=no",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
)


class ZooKeeperError(RuntimeError):
    """The server did not start, or died; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def four_letter(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command and return the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


class ZooKeeperServer:
    """One standalone ZooKeeper JVM on 127.0.0.1.

    ``tick_time`` is in ms; ZooKeeper grants session timeouts from 2 ticks
    (1 s at the default 500 ms) up to 60 s, so that a test can ask for a
    session that outlives a restart of this JVM on a loaded machine.
    """

    host = "127.0.0.1"

    def __init__(self, *, tick_time: int = 500, base_dir: str | None = None,
                 start_timeout: float = 30.0, java: str = "java") -> None:
        self.tick_time = tick_time
        self.start_timeout = start_timeout
        self.java = java
        self._own_dir = base_dir is None
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix="mpush-zk-"))
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "zoo.cfg"
        self.log_path = self.dir / "zookeeper.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self._closed = False

    # -- addresses ---------------------------------------------------------

    def reserve_port(self) -> int:
        """Pick the port now, so clients can be pointed at a server not yet
        started (the "ZooKeeper is down at startup" case)."""
        if self.port is None:
            self.port = free_port(self.host)
        return self.port

    @property
    def connect_string(self) -> str:
        if self.port is None:
            raise ZooKeeperError("server was never started: no port yet")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ZooKeeperServer:
        """Start (first time: on a fresh free port) and wait until it serves."""
        if self._closed:
            raise ZooKeeperError("server is closed")
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is not None:
            # Restart, or a reserved port: clients already use this one.
            self._launch()
            return self
        # The free port can be taken between our probe and the JVM's bind;
        # a fresh port on a second try is cheap, so retry a few times.
        last: ZooKeeperError | None = None
        for _ in range(3):
            self.port = free_port(self.host)
            try:
                self._launch()
                return self
            except ZooKeeperError as e:
                last = e
                if "Address already in use" not in str(e):
                    raise
        assert last is not None
        raise last

    def restart(self) -> ZooKeeperServer:
        """Stop if running, then start again on the same port and data dir."""
        self.stop()
        return self.start()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit within ``timeout``)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            self._reap()
            return
        if self._frozen:
            # A stopped process would hold the SIGTERM until SIGCONT.
            self.thaw()
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown (works on a frozen one too)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10.0)
        self._reap()

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts TCP, but nothing answers."""
        if not self.running:
            raise ZooKeeperError("cannot freeze: not running")
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        """Stop the server and delete its directory (if we created it)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- diagnostics -------------------------------------------------------

    def srvr(self, timeout: float = 1.0) -> str:
        """The ``srvr`` four-letter answer (raises OSError when down)."""
        return four_letter(self.host, self._require_port(), "srvr", timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def command(self) -> list[str]:
        classpath = ":".join(str(JAVA_DIR / jar) for jar in CLASSPATH_JARS)
        return [self.java, *JVM_FLAGS, "-cp", classpath, MAIN_CLASS, str(self.config_path)]

    # -- internals ---------------------------------------------------------

    def _require_port(self) -> int:
        if self.port is None:
            raise ZooKeeperError("server was never started: no port yet")
        return self.port

    def _write_config(self) -> None:
        port = self._require_port()
        lines = [
            f"tickTime={self.tick_time}",
            f"dataDir={self.data_dir}",
            f"clientPort={port}",
            f"clientPortAddress={self.host}",
            # The admin server would take port 8080: never wanted here.
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,stat,mntr,cons,dump,wchs",
            # Many test clients come from 127.0.0.1: no per-IP limit.
            "maxClientCnxns=0",
            # The default cap (20 ticks = 10 s) is shorter than a JVM restart
            # plus its first slow seconds can take on a busy 2-core machine.
            "maxSessionTimeout=60000",
            # Small preallocated txn log files (KB) instead of 64 MB ones.
            "preAllocSize=1024",
            "snapCount=10000",
        ]
        self.config_path.write_text("\n".join(lines) + "\n", "utf-8")

    def _launch(self) -> None:
        self._write_config()
        # The child gets its own copy of the descriptor; ours can close.
        with open(self.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} starting on port {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir,
                # Own process group: a Ctrl-C in the test runner does not hit
                # the JVM before our cleanup does.
                start_new_session=True,
            )
        self._frozen = False
        try:
            self._wait_serving()
        except BaseException:
            self.kill()
            raise

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise ZooKeeperError(
                    f"zookeeper exited with {self.process.returncode} while starting:\n"
                    + self.log_tail())
            try:
                # "srvr" answers "not currently serving" until the server is
                # really up; "Mode:" only appears once it serves requests.
                if "Mode:" in self.srvr(timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ZooKeeperError(
                    f"zookeeper did not serve within {self.start_timeout} s:\n" + self.log_tail())
            time.sleep(0.02)

    def _reap(self) -> None:
        self._frozen = False
        if self.process is not None and self.process.poll() is not None:
            self.process = None
