"""The wire side of a Redis connection: txredisapi's protocol, pipelined replies, errors.

:class:`ReplyProtocol` is txredisapi's ``RedisProtocol`` (RESP parsing,
reply timeouts) that tells its owner (:class:`~mpush.cluster.redis_connection.
RedisConnection`) when it is gone and writes a batch of commands at once
(:meth:`ReplyProtocol.replies`). The connection handling is the owner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from mpush.cluster.redis_cluster import Address

__all__ = [
    "ProtocolOwner",
    "RedisAuthError",
    "RedisUnavailable",
    "ReplyProtocol",
    "ReplyProtocolFactory",
    "encode_commands",
    "fmt_address",
    "is_auth_error",
]


class ProtocolOwner(Protocol):
    """What a :class:`ReplyProtocol` needs of the connection that owns it."""

    reply_timeout: float
    reactor: Any

    def protocol_lost(self, proto: ReplyProtocol) -> None: ...


class RedisUnavailable(txredisapi.ConnectionError):
    """Redis could not be reached, refused us, or did not answer in time."""


class RedisAuthError(RedisUnavailable):
    """Wrong or missing password (or the server refused AUTH)."""


def fmt_address(address: Address | None) -> str:
    """``host:port``, or "?" when not known yet."""
    return f"{address[0]}:{address[1]}" if address else "?"


def encode_commands(commands: Iterable[Sequence[str | bytes | int]]) -> bytes:
    """RESP arrays of bulk strings, one per command, in one buffer."""
    out = bytearray()
    for command in commands:
        out += b"*%d\r\n" % len(command)
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
            out += b"$%d\r\n%s\r\n" % (len(data), data)
    return bytes(out)


def is_auth_error(reply: object) -> bool:
    return isinstance(reply, txredisapi.ResponseError) and str(reply).startswith(
        ("NOAUTH", "WRONGPASS"))


class ReplyProtocol(txredisapi.RedisProtocol):
    """txredisapi's protocol, telling its owner when it is gone.

    AUTH is done by the owner (not by txredisapi's connectionMade, which
    would stop the factory for good on a wrong password).
    """

    def __init__(self, owner: ProtocolOwner) -> None:
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
            self.owner.protocol_lost(self)

    def replies(self, payload: bytes, count: int) -> Deferred[list[Any]]:
        """Write ``count`` encoded commands at once; fires with their ``count``
        replies in order, an error reply as its ``ResponseError`` (a value, not
        a failure). The connection failing fails it.

        Cheaper than ``count`` calls of ``execute_command``: one write, one
        Deferred per reply and one reply timer for all, where each call
        builds its command, two Deferreds and a timer of its own.
        """
        # Cancelled, it stops its timer; the replies still due are dropped.
        done: Deferred[list[Any]] = Deferred(lambda _: finish())
        replies: list[Any] = [None] * count
        left = [count]

        def store(reply: Any, i: int) -> None:
            if done.called:
                return
            if isinstance(reply, txredisapi.ConnectionError):  # lost, or timed out
                finish()
                done.errback(reply)
                return
            replies[i] = reply
            left[0] -= 1
            if not left[0]:
                finish()
                done.callback(replies)

        def timed_out() -> None:
            done.errback(txredisapi.TimeoutError(f"no reply within {self.replyTimeout:g}s"))
            # As txredisapi does: the replies still due would land on the
            # commands written next.
            self.transport.abortConnection()

        timer = self.callLater(self.replyTimeout, timed_out) if self.replyTimeout else None

        def finish() -> None:
            if timer is not None and timer.active():
                timer.cancel()

        self.transport.write(payload)
        get = self.replyQueue.get
        for i in range(count):
            get().addCallback(store, i)
        return done


class ReplyProtocolFactory(Factory):
    noisy = False

    def __init__(self, owner: ProtocolOwner) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> ReplyProtocol:
        proto = ReplyProtocol(self.owner)
        proto.factory = self
        return proto
