"""``GET /health``: what the daemon depends on, and whether it can serve.

Answering reads in-memory state only (no ZooKeeper, Redis or gateway call),
so a load balancer may poll it as often as it likes, and it answers the
same during an outage as before it.

* ``200`` + ``"status": "ok"``: allocations are served and every dependency
  is fine;
* ``200`` + ``"status": "degraded"``: allocations are served (from the last
  known list) but something is impaired; ``reasons`` says what;
* ``503`` + ``"status": "unavailable"``: no allocation can be served (no
  connection server known yet) or the daemon is draining.

WebSocket servers (``GET /ws``) are optional in an mpush cluster (Java's
``ws-server-port=0`` disables them): none known is no reason, only a stale
list of them is one (``degraded``).
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from mpush.services.status import (
    AllocationStatus,
    DatagramStatus,
    GatewaysStatus,
    RedisStatus,
    RefreshStatus,
    Status,
    StatusSnapshot,
    ZooKeeperStatus,
)
from mpush.web.base import JsonLeaf
from mpush.web.errors import json_answer

OK = "ok"
DEGRADED = "degraded"
UNAVAILABLE = "unavailable"


class HealthResource(JsonLeaf):
    """Leaf at ``/health``: renders a :class:`mpush.services.status.Status` snapshot.

    The status needs every part but the drain (without one: never draining).
    """

    def __init__(self, status: Status) -> None:
        super().__init__()
        if status.missing:
            raise ValueError(f"/health needs the whole status; missing: {status.missing}")
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        report = self.report()
        # Not cached (no-store): a cached "ok" would hide an outage from
        # whoever polls through a cache.
        return json_answer(request, report, 503 if report["status"] == UNAVAILABLE else 200)

    def report(self) -> dict[str, Any]:
        """The health document (a dict ready for JSON)."""
        return health_document(self._status.snapshot(rows=False))


def health_document(snap: StatusSnapshot) -> dict[str, Any]:
    """The ``/health`` JSON document of a complete snapshot."""
    alloc, refresh, zk, redis, gateways, ws, ws_refresh = snap.complete("/health")
    draining = snap.draining is True
    unavailable: list[str] = []
    if not alloc.serving:
        unavailable.append("no connection server known yet")
    if draining:
        unavailable.append("draining")
    degraded = _zookeeper_reasons(zk)
    if not redis.reachable:
        degraded.append("redis unreachable")
    degraded += _gateway_reasons(gateways) + _refresh_reasons(refresh)
    sharing = snap.sharing
    if sharing is not None and sharing.last_error is not None:
        degraded.append("handout counts not shared")
    degraded += _list_reasons(ws_refresh, "WebSocket server")

    if unavailable:
        status = UNAVAILABLE
    elif degraded:
        status = DEGRADED
    else:
        status = OK
    return {
        "status": status,
        # Why not ok: what stops serving first, then what is impaired.
        "reasons": unavailable + degraded,
        "draining": draining,
        "allocation": {
            **_allocation_section(alloc, refresh),
            # null: sharing with other instances is off (mp.alloc.share-handouts-interval 0)
            "handoutSharing": None if sharing is None else {
                "lastExchangeAgeSeconds": (None if sharing.last_ok_age is None
                                           else round(sharing.last_ok_age, 3)),
                "lastError": sharing.last_error,
                "exchanges": sharing.exchanges,
                "failures": sharing.failures,
            },
        },
        "websocket": {**_allocation_section(ws, ws_refresh), "serving": ws.serving},
        "zookeeper": zookeeper_section(zk),
        "redis": redis_section(redis),
        "gateways": {
            "known": gateways.known,
            "connected": gateways.up,
            "connections": gateways.connections,
            "configuredConnections": gateways.configured_connections,
            "pending": gateways.pending,
            "servers": {g.address: {"connected": g.connected, "configured": g.configured,
                                    "pending": g.pending} for g in gateways.servers},
            "transport": gateways.transport,
            "datagrams": datagrams_section(gateways.datagrams),
        },
    }


def _allocation_section(alloc: AllocationStatus, refresh: RefreshStatus) -> dict[str, Any]:
    """``allocation`` (GET /) or ``websocket`` (GET /ws): a policy and its refresher."""
    return {
        "servers": alloc.servers,
        "stale": refresh.stale,
        "lastRefreshAgeSeconds": (None if refresh.last_success_age is None
                                  else round(refresh.last_success_age, 3)),
        "lastRefreshError": refresh.last_error,
        "refreshes": refresh.refreshes,
        "held": refresh.held,
    }


def datagrams_section(datagrams: DatagramStatus | None) -> dict[str, Any] | None:
    """The UDP socket's counts in ``/health`` (None: the gateways are reached over TCP)."""
    if datagrams is None:
        return None
    return {"sent": datagrams.sent, "received": datagrams.received,
            "dropped": dict(datagrams.dropped), "refused": dict(datagrams.refused)}


def zookeeper_section(zk: ZooKeeperStatus) -> dict[str, Any]:
    """The ``zookeeper`` object of ``/health`` and ``/cluster``."""
    return {
        "state": zk.state,
        "sessionId": None if zk.session_id is None else f"0x{zk.session_id:x}",
        "initialized": zk.initialized,
        "connectionServers": zk.connection_servers,
        "gatewayServers": zk.gateway_servers,
        "websocketServers": zk.websocket_servers,
        "lastError": zk.last_error,
    }


def redis_section(redis: RedisStatus) -> dict[str, Any]:
    """The ``redis`` object of ``/health`` and ``/cluster``."""
    return {"mode": redis.mode, "reachable": redis.reachable, "lastError": redis.last_error}


def _zookeeper_reasons(zk: ZooKeeperStatus) -> list[str]:
    if zk.state != "connected":
        return [f"zookeeper {zk.state}"]
    if not zk.initialized:
        return ["zookeeper view not loaded yet"]
    return []


def _gateway_reasons(gateways: GatewaysStatus) -> list[str]:
    # One reason per kind, not per server: the list stays short with a
    # large cluster; "servers" says which.
    known, reasons = gateways.known, []
    if known == 0:
        reasons.append("no gateway server known")
    if gateways.down:
        reasons.append(f"gateway servers not connected: {gateways.down} of {known}")
    if gateways.partial:
        reasons.append(f"gateway servers partly connected: {gateways.partial} of {known}")
    # A frozen or overloaded server keeps its connections: only its
    # timeouts tell (reset by its next answer).
    if gateways.silent:
        reasons.append(f"gateway servers not answering: {gateways.silent} of {known}")
    return reasons


def _refresh_reasons(refresh: RefreshStatus) -> list[str]:
    reasons = _list_reasons(refresh, "connection server")
    if refresh.last_error is not None:
        reasons.append("online counts not refreshed")
    return reasons


def _list_reasons(refresh: RefreshStatus, what: str) -> list[str]:
    """What is wrong with a refresher's list of ``what`` servers (GET / or GET /ws)."""
    reasons = []
    if refresh.stale:
        reasons.append(f"{what} list stale")
    if refresh.held:
        reasons.append(f"{what}s held after a mass drop: {refresh.held}")
    return reasons
