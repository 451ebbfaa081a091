"""One TCP connection to one gateway server, and how each request on it ends.

:class:`GatewayProtocol` frames requests, matches the OK/ERROR answers to
pending requests by sessionId and ends every request exactly once, with a
:class:`GatewayReply`. The pool (:mod:`mpush.cluster.gateways`) keeps such
connections to every gateway server.

Decisions (see also docs/mpush-peer.md):

* Outcomes (:class:`~mpush.outcomes.GatewayOutcome`): ``OK`` an OK answering
  cmd 16; ``ERROR`` an ERROR answering cmd 16 (``code`` is the server's
  ErrorCode, whatever its value: 1 offline, 2 client failure, 3 router
  change, 4, 100, 101 or unknown — the push layer maps them), *or* an
  OK/ERROR whose ``cmd`` is not 16 (then ``code`` is None: not an answer to
  a push, i.e. a failure); ``TIMEOUT`` our own timer (the server never
  answers a timeout itself), the caller cancelled, or the daemon is stopping
  (``cause`` tells which); ``UNAVAILABLE`` nothing was sent (the address is
  unknown, no connection is up, or every connected connection has its
  pending limit of requests waiting); ``CONGESTED`` nothing was sent: the
  connection's write queue is full (:mod:`mpush.cluster.write_queue`: the
  gateway is not reading); ``LOST`` the connection closed (or was closed by
  us) while the request waited — the push may or may not have been
  delivered.
* The returned Deferred never errbacks and fires once. ``d.cancel()`` ends
  the request at once as ``TIMEOUT`` (detail "cancelled"): the caller
  stopped waiting, which is what a timeout is; the Deferred still never
  errbacks, so ``addTimeout`` and ``DeferredList`` users see a reply.
* sessionIds, timers and the single end of each request:
  :mod:`mpush.cluster.gateway_pending` (shared with the UDP transport).
* A frame that breaks the protocol (bad length, truncated body, a command
  other than OK/ERROR, crypto/compress/json flags) desynchronises the
  stream: that connection alone is aborted, its pending requests end
  ``LOST`` at once, and it is logged once with the peer's address. An
  answer whose sessionId matches nothing pending (a late answer after our
  timeout, the final OK of a taskId broadcast) is normal: debug log only.
* A connection TCP still holds up can be broken all the same: its write
  queue stays full for ``queue_stall_timeout`` seconds, or
  ``max_unanswered`` requests in a row end by our timer with no frame from
  the server between them. Then it closes itself (``gave_up`` says why; the
  pool logs it and reconnects): what it holds ends ``LOST``, and the bytes
  still queued are dropped rather than reach the devices late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.arguments import require_positive
from mpush.cluster.gateway_pending import (
    GatewayReply,
    Pending,
    PendingRequests,
    check_timeout,
)
from mpush.cluster.write_queue import WriteQueue
from mpush.config.keys import default
from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.wire import (
    Heartbeat,
    Packet,
    PacketDecoder,
    ProtocolError,
    decode_reply,
)

__all__ = [
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_MAX_UNANSWERED",
    "DEFAULT_QUEUE_STALL_TIMEOUT",
    "ConnectionLimits",
    "GatewayProtocol",
    "GatewayReply",
    "check_timeout",
]

log = Logger(namespace="mpush.cluster.gateway_connection")

DEFAULT_MAX_QUEUED_BYTES: Final[int] = default("mp.alloc.max-queued-bytes-per-gateway")
#: A queue that a reading gateway cannot empty in this long has a gateway
#: that is not reading (or far too slowly to be of use).
DEFAULT_QUEUE_STALL_TIMEOUT: Final = 10.0
#: A healthy gateway answers nearly every push (the Java server stays
#: silent only on rare internal failures): this many timeouts in a row,
#: without one frame, is a frozen server.
DEFAULT_MAX_UNANSWERED: Final = 20


@dataclass(frozen=True)
class ConnectionLimits:
    """What one gateway connection may hold; checked when built.

    ``max_reply_size`` bounds a reply body (and so the receive buffer);
    ``max_pending`` the requests waiting at once; ``max_queued_bytes`` the
    bytes written and not yet read by the server; ``queue_stall_timeout``
    and ``max_unanswered`` say when it is broken (see the module docstring).
    """

    max_reply_size: int
    max_pending: int
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    queue_stall_timeout: float = DEFAULT_QUEUE_STALL_TIMEOUT
    max_unanswered: int = DEFAULT_MAX_UNANSWERED

    def __post_init__(self) -> None:
        for name in ("max_pending", "max_unanswered"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        require_positive(max_reply_size=self.max_reply_size,
                         max_queued_bytes=self.max_queued_bytes,
                         queue_stall_timeout=self.queue_stall_timeout)


class GatewayProtocol(Protocol):
    """One connection to one gateway server: requests out, answers matched back.

    Usable alone (tests drive it with a ``StringTransport`` and a ``Clock``);
    the pool passes ``on_made``/``on_lost`` to learn about its state.
    ``limits`` says what it may hold (:class:`ConnectionLimits`).
    """

    def __init__(
        self,
        address: str,
        limits: ConnectionLimits,
        *,
        clock: IReactorTime,
        on_made: Callable[[GatewayProtocol], object] | None = None,
        on_lost: Callable[[GatewayProtocol, Failure], object] | None = None,
    ) -> None:
        self.address = address
        self.limits = limits
        self._queue = WriteQueue(limits.max_queued_bytes,
                                 stall_timeout=limits.queue_stall_timeout,
                                 clock=clock, on_stall=self._queue_stalled)
        self._clock = clock
        self._decoder = PacketDecoder(limits.max_reply_size)
        self._on_made = on_made
        self._on_lost = on_lost
        self._pending = PendingRequests(clock, on_expired=self._expired)
        self._usable = False  # made, not lost, stream in sync, not being closed
        self._broken = False  # a protocol error was seen: ignore further bytes
        self._lost = False
        # Requests ended by our timer since the last frame from the server:
        # above 0, the server is not answering (frozen, overloaded).
        self.unanswered = 0
        self.gave_up: str | None = None  # why we closed it as broken, if we did

    # -- state -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while requests can be written on this connection.

        (Not ``connected``: ``Protocol`` already uses that name.)
        """
        return self._usable

    @property
    def closed(self) -> bool:
        """True once the connection is gone (connectionLost ran)."""
        return self._lost

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def queued_bytes(self) -> int:
        """At least what the transport holds beyond its own 64 KiB buffer (0: not over it)."""
        return self._queue.queued

    @property
    def congested(self) -> bool:
        """Its write queue is full: requests are refused until the server reads."""
        return self._queue.full

    @property
    def has_capacity(self) -> bool:
        return (self._usable and len(self._pending) < self.limits.max_pending
                and not self._queue.full)

    # -- requests --------------------------------------------------------

    def request(self, build: Callable[[int], bytes], timeout: float) -> Deferred[GatewayReply]:
        """Send ``build(session_id)`` and wait at most ``timeout`` seconds for its answer.

        ``build`` is only called when the connection can take a request (its
        frame may still be refused as ``CONGESTED``: too large for the room
        left in the write queue); its exceptions propagate from here, before
        anything is written.
        """
        check_timeout(timeout)
        if not self._usable:
            return succeed(self._reply(GatewayOutcome.UNAVAILABLE, detail="not connected"))
        if len(self._pending) >= self.limits.max_pending:
            return succeed(self._reply(GatewayOutcome.UNAVAILABLE,
                                       detail="pending limit reached"))
        if self._queue.full:
            return succeed(self.congested_reply())
        session_id = self._pending.allocate()
        data = build(session_id)
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"build() must return bytes, not {type(data).__name__}")
        if not self._queue.admits(len(data)):
            return succeed(self.congested_reply())
        entry = self._pending.add(session_id, self.address, timeout)
        assert self.transport is not None
        self.transport.write(bytes(data))
        self._queue.wrote(len(data))
        return entry.deferred

    def congested_reply(self) -> GatewayReply:
        """The ``CONGESTED`` reply of a request refused for the write queue's bound."""
        queue = self._queue
        return self._reply(GatewayOutcome.CONGESTED,
                           detail=f"write queue full ({queue.queued} bytes, limit {queue.limit}):"
                                  " the gateway is not reading")

    def _reply(self, outcome: GatewayOutcome, **kw: Any) -> GatewayReply:
        return GatewayReply(outcome, self.address, **kw)

    def _expired(self, _entry: Pending) -> None:
        self.unanswered += 1
        if self.unanswered >= self.limits.max_unanswered:
            self._give_up(f"{self.unanswered} requests in a row got no answer")

    def _queue_stalled(self) -> None:
        self._give_up(f"write queue full for {self._queue.stall_timeout:g} s:"
                      " the gateway is not reading")

    def _give_up(self, why: str) -> None:
        # Broken, though TCP says nothing: close; the pool reconnects.
        if not self._usable:
            return
        self.gave_up = why
        self.close(f"connection closed: {why}")

    def _fail_all(self, outcome: GatewayOutcome, detail: str,
                  cause: TimeoutCause | None = None) -> None:
        self._pending.fail_all(outcome, detail, cause)

    def expire_all(self, cause: TimeoutCause) -> int:
        """End every pending request now as ``TIMEOUT`` with ``cause``; how many.

        The connection stays up (a late answer matches nothing, as after our
        own timer). Used at shutdown, once the grace period is over.
        """
        return self._pending.fail_all(GatewayOutcome.TIMEOUT, cause.value, cause)

    def close(self, detail: str) -> None:
        """Abort the connection now; pending requests end ``LOST`` with ``detail``."""
        self._usable = False
        self._fail_all(GatewayOutcome.LOST, detail)
        if self.transport is not None and not self._lost:
            _abort(self.transport)

    # -- Protocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        # Requests are small and latency matters (the Java client does the same).
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
        self._queue.attach(self.transport)
        self._usable = True
        if self._on_made is not None:
            self._on_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self._broken or self._lost:
            return
        error: ProtocolError | None = None
        try:
            packets = self._decoder.feed(data)
        except ProtocolError as e:
            # The answers complete before the bad bytes still count: the
            # outcome must not depend on how TCP split the stream.
            error, packets = e, list(e.decoded)
        if packets:
            self.unanswered = 0  # it speaks again
        for packet in packets:
            if self._broken:
                return
            if isinstance(packet, Heartbeat):
                continue  # the Java server sends none here; harmless anyway
            self._answer(packet)
        if error is not None and not self._broken:
            self._protocol_error(str(error))

    def _answer(self, packet: Packet) -> None:
        try:
            msg = decode_reply(packet)
        except ProtocolError as e:
            self._protocol_error(f"sessionId {packet.session_id}: {e}")
            return
        entry = self._pending.get(packet.session_id)
        if entry is None:
            log.debug("gateway {gateway}: answer for sessionId {sid} matches no pending"
                      " request (late, or a taskId broadcast's final OK)",
                      gateway=self.address, sid=packet.session_id)
            return
        self._pending.answer(entry, msg, self.address)

    def _protocol_error(self, text: str) -> None:
        self._broken = True
        self._usable = False
        peer = _peer(self.transport)
        log.warn("gateway {gateway} ({peer}): protocol error, closing the connection: {error}",
                 gateway=self.address, peer=peer, error=text)
        self._fail_all(GatewayOutcome.LOST, f"protocol error: {text}")
        if self.transport is not None:
            _abort(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._usable = False
        self._lost = True
        self._queue.stop()
        self._fail_all(GatewayOutcome.LOST, f"connection lost: {reason.getErrorMessage()}")
        if self._on_lost is not None:
            self._on_lost(self, reason)


def _abort(transport: Any) -> None:
    # Abort, don't flush: the stream is out of sync or we are leaving, and
    # a peer that stopped reading would keep a graceful close waiting.
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


def _peer(transport: Any) -> str:
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"
