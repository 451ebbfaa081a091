"""Requests awaiting a gateway's answer: sessionIds, timers, and how each ends.

Shared by both transports: a TCP connection
(:class:`~mpush.cluster.gateway_connection.GatewayProtocol`, one table per
connection) and the UDP socket (:mod:`mpush.cluster.gateway_udp`, one table
for every gateway). :class:`PendingRequests` gives each request a sessionId,
arms its timer, matches an OK/ERROR to it and ends it exactly once with a
:class:`GatewayReply`, whichever comes first: the answer, the timer, the
caller's cancel, or the transport failing everything it holds.

sessionIds: a per-table counter 1..2**31-1 that wraps to 1, skipping ids
still pending. 0 and negative ids are never used, so a stray reply with
sessionId 0 can never match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.wire import CMD_GATEWAY_PUSH, INT32_MAX, ErrorMessage, OkMessage

__all__ = ["GatewayReply", "Pending", "PendingRequests", "answer_reply", "check_timeout"]


@dataclass(frozen=True)
class GatewayReply:
    """How one request to one gateway server ended."""

    outcome: GatewayOutcome
    gateway: str  # "host:port"
    code: int | None = None  # ERROR code; None unless outcome ERROR from an ERROR for cmd 16
    message: OkMessage | ErrorMessage | None = None  # the decoded answer, if any
    detail: str | None = None  # why, for logs ("connection lost: ...", "cancelled", ...)
    # Set on every TIMEOUT reply: DEADLINE (our timer, or the caller gave up)
    # or SHUTDOWN (expired by the pool as the daemon stops); None otherwise.
    cause: TimeoutCause | None = None


def check_timeout(timeout: float) -> float:
    """``timeout`` if it is a positive, finite number of seconds; ValueError otherwise."""
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return timeout


def answer_reply(address: str, msg: OkMessage | ErrorMessage) -> GatewayReply:
    """The reply an OK/ERROR from ``address`` gives the request it answers."""
    if msg.cmd != CMD_GATEWAY_PUSH:
        return GatewayReply(GatewayOutcome.ERROR, address, message=msg,
                            detail=f"answer is for cmd {msg.cmd}, not {CMD_GATEWAY_PUSH}")
    if isinstance(msg, OkMessage):
        return GatewayReply(GatewayOutcome.OK, address, message=msg)
    return GatewayReply(GatewayOutcome.ERROR, address, code=msg.code, message=msg,
                        detail=msg.reason)


class Pending:
    """One request awaiting its answer; ``address`` is the gateway its reply names.

    ``peer``: who may answer it, for a transport that cannot tell by the
    stream (UDP); None on a TCP connection. ``owner``: what the transport
    counts it against (UDP: its gateway), for ``on_finished``.
    """

    __slots__ = ("address", "deferred", "done", "owner", "peer", "session_id", "timer")

    def __init__(self, session_id: int, address: str,
                 on_cancel: Callable[[Pending], None], peer: object = None,
                 owner: object = None) -> None:
        self.session_id = session_id
        self.address = address
        self.peer = peer
        self.owner = owner
        self.deferred: Deferred[GatewayReply] = Deferred(lambda _d: on_cancel(self))
        self.timer: IDelayedCall | None = None
        self.done = False


class PendingRequests:
    """The requests one transport awaits answers for, by sessionId.

    ``on_expired(entry)`` runs after a request ended by its own timer (the
    TCP connection counts those to notice a frozen server);
    ``on_finished(entry)`` as any request ends, before its Deferred fires
    (cheaper than a callback on every Deferred).
    """

    def __init__(self, clock: IReactorTime,
                 on_expired: Callable[[Pending], object] | None = None,
                 on_finished: Callable[[Pending], object] | None = None) -> None:
        self._clock = clock
        self._on_expired = on_expired
        self._on_finished = on_finished
        self._entries: dict[int, Pending] = {}
        self._next_session = 1

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._entries.values()))

    def get(self, session_id: int) -> Pending | None:
        return self._entries.get(session_id)

    def allocate(self) -> int:
        """A sessionId not in use; reserved by the next :meth:`add`."""
        # Terminates: the callers bound the table far below 2**31 entries.
        while True:
            sid = self._next_session
            self._next_session = sid + 1 if sid < INT32_MAX else 1
            if sid not in self._entries:
                return sid

    def add(self, session_id: int, address: str, timeout: float,
            peer: object = None, owner: object = None) -> Pending:
        """Await the answer to ``session_id`` for at most ``timeout`` seconds."""
        entry = Pending(session_id, address, self._cancelled, peer, owner)
        self._entries[session_id] = entry
        entry.timer = self._clock.callLater(timeout, self._expire, entry, timeout)
        return entry

    def finish(self, entry: Pending, reply: GatewayReply) -> None:
        """The single exit of every request: the first end wins, the others find it done."""
        if entry.done:
            return
        entry.done = True
        if self._entries.get(entry.session_id) is entry:
            del self._entries[entry.session_id]
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        if self._on_finished is not None:
            self._on_finished(entry)
        entry.deferred.callback(reply)

    def answer(self, entry: Pending, msg: OkMessage | ErrorMessage, sender: str) -> None:
        """End ``entry`` with the answer ``msg`` that came from ``sender``."""
        self.finish(entry, answer_reply(sender, msg))

    def fail_all(self, outcome: GatewayOutcome, detail: str,
                 cause: TimeoutCause | None = None,
                 which: Callable[[Pending], bool] | None = None) -> int:
        """End every request (or those ``which`` selects) with ``outcome``; how many."""
        # Copy first: a callback may send a new request on the same table.
        entries = [e for e in self._entries.values() if which is None or which(e)]
        for entry in entries:
            self.finish(entry, GatewayReply(outcome, entry.address, detail=detail, cause=cause))
        return len(entries)

    def _cancelled(self, entry: Pending) -> None:
        # The caller's own deadline (addTimeout, or it simply gave up).
        self.finish(entry, GatewayReply(GatewayOutcome.TIMEOUT, entry.address,
                                        detail="cancelled", cause=TimeoutCause.DEADLINE))

    def _expire(self, entry: Pending, timeout: float) -> None:
        entry.timer = None  # it is firing: nothing to cancel
        self.finish(entry, GatewayReply(GatewayOutcome.TIMEOUT, entry.address,
                                        detail=f"no answer within {timeout:g} s",
                                        cause=TimeoutCause.DEADLINE))
        if self._on_expired is not None:
            self._on_expired(entry)

