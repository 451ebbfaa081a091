"""Redis access for the alloc server: one API over single, sentinel and cluster.

:class:`RedisService` is the daemon's Redis client: one
:class:`~mpush.cluster.redis_connection.RedisConnection` (single; sentinel:
the master's, found by :class:`~mpush.cluster.redis_sentinel.SentinelResolver`)
or one per cluster node behind a
:class:`~mpush.cluster.redis_cluster.ClusterRouter` (MOVED/ASK). Every call
fails within ``connect_timeout + reply_timeout`` whatever the state; a
periodic probe keeps ``healthy`` current between calls.

The connection pieces are re-exported here, where they used to live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from txredisapi import ResponseError

from mpush.balance import ONLINE_KEY_PREFIX
from mpush.cluster.redis_cluster import Address, ClusterRouter
from mpush.cluster.redis_connection import (
    RedisAuthError,
    RedisConnection,
    RedisUnavailable,
    Resolver,
    fmt_address,
)
from mpush.cluster.redis_sentinel import SentinelResolver
from mpush.config import RedisSettings
from mpush.interfaces import OnlineCounts
from mpush.reactor import default_reactor

__all__ = [
    "MODES",
    "ONLINE_KEY_PREFIX",
    "RedisAuthError",
    "RedisConnection",
    "RedisService",
    "RedisUnavailable",
    "SentinelResolver",
]

log = Logger(namespace="mpush.cluster.redis")

MODES = ("single", "sentinel", "cluster")
#: Error replies that speak for the server, not for one key: a count read
#: that gets one of these fails as a whole.
SERVER_ERRORS = ("LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "NOAUTH", "WRONGPASS")


class RedisService(Service):
    """Redis client for the whole daemon, whatever the deployment mode.

    ``startService`` does not wait for Redis: an unreachable Redis makes
    calls fail (quickly) and ``healthy`` False until it is back.
    """

    name = "redis"
    #: seconds between health probes (PING; cluster: also the slot map;
    #: sentinel: also the master's address)
    probe_interval = 5.0

    def __init__(
        self,
        settings: RedisSettings,
        reactor: Any = None,
        *,
        probe_interval: float | None = None,
    ) -> None:
        self.reactor = default_reactor(reactor)
        self.mode = settings.mode
        if self.mode not in MODES:
            raise ValueError(f"redis mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        self.nodes: tuple[Address, ...] = tuple((str(h), int(p)) for h, p in settings.nodes)
        if not self.nodes:
            raise ValueError("redis needs at least one node")
        self.sentinel_master = getattr(settings, "sentinel_master", None) or None
        if self.mode == "sentinel" and not self.sentinel_master:
            raise ValueError("redis sentinel mode needs the name of the master")
        self.password = settings.password or None  # "" means none
        self.connect_timeout = float(settings.connect_timeout)
        self.reply_timeout = float(settings.reply_timeout)
        if probe_interval is not None:
            self.probe_interval = probe_interval

        self.healthy = False
        self.last_error: str | None = None
        self._state: bool | None = None  # None: not known yet
        self.connection: RedisConnection | None = None  # single / sentinel master
        self.router: ClusterRouter | None = None
        self._sentinels: list[RedisConnection] = []
        self._resolver: SentinelResolver | None = None
        self._node_connections: dict[Address, RedisConnection] = {}
        self._loop: LoopingCall | None = None
        self._closed = True

    # -- lifecycle

    def startService(self) -> Deferred[None]:
        if self.running:
            return succeed(None)
        super().startService()
        self._closed = False
        self._state = None
        self.healthy = False
        self._open()
        self._loop = LoopingCall(self._probe)
        self._loop.clock = self.reactor
        # now=True: the first probe starts at once, but is not waited for.
        self._loop.start(self.probe_interval, now=True).addErrback(
            lambda f: log.failure("redis probe loop failed", f)
        )
        return succeed(None)

    def _open(self) -> None:
        # The connections (or the cluster router) of the configured mode;
        # none is connected here: connections are made by the first call.
        if self.mode == "single":
            self.connection = self._connection(f"redis {fmt_address(self.nodes[0])}", self.nodes[0])
        elif self.mode == "sentinel":
            self._sentinels = [
                self._connection(f"sentinel {fmt_address(a)}", a, use_password=False, track=False)
                for a in self.nodes
            ]
            assert self.sentinel_master is not None
            self._resolver = SentinelResolver(self._sentinels, self.sentinel_master)
            self.connection = self._connection(
                f"redis master {self.sentinel_master!r}", self._resolver, require_master=True
            )
        else:
            self.router = ClusterRouter(
                self.nodes, self._node, on_map_changed=self._recompute_health
            )

    def stopService(self) -> Deferred[None]:
        if not self.running:
            return succeed(None)
        super().stopService()
        self._closed = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        connections = [c for c in (self.connection,) if c is not None]
        connections += self._sentinels + list(self._node_connections.values())
        self.connection, self.router, self._resolver = None, None, None
        self._sentinels, self._node_connections = [], {}
        self.healthy = False
        self._state = None
        d = defer.gatherResults([c.close() for c in connections], consumeErrors=True)
        return d.addCallback(lambda _: None)

    def _connection(
        self,
        name: str,
        resolve: Address | Resolver,
        *,
        use_password: bool = True,
        require_master: bool = False,
        track: bool = True,
    ) -> RedisConnection:
        conn = RedisConnection(
            name,
            resolve,
            password=self.password if use_password else None,
            connect_timeout=self.connect_timeout,
            reply_timeout=self.reply_timeout,
            reactor=self.reactor,
            require_master=require_master,
            on_state=self._on_state if track else None,
        )
        if self._closed:
            conn.close()  # made by a call still running after stop: born closed
        return conn

    def _node(self, address: Address) -> RedisConnection:
        conn = self._node_connections.get(address)
        if conn is None:
            conn = self._connection(f"redis {fmt_address(address)}", address)
            if not self._closed:
                self._node_connections[address] = conn
        return conn

    # -- health

    def _relevant_states(self) -> list[bool | None]:
        if self.router is not None:
            if not self.router.loaded:
                return [c.up for c in self._node_connections.values()]
            return [
                c.up if (c := self._node_connections.get(a)) is not None else None
                for a in self.router.masters()
            ]
        return [self.connection.up] if self.connection is not None else []

    def _on_state(self, conn: RedisConnection, up: bool, error_text: str | None) -> None:
        if not up and error_text:
            self.last_error = error_text
        self._recompute_health()

    def _recompute_health(self) -> None:
        if self._closed:
            return
        states = self._relevant_states()
        if any(s is False for s in states):
            new: bool | None = False
        elif (
            states
            and all(s is True for s in states)
            and (self.router is None or self.router.loaded)
        ):
            new = True
        else:
            return  # nothing known yet: no change
        if new == self._state:
            return
        self._state = new
        self.healthy = new
        if new:
            self.last_error = None
            log.info("Redis ({mode}) available: {where}", mode=self.mode, where=self._where())
        else:
            log.warn("Redis ({mode}) unavailable: {error}", mode=self.mode, error=self.last_error)

    def _where(self) -> str:
        if self.router is not None:
            return f"{len(self.router.masters())} masters"
        if self.connection is not None:
            return fmt_address(self.connection.address)
        return "?"

    def _probe(self) -> Deferred[None]:
        d = ensureDeferred(self._probe_once())
        # Outcomes are already reported through the connection states; the
        # loop must keep running whatever happened.
        d.addErrback(lambda f: log.debug("redis probe: {e}", e=f.getErrorMessage()))
        return d

    async def _probe_once(self) -> None:
        # Local references: a stopService() during an await clears the
        # attributes, and this probe must then end quietly.
        router, conn, resolver = self.router, self.connection, self._resolver
        if router is not None:
            try:
                await self._bounded(router.refresh(), "CLUSTER SLOTS")
            except Exception:
                if not router.loaded:
                    return
            if self._closed:
                return
            pings = [self._bounded(self._node(a).execute("PING"), "PING") for a in router.masters()]
            await DeferredList(pings, consumeErrors=True)
            return
        if conn is None:
            return
        if resolver is not None:
            try:
                address = await self._bounded(resolver(), "SENTINEL")
            except Exception:
                pass  # the master may still be fine; PING tells
            else:
                if conn.connected and address != conn.address:
                    log.info(
                        "Redis master {name!r} moved from {old} to {new}",
                        name=self.sentinel_master,
                        old=fmt_address(conn.address),
                        new=fmt_address(address),
                    )
                    conn.reset()
        await self._bounded(conn.execute("PING"), "PING")

    # -- calls

    def _bounded(self, d: Deferred[Any], what: str) -> Deferred[Any]:
        # Safety net over the per-step timeouts: no call outlives this.
        limit = self.connect_timeout + self.reply_timeout

        def timed_out(result: Any, timeout: float) -> Any:
            raise RedisUnavailable(f"redis {what}: no answer within {timeout:g}s")

        return d.addTimeout(limit, self.reactor, onTimeoutCancel=timed_out)

    def execute(self, command: str, *args: Any) -> Deferred[Any]:
        """Run one command; in cluster mode it is routed by ``args[0]``."""
        if self._closed:
            return fail(RedisUnavailable("redis client is not running"))
        if self.router is not None:
            d = self.router.execute(command, *args)
        else:
            assert self.connection is not None
            d = self.connection.execute(command, *args)
        return self._bounded(d, command)

    def zcard(self, key: str) -> Deferred[int]:
        return self.execute("ZCARD", key).addCallback(int)

    def hgetall(self, key: str) -> Deferred[dict[str, str]]:
        def to_dict(reply: list[Any] | None) -> dict[str, str]:
            items = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in (reply or [])
            ]
            return dict(zip(items[::2], items[1::2], strict=False))

        return self.execute("HGETALL", key).addCallback(to_dict)

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> Deferred[list[Any]]:
        """Send ``commands`` at once (cluster: one pipeline per master); fires
        with their replies in order, an error reply as its ``ResponseError``
        (a value); fails only when Redis cannot be used."""
        if self._closed:
            return fail(RedisUnavailable("redis client is not running"))
        if not commands:
            return succeed([])
        if self.router is not None:
            d = self.router.pipeline(commands)
        else:
            assert self.connection is not None
            d = self.connection.pipeline(commands)
        return self._bounded(d, f"{commands[0][0]} x{len(commands)}")

    def read_online_counts(self, ips: Iterable[str]) -> Deferred[OnlineCounts]:
        """ZCARD ``mp:oul:<ip>`` for every ip, in one pipeline. A key that
        answers an error (a wrong type) is in ``unreadable``, the others in
        ``counts``; an error that speaks for the server fails the whole read."""
        unique = list(dict.fromkeys(ips))
        d = self.pipeline([("ZCARD", ONLINE_KEY_PREFIX + ip) for ip in unique])
        return d.addCallback(_online_counts, unique)

    def online_counts(self, ips: Iterable[str]) -> Deferred[dict[str, int]]:
        """ZCARD ``mp:oul:<ip>`` for every ip, all sent at once.

        Fails if any count cannot be read: a partial answer would rank the
        missing servers as empty. :meth:`read_online_counts` tells which keys
        could not be read instead.
        """

        def complete(read: OnlineCounts) -> dict[str, int]:
            for ip, error in read.unreadable.items():
                raise ResponseError(f"{ONLINE_KEY_PREFIX}{ip}: {error}")
            return read.counts

        return self.read_online_counts(ips).addCallback(complete)


def _online_counts(replies: list[Any], ips: list[str]) -> OnlineCounts:
    counts: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    for ip, reply in zip(ips, replies, strict=True):
        if isinstance(reply, int):
            counts[ip] = reply
        elif isinstance(reply, ResponseError):
            if str(reply).startswith(SERVER_ERRORS):
                raise reply
            unreadable[ip] = str(reply)
        else:
            unreadable[ip] = f"not a count: {reply!r:.80}"
    return OnlineCounts(counts, unreadable)
