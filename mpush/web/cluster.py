"""``GET /cluster``: every server as this daemon sees it, for operators.

Rendered from the same :class:`mpush.services.status.Status` snapshot as
``/health`` and ``/metrics``, in full: each connection server as allocated
(its place in the current ``GET /`` answer, the policy's figures, its
ZooKeeper node and since when it is known), each WebSocket server the same
way (its place in ``GET /ws``), each gateway server, the
ZooKeeper and Redis state and the last refresh. Answering reads in-memory
state only.

Access is ``/push``'s (:mod:`mpush.web.push_access`): the push token, or
else the allow-list. docs/api.md describes every field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from twisted.web.server import Request

from mpush.services.status import (
    GatewayStatus,
    RefreshStatus,
    ServerRow,
    Status,
    StatusSnapshot,
)
from mpush.web.base import JsonLeaf
from mpush.web.errors import json_answer
from mpush.web.health import redis_section, zookeeper_section
from mpush.web.push_access import PushAccess

__all__ = ["ClusterResource", "cluster_body", "timestamp"]


class ClusterResource(JsonLeaf):
    """Leaf at ``/cluster``; needs the whole status (the drain is optional)."""

    def __init__(self, status: Status, access: PushAccess) -> None:
        super().__init__()
        if status.missing:
            raise ValueError(f"/cluster needs the whole status; missing: {status.missing}")
        self._status = status
        self._access = access

    def render_GET(self, request: Request) -> bytes:
        refusal = self._access.check(request, "query")
        if refusal is not None:
            return refusal
        return json_answer(request, cluster_body(self._status.snapshot()))


def cluster_body(snap: StatusSnapshot) -> bytes:
    """The ``/cluster`` JSON of a complete snapshot.

    The server rows are written by :func:`_server_json` (a row per
    connection server, hundreds per read), everything else by ``json``.
    """
    alloc, refresh, zk, redis, gateways, ws, ws_refresh = snap.complete("/cluster")
    rest = _json({
        "draining": snap.draining is True,
        "serving": alloc.serving,
        "gatewayServers": [_gateway(g) for g in gateways.servers],
        "zookeeper": zookeeper_section(zk),
        "redis": redis_section(redis),
        "lastRefresh": _refresh(refresh),
    })
    websocket = _json({"serving": ws.serving, "lastRefresh": _refresh(ws_refresh)})
    return ('{"connectionServers":' + _rows(alloc.rows) + ","
            + '"websocket":{"servers":' + _rows(ws.rows) + "," + websocket[1:] + ","
            + rest[1:]).encode()


def _rows(rows: tuple[ServerRow, ...]) -> str:
    return "[" + ",".join([_server_json(row) for row in rows]) + "]"


def timestamp(seconds: float | None) -> str | None:
    """Reactor time (POSIX seconds on the real reactor) as ISO 8601 UTC, to the ms."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _figure(value: float) -> float:
    return round(value, 3)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _server_json(row: ServerRow) -> str:
    """One row: its figures, which change with every allocation, around the JSON of
    the fields that change with ZooKeeper only (made once, cached)."""
    head, tail = _server_fixed(row.address, row.ip, row.weight, row.registered, row.nodes,
                               row.since)
    # A finite float's repr is its JSON (what json.dumps writes); the figures are finite:
    # counts over a weight that is a finite number > 0.
    return (f'{{"position":{row.position:d},{head},"online":{_figure(row.online)!r},'
            f'"handedOut":{row.handed:d},"load":{_figure(row.load)!r},'
            f'"allocated":{row.allocated:d},"sharedHandedOut":{row.shared:d},{tail},'
            f'{_held(row.held_left)}}}')


def _held(left: float | None) -> str:
    if left is None:
        return '"held":false,"heldSecondsLeft":null'
    return f'"held":true,"heldSecondsLeft":{_figure(left)!r}'


@lru_cache(maxsize=4096)
def _server_fixed(address: str, ip: str, weight: float, registered: str | None,
                  nodes: tuple[str, ...], since: float | None) -> tuple[str, str]:
    head = _json({"address": address, "publicIp": ip, "weight": float(weight)})
    tail = _json({"registeredAddress": registered, "zkNodes": list(nodes),
                  "knownSince": timestamp(since)})
    return head[1:-1], tail[1:-1]


#: A gateway row: its JSON names, in answer order, and the snapshot fields they show.
_GATEWAY_FIELDS: Final = (("address", "address"), ("connections", "connected"),
                          ("configuredConnections", "configured"), ("pending", "pending"),
                          ("unanswering", "unanswering"), ("lastError", "last_error"))


def _gateway(g: GatewayStatus) -> dict[str, Any]:
    return {name: getattr(g, field) for name, field in _GATEWAY_FIELDS}


def _refresh(refresh: RefreshStatus) -> dict[str, Any]:
    age = refresh.last_success_age
    return {
        "at": timestamp(refresh.last_success),
        "ok": refresh.last_success is not None and refresh.last_error is None,
        "ageSeconds": None if age is None else _figure(age),
        "error": refresh.last_error,
        "stale": refresh.stale,
        "refreshes": refresh.refreshes,
        "failures": refresh.failures,
    }
