"""Connections to the cluster's gateway servers, and push requests over them.

:class:`GatewayProtocol` is one TCP connection to one gateway server: it
frames requests, matches the OK/ERROR answers to pending requests by
sessionId and ends every request exactly once. :class:`GatewayPool` keeps
``connections_per_server`` such connections (``mp.net.gateway-client-num``)
to every gateway server of the ZooKeeper view, keyed by ``host:port``, and
follows the view.

Decisions (see also docs/mpush-peer.md):

* Outcomes (:class:`GatewayReply`): ``"ok"`` an OK answering cmd 16;
  ``"error"`` an ERROR answering cmd 16 (``code`` is the server's ErrorCode,
  whatever its value: 1 offline, 2 client failure, 3 router change, 4, 100,
  101 or unknown — the push layer maps them), *or* an OK/ERROR whose ``cmd``
  is not 16 (then ``code`` is None: not an answer to a push, i.e. a
  failure); ``"timeout"`` our own timer (the server never answers a timeout
  itself) or the caller cancelled; ``"unavailable"`` nothing was sent (the
  address is unknown, no connection is up, or every connected connection
  has ``max_pending_per_connection`` requests waiting); ``"lost"`` the
  connection closed (or was closed by us) while the request waited — the
  push may or may not have been delivered.
* The returned Deferred never errbacks and fires once. ``d.cancel()`` ends
  the request at once as ``"timeout"`` (detail "cancelled"): the caller
  stopped waiting, which is what a timeout is; the Deferred still never
  errbacks, so ``addTimeout`` and ``DeferredList`` users see a reply.
* sessionIds: a per-connection counter 1..2**31-1 that wraps to 1, skipping
  ids still pending. 0 and negative ids are never used, so a stray reply
  with sessionId 0 can never match.
* Receive limit: answers are small (an OK carries at most the userId and a
  few timestamps), but the userId is ours and may be long, so a reply body
  may be as large as ``max(max_packet_size, 64 KiB)``; beyond that the
  stream is treated as garbage. That bounds a connection's buffer.
* A frame that breaks the protocol (bad length, truncated body, a command
  other than OK/ERROR, crypto/compress/json flags) desynchronises the
  stream: that connection alone is aborted, its pending requests end
  ``"lost"`` at once, and it is logged once with the peer's address. An
  answer whose sessionId matches nothing pending (a late answer after our
  timeout, the final OK of a taskId broadcast) is normal: debug log only.
* Logging: one line per *server* state change (connected / disconnected /
  unreachable / removed), never one per connection attempt; ClientService's
  per-retry message is demoted to debug.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from typing import Protocol as TypingProtocol

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from mpush.config.keys import default
from mpush.wire import (
    CMD_GATEWAY_PUSH,
    DEFAULT_MAX_PACKET_SIZE,
    INT32_MAX,
    ErrorMessage,
    Heartbeat,
    OkMessage,
    Packet,
    PacketDecoder,
    ProtocolError,
    decode_reply,
)

__all__ = [
    "ERROR",
    "LOST",
    "OK",
    "OUTCOMES",
    "REPLY_LIMIT_FLOOR",
    "TIMEOUT",
    "UNAVAILABLE",
    "GatewayPool",
    "GatewayProtocol",
    "GatewayReply",
    "default_retry_policy",
]

log = Logger(namespace="mpush.cluster.gateways")

OK: Final = "ok"
ERROR: Final = "error"
TIMEOUT: Final = "timeout"
UNAVAILABLE: Final = "unavailable"
LOST: Final = "lost"
OUTCOMES: Final = frozenset({OK, ERROR, TIMEOUT, UNAVAILABLE, LOST})

#: Smallest receive limit for a reply body (see the module docstring).
REPLY_LIMIT_FLOOR: Final = 64 * 1024
#: The config's defaults, for a pool built without a config.
DEFAULT_CONNECTIONS: Final[int] = default("mp.net.gateway-client-num")
DEFAULT_CONNECT_TIMEOUT: Final[float] = default("mp.alloc.gateway-connect-timeout")
DEFAULT_MAX_PENDING: Final[int] = default("mp.alloc.max-pending-per-gateway")
#: How long a gateway server's connections outlive its ZooKeeper node: the
#: Java server re-creates its node within milliseconds after a reconnect.
DEFAULT_REMOVAL_GRACE: Final = 2.0


@dataclass(frozen=True)
class GatewayReply:
    """How one request to one gateway server ended."""

    outcome: str  # "ok" | "error" | "timeout" | "unavailable" | "lost"
    gateway: str  # "host:port"
    code: int | None = None  # ERROR code; None unless outcome "error" from an ERROR for cmd 16
    message: OkMessage | ErrorMessage | None = None  # the decoded answer, if any
    detail: str | None = None  # why, for logs ("connection lost: ...", "cancelled", ...)


def default_retry_policy() -> Callable[[int], float]:
    """Reconnect delays 0.2, 0.4, ... up to 8 s, plus up to 0.5 s of jitter.

    Short at first (a restarted gateway is back within a second), capped low
    because pushes to that server fail while it is away; the jitter keeps
    many alloc instances from reconnecting in lockstep.
    """
    return backoffPolicy(
        initialDelay=0.1, maxDelay=8.0, factor=2.0, jitter=lambda: random.uniform(0.0, 0.5)
    )


# -------------------------------------------------------------- one connection


class _Pending:
    __slots__ = ("deferred", "done", "session_id", "timer")

    def __init__(self, session_id: int,
                 on_cancel: Callable[[_Pending], None]) -> None:
        self.session_id = session_id
        self.deferred: Deferred[GatewayReply] = Deferred(lambda _d: on_cancel(self))
        self.timer: IDelayedCall | None = None
        self.done = False


class GatewayProtocol(Protocol):
    """One connection to one gateway server: requests out, answers matched back.

    Usable alone (tests drive it with a ``StringTransport`` and a ``Clock``);
    the pool passes ``on_made``/``on_lost`` to learn about its state.
    """

    def __init__(
        self,
        address: str,
        *,
        clock: IReactorTime,
        max_reply_size: int = REPLY_LIMIT_FLOOR,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_made: Callable[[GatewayProtocol], object] | None = None,
        on_lost: Callable[[GatewayProtocol, Failure], object] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.address = address
        self.max_pending = max_pending
        self._clock = clock
        self._decoder = PacketDecoder(max_reply_size)
        self._on_made = on_made
        self._on_lost = on_lost
        self._pending: dict[int, _Pending] = {}
        self._next_session = 1
        self._usable = False  # made, not lost, stream in sync, not being closed
        self._broken = False  # a protocol error was seen: ignore further bytes
        self._lost = False
        # Requests ended by our timer since the last frame from the server:
        # above 0, the server is not answering (frozen, overloaded).
        self.unanswered = 0

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
    def has_capacity(self) -> bool:
        return self._usable and len(self._pending) < self.max_pending

    # -- requests --------------------------------------------------------

    def request(self, build: Callable[[int], bytes], timeout: float) -> Deferred[GatewayReply]:
        """Send ``build(session_id)`` and wait at most ``timeout`` seconds for its answer.

        ``build`` is only called when the request will be sent; its
        exceptions propagate from here, before anything is written.
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not self._usable:
            return succeed(self._reply(UNAVAILABLE, detail="not connected"))
        if len(self._pending) >= self.max_pending:
            return succeed(self._reply(UNAVAILABLE, detail="pending limit reached"))
        session_id = self._allocate_session()
        data = build(session_id)
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"build() must return bytes, not {type(data).__name__}")
        entry = _Pending(session_id, self._cancelled)
        self._pending[session_id] = entry
        entry.timer = self._clock.callLater(timeout, self._expire, entry, timeout)
        assert self.transport is not None
        self.transport.write(bytes(data))
        return entry.deferred

    def _allocate_session(self) -> int:
        # Terminates: fewer than max_pending (<< 2**31) ids are in use.
        while True:
            sid = self._next_session
            self._next_session = sid + 1 if sid < INT32_MAX else 1
            if sid not in self._pending:
                return sid

    def _reply(self, outcome: str, **kw: Any) -> GatewayReply:
        return GatewayReply(outcome, self.address, **kw)

    def _cancelled(self, entry: _Pending) -> None:
        self._finish(entry, self._reply(TIMEOUT, detail="cancelled"))

    def _expire(self, entry: _Pending, timeout: float) -> None:
        entry.timer = None  # it is firing: nothing to cancel
        self.unanswered += 1
        self._finish(entry, self._reply(TIMEOUT, detail=f"no answer within {timeout:g} s"))

    def _finish(self, entry: _Pending, reply: GatewayReply) -> None:
        # The single exit of every request: whichever comes first (answer,
        # timer, loss, cancel) wins, the others find it done.
        if entry.done:
            return
        entry.done = True
        if self._pending.get(entry.session_id) is entry:
            del self._pending[entry.session_id]
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        entry.deferred.callback(reply)

    def _fail_all(self, outcome: str, detail: str) -> None:
        # Swap first: a callback may send a new request on this object.
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            self._finish(entry, self._reply(outcome, detail=detail))

    def expire_all(self, detail: str) -> int:
        """End every pending request now as ``"timeout"`` with ``detail``; how many.

        The connection stays up (a late answer matches nothing, as after our
        own timer). Used at shutdown, once the grace period is over.
        """
        count = len(self._pending)
        self._fail_all(TIMEOUT, detail)
        return count

    def close(self, detail: str) -> None:
        """Abort the connection now; pending requests end "lost" with ``detail``."""
        self._usable = False
        self._fail_all(LOST, detail)
        if self.transport is not None and not self._lost:
            _abort(self.transport)

    # -- Protocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        # Requests are small and latency matters (the Java client does the same).
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
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
        if msg.cmd != CMD_GATEWAY_PUSH:
            reply = self._reply(ERROR, message=msg,
                                detail=f"answer is for cmd {msg.cmd}, not {CMD_GATEWAY_PUSH}")
        elif isinstance(msg, OkMessage):
            reply = self._reply(OK, message=msg)
        else:
            reply = self._reply(ERROR, code=msg.code, message=msg, detail=msg.reason)
        self._finish(entry, reply)

    def _protocol_error(self, text: str) -> None:
        self._broken = True
        self._usable = False
        peer = _peer(self.transport)
        log.warn("gateway {gateway} ({peer}): protocol error, closing the connection: {error}",
                 gateway=self.address, peer=peer, error=text)
        self._fail_all(LOST, f"protocol error: {text}")
        if self.transport is not None:
            _abort(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._usable = False
        self._lost = True
        self._fail_all(LOST, f"connection lost: {reason.getErrorMessage()}")
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


# ------------------------------------------------------------------- the pool


class GatewayView(TypingProtocol):
    """What the pool needs of :class:`mpush.cluster.zookeeper.ZkWatcher`."""

    def gateway_servers(self) -> dict[str, Any]: ...

    def add_listener(self, cb: Callable[[str, str, Any], object]) -> None: ...


def _relay_demoted(event: dict[str, Any]) -> None:
    # ClientService logs "Scheduling retry N ..." at info on every attempt;
    # the pool logs each server's state change once instead.
    if event.get("log_level") == LogLevel.info:
        event = dict(event, log_level=LogLevel.debug)
    globalLogPublisher(event)


class _QuietClientService(ClientService):
    _log = Logger(observer=_relay_demoted)


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Passes connection-attempt failures to the pool, for its state log."""

    def __init__(self, inner: IStreamClientEndpoint, address: str,
                 on_failure: Callable[[Failure], object]) -> None:
        self._inner = inner
        self._address = address
        self._on_failure = on_failure

    def __repr__(self) -> str:
        # Shown in ClientService's (debug) retry messages.
        return f"<gateway endpoint {self._address}>"

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        d = self._inner.connect(factory)

        def failed(f: Failure) -> Failure:
            self._on_failure(f)
            return f

        return d.addErrback(failed)


class _SlotFactory(Factory):
    noisy = False  # no "Starting factory" line per connection attempt

    def __init__(self, build: Callable[[], GatewayProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> GatewayProtocol:
        return self._build()


class _Slot:
    """One configured connection: its ClientService and current protocol."""

    def __init__(self, server: _Server, index: int) -> None:
        self.server = server
        self.index = index
        self.protocol: GatewayProtocol | None = None
        self.service: ClientService | None = None


class _Server:
    def __init__(self, address: str, host: str, port: int) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.names: set[str] = set()  # ZooKeeper nodes with this address
        self.slots: list[_Slot] = []
        self.state = "connecting"  # -> "up" | "down"
        self.closed = False
        self.rr = 0  # round-robin cursor over slots
        self.linger: IDelayedCall | None = None  # pending close after its node left

    def connected(self) -> list[GatewayProtocol]:
        return [s.protocol for s in self.slots if s.protocol is not None and s.protocol.ready]


class GatewayPool(Service):
    """Connections to every gateway server in the view, and requests over them."""

    def __init__(
        self,
        view: GatewayView,
        *,
        connections_per_server: int = DEFAULT_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_pending_per_connection: int = DEFAULT_MAX_PENDING,
        reactor: Any = None,
        retry_policy: Callable[[int], float] | None = None,
        removal_grace: float = DEFAULT_REMOVAL_GRACE,
    ) -> None:
        if connections_per_server < 1:
            raise ValueError(f"connections_per_server must be >= 1, not {connections_per_server}")
        if max_pending_per_connection < 1:
            raise ValueError("max_pending_per_connection must be >= 1,"
                             f" not {max_pending_per_connection}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, not {connect_timeout}")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._view = view
        self._reactor = reactor
        self.connections_per_server = connections_per_server
        self.connect_timeout = connect_timeout
        self.max_pending_per_connection = max_pending_per_connection
        self.max_reply_size = max(max_packet_size, REPLY_LIMIT_FLOOR)
        self._retry_policy = retry_policy or default_retry_policy()
        if not removal_grace >= 0:
            raise ValueError(f"removal_grace must be >= 0, not {removal_grace}")
        self.removal_grace = removal_grace
        self._servers: dict[str, _Server] = {}
        self._node_address: dict[str, str] = {}  # ZooKeeper node name -> address
        self._closing: set[Deferred[Any]] = set()  # stops of removed servers' services
        self._listening = False

    # -- public ------------------------------------------------------------

    def addresses(self) -> list[str]:
        """Known gateway servers, ``host:port``, sorted."""
        return sorted(self._servers)

    def is_connected(self, address: str) -> bool:
        server = self._servers.get(address)
        return server is not None and bool(server.connected())

    def status(self) -> dict[str, dict[str, int]]:
        """Per address: connected and configured connections, pending requests,
        connections not answering (their last requests timed out)."""
        out: dict[str, dict[str, int]] = {}
        for address, server in sorted(self._servers.items()):
            out[address] = {
                "connected": len(server.connected()),
                "configured": len(server.slots),
                "pending": sum(s.protocol.pending_count for s in server.slots
                               if s.protocol is not None),
                # Connections whose last requests timed out with no frame since.
                "unanswering": sum(1 for s in server.slots
                                   if s.protocol is not None and s.protocol.unanswered > 0),
            }
        return out

    def request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> Deferred[GatewayReply]:
        """Send one request to the gateway server ``address`` (see the module docstring).

        Picks the next connected connection with room (round-robin). If none,
        ``"unavailable"`` at once and ``build`` is not called.
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        server = self._servers.get(address) if self.running else None
        if server is None:
            return succeed(GatewayReply(UNAVAILABLE, address, detail="unknown gateway server"))
        slots = server.slots
        connected = False
        for i in range(len(slots)):
            slot = slots[(server.rr + i) % len(slots)]
            proto = slot.protocol
            if proto is None or not proto.ready:
                continue
            connected = True
            if proto.has_capacity:
                server.rr = (slot.index + 1) % len(slots)
                return proto.request(build, timeout)
        detail = "pending limit reached" if connected else "not connected"
        return succeed(GatewayReply(UNAVAILABLE, address, detail=detail))

    def expire_pending(self, detail: str) -> int:
        """End every pending request on every connection as ``"timeout"``; how many.

        The shutdown grace is over: the push callers get their answers now
        (a push not answered in time is a timeout, not a lost connection),
        before the connections are closed.
        """
        count = 0
        for server in list(self._servers.values()):
            for slot in server.slots:
                if slot.protocol is not None:
                    count += slot.protocol.expire_all(detail)
        return count

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        if self.running:
            return
        super().startService()
        if not self._listening:
            self._view.add_listener(self._on_view)
            self._listening = True
        self._reconcile()

    def stopService(self) -> Deferred[None]:
        """Close every connection; fires once they are all closed."""
        if self.running:
            super().stopService()
            for server in list(self._servers.values()):
                self._close_server(server, "gateway pool stopped")
            self._node_address.clear()
        waits = list(self._closing)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # -- following the view --------------------------------------------------

    def _on_view(self, kind: str, event: str, node: Any) -> None:
        if kind != "gs" or not self.running:
            return
        if event in ("added", "updated") and node is not None:
            self._set_node(node)
        elif event == "removed" and node is not None:
            self._drop_node(node.name)
        elif event == "resync":
            self._reconcile()

    def _reconcile(self) -> None:
        nodes = self._view.gateway_servers()
        for name in list(self._node_address):
            if name not in nodes:
                self._drop_node(name)
        for node in nodes.values():
            self._set_node(node)

    def _set_node(self, node: Any) -> None:
        address = node.address
        old = self._node_address.get(node.name)
        if old == address:
            return  # attrs-only change: the connections stay
        if old is not None:
            self._drop_node(node.name)
        self._node_address[node.name] = address
        server = self._servers.get(address)
        if server is None:
            server = self._open_server(address, node.host, node.port)
        elif server.linger is not None:
            # Its node came back (a Java server re-registers after every
            # ZooKeeper reconnect): keep the connections and what is pending.
            server.linger.cancel()
            server.linger = None
            log.info("gateway server {gateway}: back in ZooKeeper; connections kept",
                     gateway=address)
        server.names.add(node.name)

    def _drop_node(self, name: str) -> None:
        address = self._node_address.pop(name, None)
        server = self._servers.get(address) if address is not None else None
        if server is None:
            return
        server.names.discard(name)
        if not server.names:
            # (Another node with the same address keeps the connections.)
            if self.removal_grace > 0:
                # The Java server deletes and re-creates its node on every
                # ZooKeeper reconnect: closing at once would fail what is in
                # flight for a blip. Close only if the node stays away.
                if server.linger is None:
                    server.linger = self._reactor.callLater(
                        self.removal_grace, self._linger_over, server)
            else:
                self._close_server(server, "gateway server removed from ZooKeeper")

    def _linger_over(self, server: _Server) -> None:
        server.linger = None
        if not server.names and not server.closed:
            self._close_server(server, "gateway server removed from ZooKeeper")

    # -- connections ---------------------------------------------------------

    def _endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        # IP literals (what mpush registers) skip the resolver entirely.
        if isIPAddress(host):
            return TCP4ClientEndpoint(self._reactor, host, port, timeout=self.connect_timeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(self._reactor, host, port, timeout=self.connect_timeout)
        return HostnameEndpoint(self._reactor, host, port, timeout=self.connect_timeout)

    def _open_server(self, address: str, host: str, port: int) -> _Server:
        server = _Server(address, host, port)
        self._servers[address] = server
        log.info("gateway server {gateway}: opening {n} connection(s)",
                 gateway=address, n=self.connections_per_server)
        for index in range(self.connections_per_server):
            slot = _Slot(server, index)
            server.slots.append(slot)
            endpoint = _ReportingEndpoint(
                self._endpoint(host, port), address,
                lambda f, slot=slot: self._attempt_failed(slot, f))
            factory = _SlotFactory(lambda slot=slot: self._build_protocol(slot))
            slot.service = _QuietClientService(
                endpoint, factory, retryPolicy=self._retry_policy, clock=self._reactor)
            slot.service.startService()
        return server

    def _build_protocol(self, slot: _Slot) -> GatewayProtocol:
        return GatewayProtocol(
            slot.server.address,
            clock=self._reactor,
            max_reply_size=self.max_reply_size,
            max_pending=self.max_pending_per_connection,
            on_made=lambda p: self._made(slot, p),
            on_lost=lambda p, reason: self._lost(slot, p, reason),
        )

    def _made(self, slot: _Slot, proto: GatewayProtocol) -> None:
        server = slot.server
        if server.closed:
            proto.close("gateway server removed")
            return
        slot.protocol = proto
        log.debug("gateway server {gateway}: connection {i} up", gateway=server.address,
                  i=slot.index)
        if server.state != "up":
            log.info("gateway server {gateway}: connected{again}", gateway=server.address,
                     again=" again" if server.state == "down" else "")
            server.state = "up"

    def _lost(self, slot: _Slot, proto: GatewayProtocol, reason: Failure) -> None:
        if slot.protocol is proto:
            slot.protocol = None
        server = slot.server
        if server.closed:
            return
        log.debug("gateway server {gateway}: connection {i} lost: {why}",
                  gateway=server.address, i=slot.index, why=reason.getErrorMessage())
        if server.state == "up" and not server.connected():
            server.state = "down"
            log.warn("gateway server {gateway}: disconnected ({why}); reconnecting",
                     gateway=server.address, why=reason.getErrorMessage())

    def _attempt_failed(self, slot: _Slot, failure: Failure) -> None:
        server = slot.server
        if server.closed:
            return
        log.debug("gateway server {gateway}: connection {i} attempt failed: {why}",
                  gateway=server.address, i=slot.index, why=failure.getErrorMessage())
        if server.state == "connecting":
            server.state = "down"
            log.warn("gateway server {gateway}: unreachable ({why}); retrying",
                     gateway=server.address, why=failure.getErrorMessage())

    def _close_server(self, server: _Server, why: str) -> None:
        if server.linger is not None:
            server.linger.cancel()
            server.linger = None
        server.closed = True
        if self._servers.get(server.address) is server:
            del self._servers[server.address]
        log.info("gateway server {gateway}: closing its connections ({why})",
                 gateway=server.address, why=why)
        for slot in server.slots:
            if slot.service is not None:
                # Stop first (no reconnect), then abort: a graceful close could
                # wait forever on a peer that stopped reading.
                d = slot.service.stopService()
                self._closing.add(d)
                d.addBoth(lambda r, d=d: self._closing.discard(d) or r)
            if slot.protocol is not None:
                slot.protocol.close(why)
