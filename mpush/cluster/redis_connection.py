"""One connection to one Redis server, made on demand and failing fast.

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
neither time nor a busy reconnect loop.

Why not ``twisted.application.internet.ClientService`` (as the gateway
pool uses; tried with Twisted 26.10), which would give one connection model:

* a call made while it waits between attempts waits for the next attempt:
  ``whenConnected(failAfterFailures=1)`` fires only when that attempt ends,
  i.e. after the retry delay (seconds), not at once. Failing fast would need
  our own "last attempt failed" state on top, mirroring its private one;
* a connection refused by ``prepareConnection`` (wrong password, not a
  master, no PING answer) is not closed by ClientService, and closing it
  ourselves makes its protocol proxy report ``_clientDisconnected`` in the
  Waiting state: ``automat.NoTransition``, logged as a critical error. So
  either a socket leaks per refused attempt, or every refusal logs a
  traceback;
* after txredisapi's reply timeout aborts a connection, ClientService keeps
  handing that dying protocol out until ``connectionLost`` arrives (a
  reactor turn later), where we want the next call on a new connection;
* it connects eagerly and keeps retrying in the background, sentinels
  included, where ours connect only when a call needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet import defer, error
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.python.failure import Failure

from mpush.cluster.redis_cluster import Address
from mpush.cluster.redis_protocol import (
    RedisAuthError,
    RedisUnavailable,
    ReplyProtocol,
    ReplyProtocolFactory,
    encode_commands,
    fmt_address,
    is_auth_error,
)

__all__ = [
    "RedisAuthError",
    "RedisConnection",
    "RedisUnavailable",
    "Resolver",
    "StateListener",
    "encode_commands",
    "fmt_address",
]


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
        self._factory = ReplyProtocolFactory(self)
        self.up: bool | None = None  # None: not tried yet
        self.error: str | None = None
        self.connects = 0  # successful connections made, for tests and metrics
        self._proto: ReplyProtocol | None = None
        self._connecting: Deferred[ReplyProtocol] | None = None
        self._waiters: list[Deferred[ReplyProtocol]] = []
        self._failures = 0
        self._retry_at = 0.0
        self._hold_error: RedisUnavailable | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisConnection {self.name} {fmt_address(self.address)} up={self.up}>"

    @property
    def connected(self) -> bool:
        return self._proto is not None and bool(self._proto.connected)

    def _who(self) -> str:
        if self.address is not None and fmt_address(self.address) not in self.name:
            return f"{self.name} at {fmt_address(self.address)}"
        return self.name

    # -- state

    def _set_state(self, up: bool, error_text: str | None) -> None:
        if up == self.up and (up or error_text == self.error):
            return
        self.up, self.error = up, error_text
        if self._on_state is not None:
            self._on_state(self, up, error_text)

    # -- getting a connection

    def _get_protocol(self) -> Deferred[ReplyProtocol]:
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
        waiter: Deferred[ReplyProtocol] = Deferred(self._cancel_waiter)
        self._waiters.append(waiter)
        if self._connecting is None:
            self._start_connecting()
        return waiter

    def _cancel_waiter(self, d: Deferred[ReplyProtocol]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)

    def _start_connecting(self) -> None:
        d = ensureDeferred(self._connect())
        # Resolution + TCP + handshake all within connect_timeout.
        d.addTimeout(self.connect_timeout, self.reactor)
        self._connecting = d
        d.addBoth(self._connect_done)

    async def _connect(self) -> ReplyProtocol:
        self.address = await self._resolve()
        host, port = self.address
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        try:
            proto: ReplyProtocol = await endpoint.connect(self._factory)
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

    async def _handshake(self, proto: ReplyProtocol) -> None:
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

    def _connect_done(self, result: ReplyProtocol | Failure) -> None:
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

    def protocol_lost(self, proto: ReplyProtocol) -> None:
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

    def pipeline(self, commands: Sequence[Sequence[str | bytes | int]]) -> Deferred[list[Any]]:
        """Send ``commands`` in one write; fires with their replies in order,
        an error reply as its ``ResponseError`` (see ``ReplyProtocol.replies``)."""
        if not commands:
            return succeed([])
        payload = encode_commands(commands)
        d = self._get_protocol()
        d.addCallback(lambda proto: proto.replies(payload, len(commands)))
        d.addCallback(self._refuse_auth_errors)
        d.addCallbacks(self._replied, self._failed, errbackArgs=(str(commands[0][0]),))
        return d

    @staticmethod
    def _refuse_auth_errors(replies: list[Any]) -> list[Any]:
        # A password problem is the connection's, not a command's.
        for reply in replies:
            if is_auth_error(reply):
                raise reply
        return replies

    @staticmethod
    def _send(proto: ReplyProtocol, args: tuple[Any, ...], asking: bool) -> Deferred[Any]:
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
            if not is_auth_error(f.value):
                self._set_state(True, None)  # an error reply is still an answer
                return f
            # The password was changed or required after we connected.
            exc: RedisUnavailable = RedisAuthError(f"{self._who()}: {f.value}")
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
