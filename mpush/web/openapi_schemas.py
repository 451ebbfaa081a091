"""The schemas of the OpenAPI document (``components.schemas``), one builder each.

The enums come from the code's own vocabularies (:mod:`mpush.outcomes`) and
limits, so the document says what the server does. The building blocks are
in :mod:`mpush.web.openapi_json`, ``POST /push``'s schemas in
:mod:`mpush.web.openapi_push_schemas`.
"""

from __future__ import annotations

from mpush.web.openapi_json import (
    Json,
    count,
    nullable,
    record,
    ref,
    string,
    strings,
    text_or_null,
)
from mpush.web.openapi_push_schemas import push_answer, push_request, push_result

__all__ = ["Json", "ref", "schemas"]


def schemas() -> Json:
    """``components.schemas``: a fresh dict, in the document's order."""
    return {
        "Error": _error(),
        "Allocation": {
            "type": "string",
            "description": "`ip:port` of every servable connection server (`GET /`) or"
                           " WebSocket server (`GET /ws`), comma-separated, least loaded"
                           " first, no trailing newline.",
            "pattern": r"^[^,:\s]+:[0-9]+(,[^,:\s]+:[0-9]+)*$",
        },
        "PushRequest": push_request(),
        "PushResult": push_result(),
        "PushAnswer": push_answer(),
        "Health": _health(),
        "Cluster": _cluster(),
        "ClusterServer": _cluster_server(),
        "ClusterGateway": _cluster_gateway(),
        "Config": _config(),
        "UserRoutes": _user_routes(),
        "UserRoute": _user_route(),
        "OpenApiDocument": {
            "type": "object",
            "description": "This document.",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"type": "string"}, "info": {"type": "object"},
                           "paths": {"type": "object"}},
        },
        "Page": {"type": "string", "description": "a self-contained HTML page"},
        "Metrics": {"type": "string", "pattern": "^# (HELP|TYPE) mpush_alloc_",
                    "description": "Prometheus text exposition format 0.0.4;"
                                   " docs/operations.md (Metrics) lists every metric"},
    }


def _error() -> Json:
    return {
        "type": "object",
        "description": "Every error the daemon writes (4xx/5xx) looks like this.",
        "required": ["error", "status"],
        "additionalProperties": False,
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for people"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599,
                       "description": "the HTTP status, repeated"},
            "field": {"type": ["string", "null"],
                      "description": "`/push` 400/413/415: the JSON key at fault"
                                     " (`body` for the whole body); `/users` 400: `userId`"},
            "limit": {"type": "integer", "minimum": 1,
                      "description": "413/503: the limit passed"
                                     " (bytes, users or pushes in flight)"},
            "allow": {"type": "array", "items": string(), "minItems": 1,
                      "description": "405: the methods the path accepts"},
        },
    }


def _health() -> Json:
    return record({
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "why not ok, for people; the blocking ones first"},
        "draining": {"type": "boolean"},
        "allocation": _health_allocation(),
        "websocket": {**_health_allocation(serving=True),
                      "description": "`GET /ws`: the WebSocket servers' list and refresh"},
        "zookeeper": _health_zookeeper(),
        "redis": _health_redis(),
        "gateways": _health_gateways(),
    }, description="In-memory state only: cheap to poll, answers the same during an outage."
                   " `ok`/`degraded` come with 200, `unavailable` with 503.")


def _health_allocation(*, serving: bool = False) -> Json:
    """``allocation`` (``GET /``), or with ``serving`` ``websocket`` (``GET /ws``)."""
    return record({
        "servers": count(),
        "stale": {"type": "boolean"},
        "lastRefreshAgeSeconds": {"type": ["number", "null"], "minimum": 0},
        "lastRefreshError": text_or_null(),
        "refreshes": count(),
        "held": {**count(), "description": "servers kept in the list after a mass drop"
                                            " (`mp.alloc.mass-drop-hold`)"},
        **({"serving": {"type": "boolean", "description": "`GET /ws` has a list to answer"
                                                          " with (else 503)"}}
           if serving else {"handoutSharing": nullable(record({
               "lastExchangeAgeSeconds": {"type": ["number", "null"], "minimum": 0},
               "lastError": text_or_null(),
               "exchanges": count(),
               "failures": count(),
           }, description="Handout counts shared with the other alloc instances through"
                          " Redis; null when mp.alloc.share-handouts-interval is 0."))}),
    })


def _health_zookeeper() -> Json:
    return record({
        "state": {"type": "string", "enum": ["connecting", "connected", "suspended",
                                             "lost", "stopped"]},
        "sessionId": {"type": ["string", "null"], "pattern": "^0x[0-9a-f]+$"},
        "initialized": {"type": "boolean"},
        "connectionServers": count(),
        "gatewayServers": count(),
        "websocketServers": count(),
        "lastError": {**text_or_null(), "description":
                      "why ZooKeeper cannot be used now: unreachable (address and error),"
                      " or a read refused (NoAuth: check `mp.zk.digest`); null when fine"},
    })


def _health_redis() -> Json:
    return record({
        "mode": {"type": "string", "enum": ["single", "sentinel", "cluster"]},
        "reachable": {"type": "boolean", "description": "the last probe (every 5 s) or command"
                                                        " reached Redis"},
        "lastError": text_or_null(),
    })


def _cluster() -> Json:
    return record({
        "draining": {"type": "boolean"},
        "serving": {"type": "boolean", "description": "`GET /` has a list to answer with"},
        "connectionServers": {"type": "array", "items": ref("schemas", "ClusterServer"),
                              "description": "in the order of the current `GET /` answer"},
        "websocket": record({
            "servers": {"type": "array", "items": ref("schemas", "ClusterServer"),
                        "description": "in the order of the current `GET /ws` answer"},
            "serving": {"type": "boolean", "description": "`GET /ws` has a list to answer"
                                                          " with"},
            "lastRefresh": _last_refresh(),
        }, description="`GET /ws`: the WebSocket servers (`/cluster/ws`), allocated by a"
                       " policy and a refresh of their own"),
        "gatewayServers": {"type": "array", "items": ref("schemas", "ClusterGateway"),
                           "description": "by `host:port`"},
        "zookeeper": _health_zookeeper(),
        "redis": _health_redis(),
        "lastRefresh": _last_refresh(),
    }, description="Every server as this daemon sees it, from the same in-memory snapshot as"
                   " `/health` and `/metrics`. docs/api.md describes each field.")


def _last_refresh() -> Json:
    return record({
        "at": {**text_or_null(), "description": "the last good refresh (ISO 8601 UTC)"},
        "ok": {"type": "boolean", "description": "the last refresh read the online counts"},
        "ageSeconds": {"type": ["number", "null"], "minimum": 0},
        "error": {**text_or_null(), "description": "why the last refresh failed"},
        "stale": {"type": "boolean", "description": "serving a list ZooKeeper no longer"
                                                    " shows"},
        "refreshes": count(),
        "failures": count(),
    })


def _cluster_server() -> Json:
    number = {"type": "number", "minimum": 0}
    return record({
        "position": {"type": "integer", "minimum": 1, "description": "1: listed first by"
                                                                    " `GET /` (`GET /ws`)"
                                                                    " now"},
        "address": {**string(), "description": "`ip:port` as served"},
        "publicIp": {**string(), "description": "its IP: `mp:oul:<ip>` counts its users"},
        "weight": {**number, "description": "`attrs.weight` of its node"},
        "online": {**number, "description": "its share of its IP's online count at the last"
                                            " refresh"},
        "handedOut": {**count(), "description": "handed out (listed first) since the last"
                                                 " refresh"},
        "load": {**number, "description": "(online + handedOut + sharedHandedOut) / weight:"
                                          " the order's key"},
        "allocated": {**count(), "description": "handed out since it joined the list"},
        "sharedHandedOut": {**count(), "description": "handed out by the other alloc"
                                                       " instances since the last refresh"},
        "registeredAddress": {**text_or_null(), "description": "`host:port` of its node"
                                                                " (null: not in the view)"},
        "zkNodes": {**strings(), "description": "its node names under `/cluster/cs`"
                                                 " (`/cluster/ws`)"},
        "knownSince": {**text_or_null(), "description": "when its node appeared in the"
                                                         " ZooKeeper view (ISO 8601 UTC)"},
        "held": {"type": "boolean", "description": "kept after a mass drop: it left ZooKeeper"
                                                  " and is served until it registers again"},
        "heldSecondsLeft": {"type": ["number", "null"], "minimum": 0,
                            "description": "when held: seconds before its hold ends"},
    })


def _cluster_gateway() -> Json:
    return record({
        "address": {**string(), "description": "`host:port` from `/cluster/gs`"},
        "connections": {**count(), "description": "connections up"},
        "configuredConnections": {**count(), "description": "`mp.net.gateway-client-num`"},
        "pending": {**count(), "description": "requests awaiting an answer"},
        "unanswering": {**count(), "description": "connections whose last requests timed"
                                                   " out"},
        "lastError": {**text_or_null(), "description": "the last failed connection attempt"
                                                        " or lost connection (kept after a"
                                                        " reconnect)"},
    })


def _config() -> Json:
    key = record({
        "key": {**string(), "description": "the HOCON key, as in the Java files"},
        "value": {**text_or_null(), "description": "as it would be written in the file (null:"
                                                    " none); a secret: `set` or `unset`"},
        "source": {"type": "string", "enum": ["file", "default"]},
        "secret": {"type": "boolean"},
    })
    unknown = record({
        "key": string(),
        "didYouMean": {**text_or_null(), "description": "the nearest known key"},
    })
    return record({
        "file": {**string(), "description": "the config file the daemon was started with"},
        "keys": {"type": "array", "items": key, "description": "every key, in table order"},
        "unknownKeys": {"type": "array", "items": unknown,
                        "description": "keys under `mp.alloc` the daemon does not know"},
    }, description="The settings in effect (docs/configuration.md lists every key).")


def _user_routes() -> Json:
    return record({
        "userId": string(),
        "online": {"type": "boolean", "description": "online on at least one client type"},
        "routes": {"type": "array", "items": ref("schemas", "UserRoute"), "minItems": 1,
                   "description": "one per client type, then the malformed entries"},
    }, description="The entries of `mp:ur:<userId>`, as the Java console's `route` command"
                   " shows them.")


def _user_route() -> Json:
    text = text_or_null()
    return record({
        "field": {**string(), "description": "the hash field (the client type written)"},
        "clientType": {"type": ["integer", "null"], "description": "1 mobile, 2 PC, 3 web, -1"
                                                                   " other (from osName);"
                                                                   " null if malformed"},
        "online": {"type": "boolean", "description": "the entry has a `connId`"},
        "gateway": {**text, "description": "the gateway server `host:port` holding the user"},
        "connectionServers": {**strings(), "description": "served `ip:port` of the"
                                                           " connection servers on the"
                                                           " gateway's host"},
        "osName": text, "clientVersion": text, "deviceId": text, "connId": text,
        "malformed": {"type": ["object", "null"], "description": "why the entry cannot be"
                                                                 " used, and its value"
                                                                 " (shortened)",
                      "required": ["reason", "value"], "additionalProperties": False,
                      "properties": {"reason": string(), "value": string()}},
    })


def _health_gateways() -> Json:
    per_gateway = record({"connected": count(), "configured": count(), "pending": count()})
    by_reason = {"type": "object", "additionalProperties": count()}
    datagrams = record({
        "sent": count(),
        "received": count(),
        "dropped": {**by_reason, "description": "received and ignored: `unknown_sender`,"
                                                " `malformed`, `unmatched`"},
        "refused": {**by_reason, "description": "requests not sent: `too_large`,"
                                                " `send_failed`"},
    })
    return record({
        "known": count(),
        "connected": count(),
        "connections": count(),
        "configuredConnections": count(),
        "pending": count(),
        "servers": {"type": "object", "additionalProperties": per_gateway},
        "transport": {"type": "string", "enum": ["tcp", "udp"],
                      "description": "`mp.net.gateway-server-net`"},
        "datagrams": {**datagrams, "type": ["object", "null"],
                      "description": "the UDP socket's counts since start; null over tcp"},
    })
