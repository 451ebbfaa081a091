"""Real Redis servers, clusters and sentinels for tests and demos.

Every process listens on a free loopback port, lives in its own temporary
directory and is cleaned up by ``close()`` (or the ``with`` block, or at
interpreter exit as a last resort). All waits are bounded.

The helpers talk to the servers through :class:`SyncRedisClient`, a tiny
blocking RESP client: tests need a second, independent view of the server,
and the ``redis`` package would be one more dependency for ~80 lines.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from mpush.cluster.redis_connection import encode_commands

HOST = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

# A cluster node also listens on port + 10000 (the cluster bus).
CLUSTER_BUS_OFFSET = 10000


class RedisReplyError(Exception):
    """The server answered with an error reply (``-ERR ...``)."""


class RedisLaunchError(RuntimeError):
    """A server could not be started or did not become ready in time."""


# --------------------------------------------------------------------------
# A tiny blocking RESP2 client
# --------------------------------------------------------------------------


class SyncRedisClient:
    """Blocking RESP client: ``execute("SET", "k", "v")``.

    Bulk strings come back as ``str`` (UTF-8, undecodable bytes escaped),
    integers as ``int``, nil as ``None``, arrays as lists; an error reply
    raises :class:`RedisReplyError` (inside an array it is returned as is).
    """

    def __init__(
        self,
        host: str = HOST,
        port: int = 6379,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rb")
        if password:
            try:
                self.execute("AUTH", password)
            except BaseException:
                self.close()
                raise

    def execute(self, *args: Any) -> Any:
        self._sock.sendall(encode_commands([args]))
        reply = self._read()
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send all commands in one write, then read all replies."""
        self._sock.sendall(encode_commands(commands))
        return [self._read() for _ in commands]

    def _read(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"redis {self.host}:{self.port} closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8", "surrogateescape")
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError(f"redis {self.host}:{self.port} closed the connection")
            return data[:-2].decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP line {line[:40]!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as a flat dict (section headers dropped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key] = value
    return out


# --------------------------------------------------------------------------
# Ports and waiting
# --------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, with_offset: int | None = None, attempts: int = 50) -> int:
    """A loopback port nobody listens on right now (the kernel picks it).

    ``with_offset``: ``port + with_offset`` must be free (and valid) too,
    for cluster nodes and their bus port.
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if with_offset is None:
            return port
        other = port + with_offset
        if other <= 65535 and _port_is_free(other):
            return port
    raise RedisLaunchError("no free loopback port found")


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, RedisReplyError, ConnectionError) as e:
            last = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last})" if last else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


# Last-resort cleanup: a test run that dies must not leave servers behind.
_live: weakref.WeakSet[_RedisProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.close()


# --------------------------------------------------------------------------
# One redis-server / redis-sentinel process
# --------------------------------------------------------------------------


class _RedisProcess:
    """Shared process handling of servers and sentinels."""

    binary = REDIS_SERVER
    kind = "redis"
    port_offset: int | None = None

    def __init__(self, *, port: int | None = None, start_timeout: float = 10.0) -> None:
        self.host = HOST
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(with_offset=self.port_offset)
        self.start_timeout = start_timeout
        self.dir = tempfile.mkdtemp(prefix=f"mpush-{self.kind}-")
        self.conf_path = os.path.join(self.dir, f"{self.kind}.conf")
        self.log_path = os.path.join(self.dir, f"{self.kind}.log")
        self.password: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: SyncRedisClient | None = None
        self.frozen = False
        self._closed = False
        _live.add(self)

    # -- what subclasses supply

    def _config_lines(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self, client: SyncRedisClient) -> bool:
        return client.execute("PING") == "PONG"

    # -- properties

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # -- lifecycle

    def start(self) -> Self:
        """Start the process (with the same port and dir if it ran before)."""
        if self._closed:
            raise RedisLaunchError(f"{self.kind} {self.port}: already closed")
        if self.running:
            return self
        # A port picked by bind(0) can be taken by someone else before the
        # server binds it: pick another one, but only before the first
        # start (a restart must keep its address).
        for attempt in range(5):
            self._write_config()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except RedisLaunchError:
                in_use = "Address already in use" in self.log_tail()
                self._reap()
                if in_use and not self._fixed_port and attempt < 4:
                    self.port = free_port(with_offset=self.port_offset)
                    continue
                raise
        raise AssertionError("unreachable")

    def _write_config(self) -> None:
        common = [
            f"port {self.port}",
            f"bind {self.host}",
            f'dir "{self.dir}"',
            f'logfile "{self.log_path}"',
            "daemonize no",
        ]
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write("\n".join(common + self._config_lines()) + "\n")

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [self.binary, self.conf_path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own process group: a Ctrl-C on the test run is not delivered
            # to the servers mid-test; close()/atexit stop them.
            start_new_session=True,
        )
        self.frozen = False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RedisLaunchError(
                    f"{self.kind} on port {self.port} exited at start:\n{self.log_tail()}"
                )
            try:
                with SyncRedisClient(self.host, self.port, self.password, timeout=1.0) as c:
                    if self._is_ready(c):
                        return
            except (OSError, RedisReplyError, ConnectionError) as e:
                last = e
            time.sleep(0.02)
        raise RedisLaunchError(
            f"{self.kind} on port {self.port} not ready after {self.start_timeout}s"
            f" (last error: {last}):\n{self.log_tail()}"
        )

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _reap(self, timeout: float = 5.0) -> None:
        self._drop_client()
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        self._proc = None
        self.frozen = False

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM; Redis saves first if persistence is on)."""
        if not self.running:
            self._reap()
            return
        assert self._proc is not None
        if self.frozen:
            # SIGTERM stays pending on a stopped process.
            self._proc.send_signal(signal.SIGCONT)
        self._proc.send_signal(signal.SIGTERM)
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown save (an append-only file still keeps data)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._reap()

    def freeze(self) -> None:
        """SIGSTOP: the port stays open and accepts connections, nothing answers."""
        if not self.running:
            raise RedisLaunchError(f"{self.kind} {self.port} is not running")
        assert self._proc is not None
        self._drop_client()
        self._proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def restart(self, *, kill: bool = False) -> Self:
        """Stop (or kill) and start again on the same port and directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process for good and remove its directory."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            _live.discard(self)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ is not called when __enter__ fails
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- talking to it

    def client(self, timeout: float = 5.0) -> SyncRedisClient:
        """A new blocking client (authenticated); the caller closes it."""
        return SyncRedisClient(self.host, self.port, self.password, timeout)

    def call(self, *args: Any) -> Any:
        """One command on a cached client (re-opened after a restart)."""
        if self._client is None:
            self._client = self.client()
        try:
            return self._client.execute(*args)
        except (OSError, ConnectionError):
            self._drop_client()
            raise

    def info(self, section: str | None = None) -> dict[str, str]:
        return parse_info(self.call("INFO", section) if section else self.call("INFO"))

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else ("running" if self.running else "stopped")
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class RedisServer(_RedisProcess):
    """One ``redis-server``.

    ``appendonly=True`` (fsync on every write) or ``save="1 1"`` keep the data
    across :meth:`restart` and even :meth:`kill`; by default nothing is
    persisted. The constructor does not start the process: call
    :meth:`start` or use ``with``.
    """

    kind = "redis"

    def __init__(
        self,
        password: str | None = None,
        *,
        port: int | None = None,
        appendonly: bool = False,
        save: str | None = None,
        cluster: bool = False,
        cluster_node_timeout: int = 2000,
        replicaof: tuple[str, int] | None = None,
        extra_config: Iterable[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.port_offset = CLUSTER_BUS_OFFSET if cluster else None
        super().__init__(port=port, start_timeout=start_timeout)
        self.password = password or None
        self.appendonly = appendonly
        self.save = save
        self.cluster_node_timeout = cluster_node_timeout
        self.replicaof = replicaof
        self.extra_config = list(extra_config)

    def _config_lines(self) -> list[str]:
        lines = [
            f'save "{self.save}"' if self.save else 'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            # Every write on disk at once, so that even SIGKILL keeps it.
            "appendfsync always",
            "enable-debug-command local",
            # A replica syncs at once (the default waits 5 s for others).
            "repl-diskless-sync-delay 0",
        ]
        if self.password:
            lines += [f'requirepass "{self.password}"', f'masterauth "{self.password}"']
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {self.cluster_node_timeout}",
            ]
        if self.replicaof:
            lines.append(f"replicaof {self.replicaof[0]} {self.replicaof[1]}")
        return lines + self.extra_config


class RedisSentinel(_RedisProcess):
    """A ``redis-sentinel`` (no password of its own) monitoring ``master``.

    The master's password, if any, is given to the sentinel as ``auth-pass``.
    """

    binary = REDIS_SENTINEL
    kind = "sentinel"

    def __init__(
        self,
        master: RedisServer,
        name: str = "mymaster",
        *,
        quorum: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        port: int | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(port=port, start_timeout=start_timeout)
        self.master = master
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._configured_port: int | None = None

    def _write_config(self) -> None:
        # Sentinel rewrites its own file (known replicas, epochs): write
        # ours only once so that a restart keeps what it learnt.
        if self._configured_port != self.port:
            super()._write_config()
            self._configured_port = self.port

    def _config_lines(self) -> list[str]:
        name = self.name
        m_host, m_port = self.master.address
        lines = [
            f"sentinel monitor {name} {m_host} {m_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.master.password:
            lines.append(f'sentinel auth-pass {name} "{self.master.password}"')
        return lines

    def _is_ready(self, client: SyncRedisClient) -> bool:
        # Ready once it is connected to the master, not merely listening.
        state = client.execute("SENTINEL", "MASTER", self.name)
        flags = dict(zip(state[::2], state[1::2], strict=False)).get("flags", "")
        return flags == "master"

    def master_address(self) -> tuple[str, int] | None:
        reply = self.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return (reply[0], int(reply[1])) if reply else None

    def replicas(self) -> list[dict[str, str]]:
        return [
            dict(zip(r[::2], r[1::2], strict=False))
            for r in self.call("SENTINEL", "REPLICAS", self.name)
        ]

    def failover(self, timeout: float = 15.0) -> tuple[str, int]:
        """Force a failover to a replica and wait until it is announced."""
        old = self.master_address()
        if not self._good_replica():
            # It learns of new replicas from the master's INFO, polled every
            # 10 s; restarted, it asks at once. (SENTINEL RESET is no
            # shortcut: it briefly sees the master down and tries a failover.)
            self.restart()
        wait_for(self._good_replica, timeout, "the sentinel to know a replica")
        wait_for(lambda: self._try_failover(), timeout, "SENTINEL FAILOVER to be accepted")
        return wait_for(
            lambda: (a := self.master_address()) != old and a, timeout, "the new master"
        )

    def _good_replica(self) -> bool:
        return any(
            "s_down" not in r.get("flags", "") and "disconnected" not in r.get("flags", "")
            for r in self.replicas()
        )

    def _try_failover(self) -> bool:
        try:
            self.call("SENTINEL", "FAILOVER", self.name)
            return True
        except RedisReplyError as e:
            # -NOGOODSLAVE until the sentinel has fresh INFO from the replica
            if "NOGOODSLAVE" in str(e) or "INPROG" in str(e):
                return False
            raise


# --------------------------------------------------------------------------
# Redis Cluster
# --------------------------------------------------------------------------


class RedisCluster:
    """``n`` masters (no replicas) forming one Redis Cluster.

    Slot ownership can be changed under a client's feet: :meth:`migrate_slot`
    moves a slot with its keys (clients then get MOVED); :meth:`begin_migration`
    plus :meth:`migrate_keys` leave the slot half-way (clients get ASK for the
    moved keys) until :meth:`finish_migration` or :meth:`abort_migration`.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        password: str | None = None,
        node_timeout_ms: int = 2000,
        extra_config: Iterable[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        if n < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.password = password or None
        self.start_timeout = start_timeout
        self.nodes = [
            RedisServer(
                self.password,
                cluster=True,
                cluster_node_timeout=node_timeout_ms,
                extra_config=extra_config,
            )
            for _ in range(n)
        ]
        self._initial_owner: list[int] = []  # slot -> index in self.nodes
        self._open_migrations: dict[int, tuple[RedisServer, RedisServer]] = {}

    # -- lifecycle

    def start(self) -> Self:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Self:
        for node in self.nodes:
            node.start()
        cmd = [REDIS_CLI, "--cluster", "create"]
        cmd += [f"{n.host}:{n.port}" for n in self.nodes]
        cmd += ["--cluster-replicas", "0", "--cluster-yes"]
        env = dict(os.environ)
        if self.password:
            # REDISCLI_AUTH keeps the password off the command line.
            env["REDISCLI_AUTH"] = self.password
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=self.start_timeout, env=env
        )
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RedisLaunchError(f"cluster create failed:\n{result.stdout}\n{result.stderr}")
        self.wait_stable()
        self._initial_owner = self._owner_table()
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views

    @property
    def seeds(self) -> tuple[tuple[str, int], ...]:
        return tuple(n.address for n in self.nodes)

    def node_id(self, node: RedisServer) -> str:
        return node.call("CLUSTER", "MYID")

    def key_slot(self, key: str) -> int:
        return int(self._any_live().call("CLUSTER", "KEYSLOT", key))

    def _node_by_port(self, port: int) -> RedisServer:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def _any_live(self) -> RedisServer:
        for n in self.nodes:
            if n.running and not n.frozen:
                return n
        raise RedisLaunchError("no cluster node is running")

    def slot_owners(self, node: RedisServer | None = None) -> dict[int, int]:
        """slot -> port of its master, as ``node`` (default: any) sees it."""
        table: dict[int, int] = {}
        for entry in (node or self._any_live()).call("CLUSTER", "SLOTS"):
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            for slot in range(start, end + 1):
                table[slot] = int(master[1])
        return table

    def owner(self, slot: int) -> RedisServer:
        return self._node_by_port(self.slot_owners()[slot])

    def node_for_key(self, key: str) -> RedisServer:
        return self.owner(self.key_slot(key))

    def _owner_table(self) -> list[int]:
        owners = self.slot_owners()
        ports = [n.port for n in self.nodes]
        return [ports.index(owners[s]) for s in range(16384)]

    def wait_stable(self, timeout: float | None = None) -> None:
        """Wait until every node says ``cluster_state:ok`` and they agree on slots."""
        timeout = self.start_timeout if timeout is None else timeout

        def stable() -> bool:
            live = [n for n in self.nodes if n.running]
            for n in live:
                if parse_info(n.call("CLUSTER", "INFO")).get("cluster_state") != "ok":
                    return False
            views = [self.slot_owners(n) for n in live]
            return all(v == views[0] and len(v) == 16384 for v in views)

        wait_for(stable, timeout, "the cluster to be ok and consistent", interval=0.05)

    # -- slot moves

    def begin_migration(self, slot: int, target: RedisServer) -> RedisServer:
        """Put ``slot`` in importing (target) / migrating (source) state."""
        source = self.owner(slot)
        if source is target:
            raise ValueError(f"slot {slot} already belongs to {target.port}")
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        self._open_migrations[slot] = (source, target)
        return source

    def migrate_keys(self, slot: int, keys: Iterable[str] | None = None) -> list[str]:
        """MIGRATE keys of a slot in migration (all of them if ``keys`` is None)."""
        source, target = self._open_migrations[slot]
        if keys is None:
            keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        keys = list(keys)
        if keys:
            cmd: list[Any] = ["MIGRATE", target.host, target.port, "", 0, 5000]
            if self.password:
                cmd += ["AUTH", self.password]
            source.call(*cmd, "KEYS", *keys)
        return keys

    def finish_migration(self, slot: int) -> None:
        """Move the remaining keys and give the slot to the target everywhere."""
        source, target = self._open_migrations[slot]
        self.migrate_keys(slot)
        target_id = self.node_id(target)
        # Target first: it bumps its config epoch, so gossip cannot undo this.
        for node in [target, source] + [n for n in self.nodes if n not in (source, target)]:
            if node.running:
                node.call("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        del self._open_migrations[slot]
        wait_for(
            lambda: all(self.slot_owners(n)[slot] == target.port for n in self.nodes if n.running),
            10.0,
            f"all nodes to see slot {slot} on {target.port}",
        )

    def abort_migration(self, slot: int) -> None:
        source, target = self._open_migrations.pop(slot)
        for node in (source, target):
            node.call("CLUSTER", "SETSLOT", slot, "STABLE")

    def migrate_slot(self, slot: int, target: RedisServer) -> RedisServer:
        """Move a whole slot (keys included) to ``target``; returns the source."""
        source = self.begin_migration(slot, target)
        self.finish_migration(slot)
        return source

    def flushall(self) -> None:
        for n in self.nodes:
            if n.running:
                n.call("FLUSHALL")

    def reset(self) -> None:
        """Back to the state right after :meth:`start`: empty, original slots."""
        for slot in list(self._open_migrations):
            self.abort_migration(slot)
        self.flushall()
        current = self._owner_table()
        for slot, idx in enumerate(self._initial_owner):
            if current[slot] != idx:
                self.migrate_slot(slot, self.nodes[idx])
