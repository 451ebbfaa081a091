"""Redis access for the alloc server: one API over single, sentinel and cluster.

Built from txredisapi's wire protocol (``RedisProtocol``: RESP parsing,
reply timeouts, pipelining of commands written on one connection) plus our
own connection handling in :class:`RedisConnection`, because txredisapi's
factories do not give what a daemon needs here:

* a call made while Redis is down waits for a connection forever (no
  timeout covers the connection pool); ours fail within
  ``connect_timeout + reply_timeout`` whatever the state;
* a failed AUTH stops its reconnecting for good; ours retries slowly;
* Redis Cluster (ASKING then the command on one given connection) needs
  direct access to a node's connection;
* its Sentinel support ignores our connect timeout.

Connections are lazy: made by the first call that needs one and remade by
the next call after they were lost; a failed attempt is not repeated for a
short, growing delay (calls in between fail at once), so a dead Redis costs
neither time nor a busy reconnect loop. A periodic probe keeps ``healthy``
current between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.cluster.redis_cluster import Address, ClusterRouter

log = Logger(namespace="mpush.cluster.redis")

MODES = ("single", "sentinel", "cluster")
ONLINE_KEY_PREFIX = "mp:oul:"


class RedisSettingsLike(Protocol):
    """What RedisService reads from ``mpush.config.RedisSettings``."""

    mode: str
    nodes: tuple[tuple[str, int], ...]
    password: str | None
    sentinel_master: str | None
    connect_timeout: float
    reply_timeout: float


class RedisUnavailable(txredisapi.ConnectionError):
    """Redis could not be reached, refused us, or did not answer in time."""


class RedisAuthError(RedisUnavailable):
    """Wrong or missing password (or the server refused AUTH)."""


def _fmt(address: Address | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "?"


# --------------------------------------------------------------------------
# One connection to one server
# --------------------------------------------------------------------------


class _Protocol(txredisapi.RedisProtocol):
    """txredisapi's protocol, telling its owner when it is gone.

    AUTH is done by the owner (not by txredisapi's connectionMade, which
    would stop the factory for good on a wrong password).
    """

    def __init__(self, owner: RedisConnection) -> None:
        super().__init__(
            charset="utf-8",
            replyTimeout=owner.reply_timeout or None,
            password=None,
            dbid=None,
            convertNumbers=False,  # keep "1" a string (hash fields, values)
        )
        self.owner = owner
        self.callLater = owner.reactor.callLater  # the injected clock, not the global one

    def connectionLost(self, why: Failure) -> None:
        try:
            super().connectionLost(why)
        finally:
            self.owner._lost(self)


class _ProtocolFactory(Factory):
    noisy = False

    def __init__(self, owner: RedisConnection) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Protocol:
        proto = _Protocol(self.owner)
        proto.factory = self
        return proto


Resolver = Callable[[], "Deferred[Address]"]
StateListener = Callable[["RedisConnection", bool, "str | None"], None]


class RedisConnection:
    """One lazily made, remade-on-demand connection to one Redis server.

    ``resolve`` gives the address before each connection attempt (fixed for
    single and cluster nodes, asked from Sentinel for a master). Commands
    are written at once, so calls made in the same reactor turn pipeline.
    """

    #: first delay after a failed connection attempt, doubled up to retry_max
    retry_initial = 0.25
    retry_max = 5.0
    #: a wrong password will not fix itself soon: retry rarely
    auth_retry = 10.0

    def __init__(
        self,
        name: str,
        resolve: Address | Resolver,
        *,
        password: str | None,
        connect_timeout: float,
        reply_timeout: float,
        reactor: Any,
        require_master: bool = False,
        on_state: StateListener | None = None,
    ) -> None:
        self.name = name
        if isinstance(resolve, tuple):
            fixed = (str(resolve[0]), int(resolve[1]))
            self.address: Address | None = fixed
            self._resolve: Resolver = lambda: succeed(fixed)
        else:
            self.address = None
            self._resolve = resolve
        self.password = password or None
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.reactor = reactor
        self.require_master = require_master
        self._on_state = on_state
        self._factory = _ProtocolFactory(self)
        self.up: bool | None = None  # None: not tried yet
        self.error: str | None = None
        self.connects = 0  # successful connections made, for tests and metrics
        self._proto: _Protocol | None = None
        self._connecting: Deferred[_Protocol] | None = None
        self._waiters: list[Deferred[_Protocol]] = []
        self._failures = 0
        self._retry_at = 0.0
        self._hold_error: RedisUnavailable | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisConnection {self.name} {_fmt(self.address)} up={self.up}>"

    @property
    def connected(self) -> bool:
        return self._proto is not None and bool(self._proto.connected)

    def _who(self) -> str:
        if self.address is not None and _fmt(self.address) not in self.name:
            return f"{self.name} at {_fmt(self.address)}"
        return self.name

    # -- state

    def _set_state(self, up: bool, error_text: str | None) -> None:
        if up == self.up and (up or error_text == self.error):
            return
        self.up, self.error = up, error_text
        if self._on_state is not None:
            self._on_state(self, up, error_text)

    # -- getting a connection

    def _get_protocol(self) -> Deferred[_Protocol]:
        if self._closed:
            return fail(RedisUnavailable(f"{self._who()}: connection closed"))
        if self._proto is not None and self._proto.connected:
            return succeed(self._proto)
        if self._connecting is None and self._hold_error is not None:
            if self.reactor.seconds() < self._retry_at:
                # Fail fast: the last attempt failed moments ago.
                held = self._hold_error
                return fail(type(held)(str(held)))
        # Registered before connecting: a connection attempt that fails
        # synchronously must still find its waiter.
        waiter: Deferred[_Protocol] = Deferred(self._cancel_waiter)
        self._waiters.append(waiter)
        if self._connecting is None:
            self._start_connecting()
        return waiter

    def _cancel_waiter(self, d: Deferred[_Protocol]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)

    def _start_connecting(self) -> None:
        d = ensureDeferred(self._connect())
        # Resolution + TCP + handshake all within connect_timeout.
        d.addTimeout(self.connect_timeout, self.reactor)
        self._connecting = d
        d.addBoth(self._connect_done)

    async def _connect(self) -> _Protocol:
        self.address = await self._resolve()
        host, port = self.address
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        try:
            proto: _Protocol = await endpoint.connect(self._factory)
        except error.TimeoutError:
            raise RedisUnavailable(
                f"{self._who()}: not connected within {self.connect_timeout:g}s"
            ) from None
        except (error.ConnectError, error.DNSLookupError) as e:
            raise RedisUnavailable(f"{self._who()}: cannot connect: {e}") from None
        try:
            await self._handshake(proto)
        except BaseException:
            proto.transport.abortConnection()
            raise
        return proto

    async def _handshake(self, proto: _Protocol) -> None:
        # Every new connection gets one answer before it is used: a frozen
        # server or a password problem shows up here, as a connect failure.
        if self.password is not None:
            try:
                await proto.execute_command("AUTH", self.password)
            except txredisapi.ResponseError as e:
                # The server's message never contains the password.
                raise RedisAuthError(f"{self._who()}: authentication failed: {e}") from None
        if self.require_master:
            role = await proto.execute_command("ROLE")
            if not isinstance(role, list) or not role or role[0] != "master":
                what = role[0] if isinstance(role, list) and role else role
                raise RedisUnavailable(f"{self._who()}: is not a master (role {what})")
        elif self.password is None:
            try:
                await proto.execute_command("PING")
            except txredisapi.ResponseError as e:
                if str(e).startswith("NOAUTH"):
                    raise RedisAuthError(
                        f"{self._who()}: the server requires a password, none is configured"
                    ) from None
                raise

    def _connect_done(self, result: _Protocol | Failure) -> None:
        self._connecting = None
        waiters, self._waiters = self._waiters, []
        if self._closed:
            if not isinstance(result, Failure):
                result.transport.abortConnection()
            for w in waiters:
                w.errback(RedisUnavailable(f"{self._who()}: connection closed"))
            return
        if isinstance(result, Failure):
            exc = self._connect_error(result)
            if isinstance(exc, RedisAuthError):
                delay = self.auth_retry
            else:
                delay = min(self.retry_max, self.retry_initial * 2 ** min(self._failures, 16))
            self._failures += 1
            self._retry_at = self.reactor.seconds() + delay
            self._hold_error = exc
            self._set_state(False, str(exc))
            for w in waiters:
                w.errback(exc)
            return
        self._proto = result
        self.connects += 1
        self._failures = 0
        self._hold_error = None
        self._set_state(True, None)
        for w in waiters:
            w.callback(result)

    def _connect_error(self, f: Failure) -> RedisUnavailable:
        if f.check(RedisUnavailable):
            return f.value
        if f.check(txredisapi.TimeoutError):
            return RedisUnavailable(
                f"{self._who()}: connected, but no answer within {self.reply_timeout:g}s"
            )
        if f.check(defer.TimeoutError, error.TimeoutError):
            return RedisUnavailable(
                f"{self._who()}: not connected within {self.connect_timeout:g}s"
            )
        return RedisUnavailable(f"{self._who()}: cannot connect: {f.getErrorMessage()}")

    def _lost(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None

    # -- commands

    def execute(self, *args: Any, asking: bool = False) -> Deferred[Any]:
        """Send one command; ``asking`` sends ``ASKING`` just before it on
        the same connection (Redis Cluster ASK redirect)."""
        d = self._get_protocol()
        d.addCallback(self._send, args, asking)
        d.addCallbacks(self._replied, self._failed, errbackArgs=(args[0],))
        return d

    @staticmethod
    def _send(proto: _Protocol, args: tuple[Any, ...], asking: bool) -> Deferred[Any]:
        if asking:
            # Written before the command in the same turn: same connection,
            # right order. Its own answer is of no interest.
            proto.execute_command("ASKING").addErrback(lambda _: None)
        return proto.execute_command(*args)

    def _replied(self, result: Any) -> Any:
        self._set_state(True, None)
        return result

    def _failed(self, f: Failure, command: str) -> Failure:
        if f.check(defer.CancelledError, RedisUnavailable):
            return f  # the caller gave up / already reported by the connect
        if f.check(txredisapi.ResponseError):
            message = str(f.value)
            if not message.startswith(("NOAUTH", "WRONGPASS")):
                self._set_state(True, None)  # an error reply is still an answer
                return f
            # The password was changed or required after we connected.
            exc: RedisUnavailable = RedisAuthError(f"{self._who()}: {message}")
            self._hold_error = exc
            self._retry_at = self.reactor.seconds() + self.auth_retry
            self.reset()
        elif f.check(txredisapi.TimeoutError):
            # txredisapi aborts this connection right after failing its
            # pending calls: a call made from their errbacks must not be
            # written on it, so forget it now.
            self._proto = None
            exc = RedisUnavailable(
                f"{self._who()}: no reply to {command} within {self.reply_timeout:g}s"
            )
        elif f.check(txredisapi.ConnectionError, error.ConnectionLost, error.ConnectionDone):
            exc = RedisUnavailable(f"{self._who()}: connection lost")
        else:
            return f
        self._set_state(False, str(exc))
        return Failure(exc)

    # -- ending

    def reset(self) -> None:
        """Drop the current connection; the next call makes a new one."""
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()

    def close(self) -> Deferred[None]:
        """Close for good; fires once the connection is gone."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        proto, self._proto = self._proto, None
        if proto is None or not proto.connected:
            return succeed(None)
        done = proto.whenDisconnected()
        proto.transport.loseConnection()
        # loseConnection waits for the write buffer to drain, which a frozen
        # server never does: abort after a moment.
        timer = self.reactor.callLater(1.0, proto.transport.abortConnection)

        def finished(_: Any) -> None:
            if timer.active():
                timer.cancel()

        return done.addBoth(finished)


# --------------------------------------------------------------------------
# Sentinel
# --------------------------------------------------------------------------


class SentinelResolver:
    """Asks all sentinels at once for the master's address; the first
    answer wins. Sentinels get no password (theirs is not the master's)."""

    def __init__(self, sentinels: list[RedisConnection], master_name: str) -> None:
        self.sentinels = sentinels
        self.master_name = master_name

    def __call__(self) -> Deferred[Address]:
        result: Deferred[Address] = Deferred()
        errors: list[str] = []
        name = self.master_name

        def settle() -> None:
            if not result.called and len(errors) == len(self.sentinels):
                result.errback(
                    RedisUnavailable(
                        f"no sentinel gave the address of master {name!r}: " + "; ".join(errors)
                    )
                )

        def answered(reply: Any, sentinel: RedisConnection) -> None:
            if result.called:
                return
            if isinstance(reply, list) and len(reply) >= 2 and reply[0]:
                result.callback((str(reply[0]), int(reply[1])))
            else:
                errors.append(f"{sentinel.name}: does not know master {name!r}")
                settle()

        def failed(f: Failure, sentinel: RedisConnection) -> None:
            errors.append(f.getErrorMessage())
            settle()

        for sentinel in self.sentinels:
            d = sentinel.execute("SENTINEL", "get-master-addr-by-name", name)
            d.addCallbacks(answered, failed, callbackArgs=(sentinel,), errbackArgs=(sentinel,))
        return result


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------


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
        settings: RedisSettingsLike,
        reactor: Any = None,
        *,
        probe_interval: float | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
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
        if self.mode == "single":
            self.connection = self._connection(f"redis {_fmt(self.nodes[0])}", self.nodes[0])
        elif self.mode == "sentinel":
            self._sentinels = [
                self._connection(f"sentinel {_fmt(a)}", a, use_password=False, track=False)
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
        self._loop = LoopingCall(self._probe)
        self._loop.clock = self.reactor
        # now=True: the first probe starts at once, but is not waited for.
        self._loop.start(self.probe_interval, now=True).addErrback(
            lambda f: log.failure("redis probe loop failed", f)
        )
        return succeed(None)

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
            conn._closed = True  # made by a call still running after stop
        return conn

    def _node(self, address: Address) -> RedisConnection:
        conn = self._node_connections.get(address)
        if conn is None:
            conn = self._connection(f"redis {_fmt(address)}", address)
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
            return _fmt(self.connection.address)
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
                        old=_fmt(conn.address),
                        new=_fmt(address),
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

    def online_counts(self, ips: Iterable[str]) -> Deferred[dict[str, int]]:
        """ZCARD ``mp:oul:<ip>`` for every ip, all sent at once.

        Fails with the first failure if any count cannot be read: a partial
        answer would rank the missing servers as empty, so the caller had
        better keep its last complete one.
        """
        unique = list(dict.fromkeys(ips))
        if not unique:
            return succeed({})
        calls = [self.zcard(ONLINE_KEY_PREFIX + ip) for ip in unique]
        d = DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)

        def counts(results: list[tuple[bool, int]]) -> dict[str, int]:
            return {ip: n for ip, (_, n) in zip(unique, results, strict=True)}

        def first_failure(f: Failure) -> Failure:
            return f.value.subFailure if f.check(defer.FirstError) else f

        return d.addCallbacks(counts, first_failure)


__all__ = [
    "MODES",
    "ONLINE_KEY_PREFIX",
    "RedisAuthError",
    "RedisConnection",
    "RedisService",
    "RedisSettingsLike",
    "RedisUnavailable",
    "SentinelResolver",
]
