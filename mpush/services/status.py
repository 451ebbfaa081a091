"""One reading of what the daemon depends on, for ``/health`` and ``/metrics``.

:class:`Status` holds the live objects (ZooKeeper watcher, Redis service,
gateway pool, refresher, allocation policy, drain); :meth:`Status.snapshot`
reads each once into frozen dataclasses. ``/health``
(:mod:`mpush.web.health`) and the metrics collector
(:mod:`mpush.daemon.metrics`) both render from that snapshot, so they cannot
disagree on what "connected" or "stale" means, and the gateways are
aggregated in one place.

``/cluster`` (:mod:`mpush.web.cluster`) renders the same snapshot in full:
a row per allocated connection server and WebSocket server (:class:`ServerRow`,
from the policy's figures and the ZooKeeper view) and per gateway server.

The WebSocket servers (``GET /ws``) have a policy and a refresher of their
own, read like those of ``GET /`` into the same two dataclasses.

Reading is in-memory only (no ZooKeeper, Redis or gateway call): a load
balancer may poll ``/health`` as often as it likes. Every part is optional
(a section is ``None`` without its object): the collector is also used on
parts of a daemon, in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from twisted.internet.interfaces import IReactorTime

from mpush.interfaces import (
    ClusterView,
    Draining,
    GatewayRequester,
    LoadReporter,
    Policy,
    RedisClient,
    RefreshReport,
    ServerNodeInfo,
    SharingReport,
)
from mpush.reactor import default_reactor

__all__ = [
    "AllocationStatus",
    "CompleteSnapshot",
    "DatagramStatus",
    "GatewayStatus",
    "GatewaysStatus",
    "RedisStatus",
    "RefreshStatus",
    "ServerRow",
    "SharingStatus",
    "Status",
    "StatusSnapshot",
    "ZooKeeperStatus",
]


# -- the snapshot -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZooKeeperStatus:
    state: str  # "connected", "suspended", "lost", "stopped", ...
    session_id: int | None
    initialized: bool  # the first full view is loaded
    connection_servers: int  # nodes in the view
    gateway_servers: int
    last_error: str | None = None  # why it cannot be used now (unreachable, NoAuth, ...)
    rejected_connection_servers: int = 0  # nodes left out of the view as unusable
    rejected_gateway_servers: int = 0
    websocket_servers: int = 0
    rejected_websocket_servers: int = 0


@dataclass(frozen=True, slots=True)
class RedisStatus:
    mode: str
    reachable: bool  # the last probe or call worked
    last_error: str | None  # the password scrubbed


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    address: str
    connected: int  # connected connections
    configured: int  # connections kept when all is well
    pending: int  # requests awaiting an answer
    unanswering: int  # > 0: its last requests timed out (a frozen server)
    last_error: str | None = None  # the last failed attempt or lost connection


@dataclass(frozen=True, slots=True)
class DatagramStatus:
    """The UDP socket's figures (``mp.net.gateway-server-net = udp``)."""

    sent: int
    received: int
    dropped: tuple[tuple[str, int], ...]  # received and ignored, by reason (sorted)
    refused: tuple[tuple[str, int], ...]  # requests not sent, by reason (sorted)

    @classmethod
    def of(cls, counts: Any) -> DatagramStatus:
        return cls(int(counts.sent), int(counts.received),
                   tuple(sorted(counts.dropped.items())), tuple(sorted(counts.refused.items())))


@dataclass(frozen=True, slots=True)
class GatewaysStatus:
    servers: tuple[GatewayStatus, ...]  # in the pool's order
    known: int
    up: int  # with at least one connected connection
    partial: int  # up, but fewer connections than configured
    silent: int  # not answering
    connections: int  # connected, all servers
    configured_connections: int
    pending: int
    transport: str = "tcp"  # "tcp" | "udp"
    datagrams: DatagramStatus | None = None  # udp only

    @property
    def down(self) -> int:
        return self.known - self.up

    @classmethod
    def of(cls, status: Mapping[str, Mapping[str, int]], transport: str = "tcp",
           datagrams: DatagramStatus | None = None) -> GatewaysStatus:
        # Absent keys (fakes, or a pool without that figure) read 0 (None).
        servers = tuple(
            GatewayStatus(address, int(s.get("connected", 0)), int(s.get("configured", 0)),
                          int(s.get("pending", 0)), int(s.get("unanswering", 0)),
                          s.get("last_error"))
            for address, s in status.items())
        return cls(
            servers=servers,
            known=len(servers),
            up=sum(1 for s in servers if s.connected > 0),
            partial=sum(1 for s in servers if 0 < s.connected < s.configured),
            silent=sum(1 for s in servers if s.unanswering > 0),
            connections=sum(s.connected for s in servers),
            configured_connections=sum(s.configured for s in servers),
            pending=sum(s.pending for s in servers),
            transport=transport,
            datagrams=datagrams,
        )


class ServerRow(NamedTuple):
    """One connection (or websocket) server as allocated: the policy's figures
    (:class:`mpush.balance.ServerStatus`), its place in ``GET /``, its node.

    A named tuple rather than a frozen dataclass: as immutable, and several
    times cheaper to make, which counts at a row per server per snapshot.
    """

    position: int  # 1 = first in the current GET / (GET /ws) answer
    address: str  # "ip:port", as served
    ip: str  # the public IP: mp:oul:<ip> counts its users
    weight: float
    online: float  # its share of its IP's count at the last refresh
    handed: int  # handed out since the last applied count
    load: float  # (online + handed + shared) / weight: the order's key
    allocated: int  # handed out since it joined the list
    shared: int  # handed out by other alloc instances since the last refresh started
    nodes: tuple[str, ...]  # its ZooKeeper node names (two while a restart's old one lives)
    registered: str | None  # the node's own host:port (None: no node in the view)
    since: float | None  # reactor time its node entered the ZooKeeper view
    held_left: float | None = None  # s its mass-drop hold has left (None: not held)

    @classmethod
    def rows(cls, policy: LoadReporter, nodes: Mapping[str, ServerNodeInfo],
             held: Mapping[str, float] | None = None, now: float = 0.0,
             ) -> tuple[ServerRow, ...]:
        """The policy's servers in ``GET /`` order, with the view's nodes of each
        and the time left of those ``held`` (address -> when its hold ends)."""
        found = _nodes_by_address(nodes)
        missing: tuple[tuple[str, ...], str | None, float | None] = ((), None, None)
        left = {a: max(0.0, end - now) for a, end in held.items()} if held else {}
        # ServerStatus has the fields of a row from ``address`` to ``allocated``, in
        # order; tuple.__new__ skips the named tuple's argument handling (per row).
        make = tuple.__new__
        return tuple([make(cls, (i, *s, *found.get(s.address, missing), left.get(s.address)))
                      for i, s in enumerate(policy.describe(), 1)])


def _nodes_by_address(nodes: Mapping[str, ServerNodeInfo],
                      ) -> dict[str, tuple[tuple[str, ...], str | None, float | None]]:
    """Per served address (as the refresher serves a node: public host, port): the
    node names, the first one's own host:port, and the earliest time one was seen."""
    found: dict[str, tuple[tuple[str, ...], str | None, float | None]] = {}
    for name in sorted(nodes):
        node = nodes[name]
        address = f"{node.public_host}:{node.port}"
        known = found.get(address)
        if known is None:
            found[address] = ((name,), f"{node.host}:{node.port}", node.since)
        else:
            names, registered, since = known
            times = [t for t in (since, node.since) if t is not None]
            found[address] = ((*names, name), registered, min(times, default=None))
    return found


@dataclass(frozen=True, slots=True)
class AllocationStatus:
    """A policy: what ``GET /`` (or ``GET /ws``) hands out."""

    servers: int  # servers in the allocation list
    serving: bool  # there is a list to answer with (else 503)
    # Per server, in GET / order; empty for a policy that tells no loads.
    rows: tuple[ServerRow, ...] = ()


@dataclass(frozen=True, slots=True)
class RefreshStatus:
    """The refresher: how fresh the allocation list is."""

    stale: bool  # serving a list ZooKeeper no longer shows
    last_success_age: float | None  # seconds since the last good refresh, >= 0
    last_error: str | None  # the password scrubbed
    refreshes: int
    failures: int
    last_success: float | None = None  # reactor time of the last good refresh
    unreadable_keys: int = 0  # online count keys the last fetch could not read
    held: int = 0  # servers kept in the list after a mass drop
    holds_started: int = 0  # mass drops that held servers


@dataclass(frozen=True, slots=True)
class SharingStatus:
    """Handout counts shared with the other alloc instances through Redis."""

    interval: float  # s between exchanges
    last_ok_age: float | None  # seconds since the last exchange that worked, >= 0
    last_error: str | None  # None while it works
    exchanges: int
    failures: int


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything ``/health`` and ``/metrics`` show of the daemon's state."""

    draining: bool | None  # None: no drain to ask
    allocation: AllocationStatus | None
    refresh: RefreshStatus | None
    zookeeper: ZooKeeperStatus | None
    redis: RedisStatus | None
    gateways: GatewaysStatus | None
    # GET /ws: its policy and its refresher (None without them).
    websocket: AllocationStatus | None = None
    websocket_refresh: RefreshStatus | None = None
    sharing: SharingStatus | None = None  # None: sharing is off

    def complete(self, page: str) -> CompleteSnapshot:
        """Every part (but the drain) for a ``page`` that shows them all; ValueError
        naming the page if one is missing."""
        parts = (self.allocation, self.refresh, self.zookeeper, self.redis, self.gateways,
                 self.websocket, self.websocket_refresh)
        if any(part is None for part in parts):
            raise ValueError(f"{page} needs a snapshot of every part")
        return CompleteSnapshot(*parts)  # type: ignore[arg-type]


class CompleteSnapshot(NamedTuple):
    """A :class:`StatusSnapshot` with every part there (see ``StatusSnapshot.complete``)."""

    allocation: AllocationStatus
    refresh: RefreshStatus
    zookeeper: ZooKeeperStatus
    redis: RedisStatus
    gateways: GatewaysStatus
    websocket: AllocationStatus
    websocket_refresh: RefreshStatus


# -- the reader ---------------------------------------------------------------


@dataclass(eq=False)  # a holder of live objects: identity, not value
class Status:
    """Reads the daemon's live objects into a :class:`StatusSnapshot`.

    ``clock`` must be the reactor the refresher stamps ``last_success``
    with (the global reactor if None). The attributes may be set after
    construction: the drain is made last (it needs the site, which needs
    ``/health``, which needs this).
    """

    zk: ClusterView | None = None
    redis: RedisClient | None = None
    gateways: GatewayRequester | None = None
    refresher: RefreshReport | None = None
    policy: Policy | None = None
    # GET /ws's policy and refresher, kept apart from GET /'s.
    ws_policy: Policy | None = field(default=None, kw_only=True)
    ws_refresher: RefreshReport | None = field(default=None, kw_only=True)
    drain: Draining | None = field(default=None, kw_only=True)
    sharer: SharingReport | None = field(default=None, kw_only=True)
    clock: IReactorTime | None = field(default=None, kw_only=True)

    @property
    def missing(self) -> tuple[str, ...]:
        """The parts not given (``/health`` needs all but the drain)."""
        parts = ("zk", "redis", "gateways", "refresher", "policy", "ws_policy", "ws_refresher")
        return tuple(name for name in parts if getattr(self, name) is None)

    def snapshot(self, *, rows: bool = True) -> StatusSnapshot:
        """One reading of every part. ``rows=False`` leaves the per-server rows out
        (``allocation.rows`` empty): ``/health`` shows none, and is the most polled."""
        zk, redis, gateways = self.zk, self.redis, self.gateways
        cs_nodes = {} if zk is None else zk.connection_servers()
        ws_nodes = {} if zk is None else zk.websocket_servers()
        rejected = {} if zk is None else zk.rejected_nodes()
        return StatusSnapshot(
            draining=None if self.drain is None else bool(self.drain.draining),
            allocation=self._allocation(self.policy, self.refresher, cs_nodes if rows else None),
            refresh=self._refresh(self.refresher),
            zookeeper=None if zk is None else ZooKeeperStatus(
                zk.state, zk.session_id, zk.initialized, len(cs_nodes),
                len(zk.gateway_servers()), zk.last_error,
                rejected.get("cs", 0), rejected.get("gs", 0),
                len(ws_nodes), rejected.get("ws", 0)),
            redis=None if redis is None else RedisStatus(
                redis.mode, bool(redis.healthy), self._scrub(redis.last_error)),
            gateways=None if gateways is None else _gateways(gateways),
            websocket=self._allocation(self.ws_policy, self.ws_refresher,
                                       ws_nodes if rows else None),
            websocket_refresh=self._refresh(self.ws_refresher),
            sharing=self._sharing(),
        )

    def _age(self, moment: float | None) -> float | None:
        if moment is None:
            return None
        # Clamped: a clock stepped back must not show a negative age.
        return max(0.0, self._now() - moment)

    def _sharing(self) -> SharingStatus | None:
        sharer = self.sharer
        if sharer is None:
            return None
        return SharingStatus(sharer.interval, self._age(sharer.last_ok),
                             self._scrub(sharer.last_error), sharer.exchanges, sharer.failures)

    def _allocation(self, policy: Policy | None, ref: RefreshReport | None,
                    nodes: Mapping[str, ServerNodeInfo] | None) -> AllocationStatus | None:
        """A policy's part; its rows with the view's ``nodes`` of its kind (None: no
        rows), those its refresher ``ref`` holds after a mass drop marked."""
        if policy is None:
            return None
        rows: tuple[ServerRow, ...] = ()
        if nodes is not None and isinstance(policy, LoadReporter):
            held = None if ref is None else ref.held
            rows = ServerRow.rows(policy, nodes, held, self._now() if held else 0.0)
        return AllocationStatus(len(policy.servers), policy.body is not None, rows)

    def _refresh(self, ref: RefreshReport | None) -> RefreshStatus | None:
        if ref is None:
            return None
        return RefreshStatus(bool(ref.stale), self._age(ref.last_success),
                             self._scrub(ref.last_error),
                             ref.refreshes, ref.failures, ref.last_success,
                             len(ref.unreadable), len(ref.held), ref.holds_started)

    def _now(self) -> float:
        self.clock = default_reactor(self.clock)
        return self.clock.seconds()

    def _scrub(self, text: str | None) -> str | None:
        # Defence in depth: RedisService's messages never carry the password,
        # but a health page is often open wider than the logs.
        password = self.redis.password if self.redis is not None else None
        if text is not None and password:
            text = text.replace(password, "***")
        return text


def _gateways(gateways: GatewayRequester) -> GatewaysStatus:
    # The transport and the socket's counts, where the requester has them
    # (the UDP one; fakes and the TCP pool have no counts).
    counts = getattr(gateways, "counts", None)
    return GatewaysStatus.of(gateways.status(), str(getattr(gateways, "transport", "tcp")),
                             None if counts is None else DatagramStatus.of(counts))
