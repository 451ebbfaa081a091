"""The gateway pool: connections to every gateway server of the ZooKeeper view.

:class:`GatewayPool` keeps ``connections_per_server`` connections
(``mp.net.gateway-client-num``) to every gateway server of the view, keyed
by ``host:port``, follows the view, and sends each request over one of them
(round-robin). One connection is a
:class:`~mpush.cluster.gateway_connection.GatewayProtocol`, kept up by its
own ``ClientService``; how a request ends is documented there.

Decisions (see also docs/mpush-peer.md):

* Receive limit: answers are small (an OK carries at most the userId and a
  few timestamps), but the userId is ours and may be long, so a reply body
  may be as large as ``max(max_packet_size, 64 KiB)``; beyond that the
  stream is treated as garbage. That bounds a connection's buffer.
* A server whose node leaves ZooKeeper keeps its connections for
  ``removal_grace`` seconds: the Java server re-creates its node on every
  ZooKeeper reconnect.
* Logging: one line per *server* state change (connected / disconnected /
  unreachable / removed), never one per connection attempt; ClientService's
  per-retry message is demoted to debug. A connection that closed itself as
  broken (``GatewayProtocol.gave_up``: a write queue stuck full, answers
  that stopped) is reconnected at once and said at warn level once a
  minute at most per server (a gateway that never reads would otherwise
  write a line per cycle), at debug otherwise; its reason becomes the
  server's ``last_error``.
* Descriptor budget (``max_connections``, the daemon's share of the
  open-file limit): a server gets the connections that still fit, maybe
  none; the shortfall is said once (and again only after it was made up),
  and servers short of connections get them as others close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from mpush.cluster.connecting import QuietClientService, ReportingEndpoint, tcp_endpoint
from mpush.cluster.gateway_connection import (
    GatewayProtocol,
    GatewayReply,
    check_timeout,
)
from mpush.cluster.gateway_options import (
    REPLY_LIMIT_FLOOR,
    GatewayPoolOptions,
    default_retry_policy,
)
from mpush.cluster.view_follower import ViewFollower
from mpush.interfaces import ClusterView
from mpush.outcomes import GatewayOutcome, TimeoutCause
from mpush.reactor import default_reactor

__all__ = [
    "REPLY_LIMIT_FLOOR",
    "GatewayPool",
    "GatewayPoolOptions",
    "GatewayProtocol",
    "GatewayReply",
    "default_retry_policy",
]

log = Logger(namespace="mpush.cluster.gateways")

#: Least time between two warnings of a server's connections closed as broken.
GAVE_UP_REMINDER: Final = 60.0


# ------------------------------------------------------ servers and their slots


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
        self.state = "connecting"  # -> "up" | "down" | "reconnecting" (we closed the last)
        self.closed = False
        self.rr = 0  # round-robin cursor over slots
        self.linger: IDelayedCall | None = None  # pending close after its node left
        self.last_error: str | None = None  # the last failed attempt or lost connection
        self.gave_up_logged: float | None = None  # when a broken connection was last warned of

    def failed(self, what: str, reason: Failure) -> None:
        self.last_error = f"{what}: {reason.getErrorMessage()}"

    def connected(self) -> list[GatewayProtocol]:
        return [s.protocol for s in self.slots if s.protocol is not None and s.protocol.ready]

    def status(self) -> dict[str, int | str | None]:
        protocols = [s.protocol for s in self.slots if s.protocol is not None]
        return {
            "connected": len(self.connected()),
            "configured": len(self.slots),
            "pending": sum(p.pending_count for p in protocols),
            "queued_bytes": sum(p.queued_bytes for p in protocols),
            # Connections whose last requests timed out with no frame since.
            "unanswering": sum(1 for p in protocols if p.unanswered > 0),
            "last_error": self.last_error,
        }

    def pick(self) -> GatewayProtocol | GatewayReply:
        """The next connected connection with room (round-robin), or the reply saying why none."""
        slots = self.slots
        connected = False
        congested: GatewayProtocol | None = None
        for i in range(len(slots)):
            slot = slots[(self.rr + i) % len(slots)]
            proto = slot.protocol
            if proto is None or not proto.ready:
                continue
            connected = True
            if proto.has_capacity:
                self.rr = (slot.index + 1) % len(slots)
                return proto
            if proto.congested:
                congested = proto
        if congested is not None:
            return congested.congested_reply()
        detail = "pending limit reached" if connected else "not connected"
        return GatewayReply(GatewayOutcome.UNAVAILABLE, self.address, detail=detail)


# ------------------------------------------------------------------- the pool


class GatewayPool(ViewFollower):
    """Connections to every gateway server in the view, and requests over them.

    It follows the view while running (:class:`~mpush.cluster.view_follower.ViewFollower`).
    """

    transport = "tcp"  # shown by /health and /metrics

    def __init__(self, view: ClusterView, *, options: GatewayPoolOptions | None = None,
                 reactor: Any = None) -> None:
        self.options = GatewayPoolOptions() if options is None else options
        self._limits = self.options.connection_limits()
        self._view = view
        self._reactor = default_reactor(reactor)
        self._retry_policy = self.options.retry_policy or default_retry_policy()
        self._servers: dict[str, _Server] = {}
        self._node_address: dict[str, str] = {}  # ZooKeeper node name -> address
        self._closing: set[Deferred[Any]] = set()  # stops of removed servers' services
        self._slots = 0  # connections configured, all servers
        self._short = False  # the budget left a server short (said once)

    # -- public ------------------------------------------------------------

    def addresses(self) -> list[str]:
        """Known gateway servers, ``host:port``, sorted."""
        return sorted(self._servers)

    def broadcast_addresses(self) -> list[str]:
        """Where a broadcast goes: every known gateway server."""
        return self.addresses()

    def is_connected(self, address: str) -> bool:
        server = self._servers.get(address)
        return server is not None and bool(server.connected())

    def status(self) -> dict[str, dict[str, int | str | None]]:
        """Per address: connected and configured connections, pending requests,
        connections not answering (their last requests timed out), and the
        last connection error (kept after a reconnect; None if none yet)."""
        return {address: server.status() for address, server in sorted(self._servers.items())}

    def request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> Deferred[GatewayReply]:
        """Send one request to the gateway server ``address`` (see the module docstring).

        Picks the next connected connection with room (round-robin). If none,
        ``UNAVAILABLE`` (or ``CONGESTED`` when a connection's write queue is
        full) at once, and ``build`` is not called.
        """
        check_timeout(timeout)
        server = self._servers.get(address) if self.running else None
        if server is None:
            return succeed(GatewayReply(GatewayOutcome.UNAVAILABLE, address,
                                        detail="unknown gateway server"))
        picked = server.pick()
        if isinstance(picked, GatewayReply):
            return succeed(picked)
        return picked.request(build, timeout)

    def expire_pending(self, cause: TimeoutCause) -> int:
        """End every pending request on every connection as ``TIMEOUT``; how many.

        ``cause`` (``TimeoutCause.SHUTDOWN``: the shutdown grace is over) is
        set on every reply. The push callers get their answers now (a push
        not answered in time is a timeout, not a lost connection), before
        the connections are closed.
        """
        count = 0
        for server in list(self._servers.values()):
            for slot in server.slots:
                if slot.protocol is not None:
                    count += slot.protocol.expire_all(cause)
        return count

    # -- lifecycle ---------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """Close every connection; fires once they are all closed."""
        if self.stop_following():
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
        if server.names:
            return  # another node with the same address keeps the connections
        grace = self.options.removal_grace
        if grace > 0:
            # The Java server deletes and re-creates its node on every
            # ZooKeeper reconnect: closing at once would fail what is in
            # flight for a blip. Close only if the node stays away.
            if server.linger is None:
                server.linger = self._reactor.callLater(grace, self._linger_over, server)
        else:
            self._close_server(server, "gateway server removed from ZooKeeper")

    def _linger_over(self, server: _Server) -> None:
        server.linger = None
        if not server.names and not server.closed:
            self._close_server(server, "gateway server removed from ZooKeeper")

    # -- connections ---------------------------------------------------------

    def _open_server(self, address: str, host: str, port: int) -> _Server:
        server = _Server(address, host, port)
        self._servers[address] = server
        count = self._add_slots(server)
        log.info("gateway server {gateway}: opening {n} connection(s)", gateway=address, n=count)
        return server

    def _add_slots(self, server: _Server) -> int:
        """Opens the connections ``server`` lacks, as far as the budget goes; how many."""
        wanted = self.options.connections_per_server - len(server.slots)
        budget = self.options.max_connections
        count = wanted if budget is None else max(min(wanted, budget - self._slots), 0)
        if count < wanted and not self._short:
            self._short = True
            log.warn("gateway connections: the budget of {budget} (from the open-file limit)"
                     " is used up; gateway server {gateway} gets {n} of {per_server}, and"
                     " servers short of connections get them as others close",
                     budget=budget, gateway=server.address, n=len(server.slots) + count,
                     per_server=self.options.connections_per_server)
        for _ in range(count):
            slot = _Slot(server, len(server.slots))
            server.slots.append(slot)
            endpoint = ReportingEndpoint(
                tcp_endpoint(self._reactor, server.host, server.port,
                             self.options.connect_timeout),
                server.address, lambda f, slot=slot: self._attempt_failed(slot, f))
            factory = _SlotFactory(lambda slot=slot: self._build_protocol(slot))
            slot.service = QuietClientService(
                endpoint, factory, retryPolicy=self._retry_policy, clock=self._reactor)
            slot.service.startService()
        self._slots += count
        return count

    def _fill_short_servers(self) -> None:
        """Gives the budget freed by a closed server to servers short of connections."""
        per_server = self.options.connections_per_server
        for server in list(self._servers.values()):
            if len(server.slots) < per_server:
                self._add_slots(server)
                if len(server.slots) < per_server:
                    return  # still short: the warning stays said
        self._short = False

    def _build_protocol(self, slot: _Slot) -> GatewayProtocol:
        return GatewayProtocol(
            slot.server.address,
            self._limits,
            clock=self._reactor,
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
        if server.state == "reconnecting":
            server.state = "up"  # said when it was closed: no line per cycle
        elif server.state != "up":
            log.info("gateway server {gateway}: connected{again}", gateway=server.address,
                     again=" again" if server.state == "down" else "")
            server.state = "up"

    def _lost(self, slot: _Slot, proto: GatewayProtocol, reason: Failure) -> None:
        if slot.protocol is proto:
            slot.protocol = None
        server = slot.server
        if proto.gave_up is not None:
            self._gave_up(slot, proto.gave_up)
            return
        self._slot_failed(slot, reason, "connection lost",
                          down=server.state == "up" and not server.connected(),
                          then="disconnected ({why}); reconnecting")

    def _gave_up(self, slot: _Slot, why: str) -> None:
        """A connection closed itself as broken; its ClientService reconnects it."""
        server = slot.server
        if server.closed:
            return
        server.last_error = f"connection closed: {why}"
        now = self._reactor.seconds()
        quiet = server.gave_up_logged is not None and now - server.gave_up_logged < GAVE_UP_REMINDER
        if not quiet:
            server.gave_up_logged = now
        log.emit(LogLevel.debug if quiet else LogLevel.warn,
                 "gateway server {gateway}: connection {i} closed: {why}; reconnecting"
                 " (said at most once a minute)", gateway=server.address, i=slot.index, why=why)
        if server.state == "up" and not server.connected():
            server.state = "reconnecting"

    def _attempt_failed(self, slot: _Slot, failure: Failure) -> None:
        self._slot_failed(slot, failure, "cannot connect",
                          down=slot.server.state in ("connecting", "reconnecting"),
                          then="unreachable ({why}); retrying")

    def _slot_failed(self, slot: _Slot, failure: Failure, what: str, *, down: bool,
                     then: str) -> None:
        """One connection failed (``what``); the server is down when ``down``: say so once."""
        server = slot.server
        if server.closed:
            return
        why = failure.getErrorMessage()
        # Every attempt at debug; the warning only when the server changes state.
        log.debug("gateway server {gateway}: connection {i}: {what}: {why}",
                  gateway=server.address, i=slot.index, what=what, why=why)
        server.failed(what, failure)
        if down:
            server.state = "down"
            log.warn("gateway server {gateway}: " + then, gateway=server.address, why=why)

    def _close_server(self, server: _Server, why: str) -> None:
        if server.linger is not None:
            server.linger.cancel()
            server.linger = None
        server.closed = True
        if self._servers.get(server.address) is server:
            del self._servers[server.address]
        log.info("gateway server {gateway}: closing its connections ({why})",
                 gateway=server.address, why=why)
        self._slots -= len(server.slots)
        for slot in server.slots:
            if slot.service is not None:
                # Stop first (no reconnect), then abort: a graceful close could
                # wait forever on a peer that stopped reading.
                d = slot.service.stopService()
                self._closing.add(d)
                d.addBoth(lambda r, d=d: self._closing.discard(d) or r)
            if slot.protocol is not None:
                slot.protocol.close(why)
        if self._short and self.running:
            self._fill_short_servers()
