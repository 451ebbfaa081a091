"""The schemas of the OpenAPI document (``components.schemas``), one builder each.

The enums come from the code's own vocabularies (:mod:`mpush.outcomes`) and
limits (the wire codec, :mod:`mpush.web.push_body`), so the document says
what the server does.
"""

from __future__ import annotations

from typing import Any

from mpush.outcomes import AckModel, PushOutcome, PushReason
from mpush.web.push_body import MAX_TIMEOUT_MS
from mpush.wire import MIN_TIMEOUT_MS

__all__ = ["Json", "ref", "schemas"]

Json = dict[str, Any]



# Functions, not shared constants: every document is a fresh tree.
def _string() -> Json:
    return {"type": "string"}


def _strings() -> Json:
    return {"type": "array", "items": _string()}


def _count() -> Json:
    return {"type": "integer", "minimum": 0}


def _text_or_null() -> Json:
    return {"type": ["string", "null"]}


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def schemas() -> Json:
    """``components.schemas``: a fresh dict, in the document's order."""
    return {
        "Error": _error(),
        "Allocation": {
            "type": "string",
            "description": "`ip:port` of every servable connection server (`GET /`) or"
                           " websocket server (`GET /ws`), comma-separated, least loaded"
                           " first, no trailing newline.",
            "pattern": r"^[^,:\s]+:[0-9]+(,[^,:\s]+:[0-9]+)*$",
        },
        "PushRequest": _push_request(),
        "PushResult": _push_result(),
        "PushAnswer": _push_answer(),
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


def _record(properties: Json, *, description: str | None = None) -> Json:
    """An object with exactly these properties, every one required (in their order)."""
    return {
        "type": "object",
        **({"description": description} if description is not None else {}),
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _nullable(schema: Json) -> Json:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


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
            "allow": {"type": "array", "items": _string(), "minItems": 1,
                      "description": "405: the methods the path accepts"},
        },
    }


def _push_request() -> Json:
    return {
        "type": "object",
        "description": "A push. `null` is the same as absent; an unknown field is a 400"
                       " naming it (`field`) and the closest known one (the Java alloc"
                       " ignored them, so a typo went unnoticed). A target (`userId`, `userIds` or"
                       " `broadcast: true`) and a content (`hello` or `content`, not both)"
                       " are required. The Java alloc's own body"
                       " `{\"userId\",\"hello\",\"broadcast\":false,\"condition\":\"\"}`"
                       " works as it is. Any `Content-Type` but multipart.",
        "additionalProperties": False,
        "properties": {**_push_targets(), **_push_contents(), **_push_options()},
    }


def _push_targets() -> Json:
    return {
        "userId": _nullable({**_string(), "description":
                             "one user (with `userIds`: the union, order kept,"
                             " duplicates once); not blank"}),
        "userIds": _nullable({**_strings(), "description":
                              "several users; none blank; at most"
                              " `mp.alloc.max-users-per-push` distinct (else 413)"}),
        "broadcast": _nullable({"type": "boolean", "description":
                                "push to every connected user; wins over user ids"}),
    }


def _push_contents() -> Json:
    return {
        "hello": _nullable({**_string(), "description":
                            "text wrapped as the Java alloc wraps it (a notification"
                            " titled MPUSH推送)"}),
        "msgType": {"type": ["integer", "null"], "enum": [1, 2, 3, None],
                    "description": "with `hello` only: 1 notification, 2 message,"
                                   " 3 both (default)"},
        "content": {"type": ["string", "object", "null"], "description":
                    "raw content instead of `hello`: a string is sent as its UTF-8"
                    " bytes, an object as its compact JSON; not empty; at most"
                    " `mp.core.max-packet-size` once framed (else 413)"},
    }


def _push_options() -> Json:
    return {
        "tags": _nullable({"type": "array", "minItems": 1,
                           "items": {"type": "string", "minLength": 1},
                           "description": "broadcast: only users with one of these"
                                          " tags"}),
        "condition": _nullable({**_string(), "description":
                                "broadcast: a script the connection servers evaluate;"
                                " blank = none"}),
        "taskId": _nullable({**_string(), "description":
                             "broadcast only (400 on a single push): task id"}),
        "ackModel": {"type": ["string", "null"], "enum": [*(m.value for m in AckModel), None],
                     "description": "delivery ack asked of the device (default none)"},
        "timeout": {"type": ["integer", "null"], "minimum": MIN_TIMEOUT_MS,
                    "maximum": MAX_TIMEOUT_MS,
                    "description": "ms to wait for the gateway's answer (default"
                                   " `mp.alloc.push-timeout`, a broadcast's"
                                   " `mp.alloc.broadcast-timeout`); the gateway is"
                                   " given 500 ms less"},
    }


def _push_result() -> Json:
    return _record({
        "userId": {"type": ["string", "null"],
                   "description": "the user; null for a broadcast's per-gateway row"},
        "clientType": {"type": ["integer", "null"],
                       "description": "1 mobile, 2 PC, 3 web, -1 other (from the"
                                      " route's osName); null when the user has no"
                                      " route, and for a broadcast"},
        "result": {"type": "string", "enum": [m.value for m in PushOutcome]},
        "gateway": {"type": ["string", "null"],
                    "description": "the gateway `host:port` asked; null if none"},
        "ms": {"type": "number", "minimum": 0, "description": "time taken, ms"},
        "reason": {"type": ["string", "null"], "enum": [*(m.value for m in PushReason), None],
                   "description": "why not a success, one word (docs/api.md lists"
                                  " them); null on success"},
        "code": {"type": ["integer", "null"],
                 "description": "the gateway's ERROR code: with reason `not_online` (1)"
                                " or `gateway_error` (null if that ERROR did not"
                                " answer the push); otherwise null"},
    })


def _push_answer() -> Json:
    return _record({
        "results": {"type": "array", "items": ref("schemas", "PushResult")},
        "summary": _record({m.value: _count() for m in PushOutcome}),
    }, description="Sent once every outcome is known (also when every user is"
                   " offline): one result per user and client type, or per gateway"
                   " server for a broadcast.")


def _health() -> Json:
    return _record({
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "why not ok, for people; the blocking ones first"},
        "draining": {"type": "boolean"},
        "allocation": _health_allocation(),
        "websocket": {**_health_allocation(serving=True),
                      "description": "`GET /ws`: the websocket servers' list and refresh"},
        "zookeeper": _health_zookeeper(),
        "redis": _health_redis(),
        "gateways": _health_gateways(),
    }, description="In-memory state only: cheap to poll, answers the same during an outage."
                   " `ok`/`degraded` come with 200, `unavailable` with 503.")


def _health_allocation(*, serving: bool = False) -> Json:
    """``allocation`` (``GET /``), or with ``serving`` ``websocket`` (``GET /ws``)."""
    return _record({
        "servers": _count(),
        "stale": {"type": "boolean"},
        "lastRefreshAgeSeconds": {"type": ["number", "null"], "minimum": 0},
        "lastRefreshError": _text_or_null(),
        "refreshes": _count(),
        "held": {**_count(), "description": "servers kept in the list after a mass drop"
                                            " (`mp.alloc.mass-drop-hold`)"},
        **({"serving": {"type": "boolean", "description": "`GET /ws` has a list to answer"
                                                          " with (else 503)"}}
           if serving else {"handoutSharing": _nullable(_record({
               "lastExchangeAgeSeconds": {"type": ["number", "null"], "minimum": 0},
               "lastError": _text_or_null(),
               "exchanges": _count(),
               "failures": _count(),
           }, description="Handout counts shared with the other alloc instances through"
                          " Redis; null when mp.alloc.share-handouts-interval is 0."))}),
    })


def _health_zookeeper() -> Json:
    return _record({
        "state": {"type": "string", "enum": ["connecting", "connected", "suspended",
                                             "lost", "stopped"]},
        "sessionId": {"type": ["string", "null"], "pattern": "^0x[0-9a-f]+$"},
        "initialized": {"type": "boolean"},
        "connectionServers": _count(),
        "gatewayServers": _count(),
        "websocketServers": _count(),
        "lastError": {**_text_or_null(), "description":
                      "why ZooKeeper cannot be used now: unreachable (address and error),"
                      " or a read refused (NoAuth: check `mp.zk.digest`); null when fine"},
    })


def _health_redis() -> Json:
    return _record({
        "mode": {"type": "string", "enum": ["single", "sentinel", "cluster"]},
        "reachable": {"type": "boolean", "description": "the last probe (every 5 s) or command"
                                                        " reached Redis"},
        "lastError": _text_or_null(),
    })


def _cluster() -> Json:
    return _record({
        "draining": {"type": "boolean"},
        "serving": {"type": "boolean", "description": "`GET /` has a list to answer with"},
        "connectionServers": {"type": "array", "items": ref("schemas", "ClusterServer"),
                              "description": "in the order of the current `GET /` answer"},
        "websocket": _record({
            "servers": {"type": "array", "items": ref("schemas", "ClusterServer"),
                        "description": "in the order of the current `GET /ws` answer"},
            "serving": {"type": "boolean", "description": "`GET /ws` has a list to answer"
                                                          " with"},
            "lastRefresh": _last_refresh(),
        }, description="`GET /ws`: the websocket servers (`/cluster/ws`), allocated by a"
                       " policy and a refresh of their own"),
        "gatewayServers": {"type": "array", "items": ref("schemas", "ClusterGateway"),
                           "description": "by `host:port`"},
        "zookeeper": _health_zookeeper(),
        "redis": _health_redis(),
        "lastRefresh": _last_refresh(),
    }, description="Every server as this daemon sees it, from the same in-memory snapshot as"
                   " `/health` and `/metrics`. docs/api.md describes each field.")


def _last_refresh() -> Json:
    return _record({
        "at": {**_text_or_null(), "description": "the last good refresh (ISO 8601 UTC)"},
        "ok": {"type": "boolean", "description": "the last refresh read the online counts"},
        "ageSeconds": {"type": ["number", "null"], "minimum": 0},
        "error": {**_text_or_null(), "description": "why the last refresh failed"},
        "stale": {"type": "boolean", "description": "serving a list ZooKeeper no longer"
                                                    " shows"},
        "refreshes": _count(),
        "failures": _count(),
    })


def _cluster_server() -> Json:
    number = {"type": "number", "minimum": 0}
    return _record({
        "position": {"type": "integer", "minimum": 1, "description": "1: listed first by"
                                                                    " `GET /` (`GET /ws`)"
                                                                    " now"},
        "address": {**_string(), "description": "`ip:port` as served"},
        "publicIp": {**_string(), "description": "its IP: `mp:oul:<ip>` counts its users"},
        "weight": {**number, "description": "`attrs.weight` of its node"},
        "online": {**number, "description": "its share of its IP's online count at the last"
                                            " refresh"},
        "handedOut": {**_count(), "description": "handed out (listed first) since the last"
                                                 " refresh"},
        "load": {**number, "description": "(online + handedOut + sharedHandedOut) / weight:"
                                          " the order's key"},
        "allocated": {**_count(), "description": "handed out since it joined the list"},
        "sharedHandedOut": {**_count(), "description": "handed out by the other alloc"
                                                       " instances since the last refresh"},
        "registeredAddress": {**_text_or_null(), "description": "`host:port` of its node"
                                                                " (null: not in the view)"},
        "zkNodes": {**_strings(), "description": "its node names under `/cluster/cs`"
                                                 " (`/cluster/ws`)"},
        "knownSince": {**_text_or_null(), "description": "when its node appeared in the"
                                                         " ZooKeeper view (ISO 8601 UTC)"},
        "held": {"type": "boolean", "description": "kept after a mass drop: it left ZooKeeper"
                                                  " and is served until it registers again"},
        "heldSecondsLeft": {"type": ["number", "null"], "minimum": 0,
                            "description": "when held: seconds before its hold ends"},
    })


def _cluster_gateway() -> Json:
    return _record({
        "address": {**_string(), "description": "`host:port` from `/cluster/gs`"},
        "connections": {**_count(), "description": "connections up"},
        "configuredConnections": {**_count(), "description": "`mp.net.gateway-client-num`"},
        "pending": {**_count(), "description": "requests awaiting an answer"},
        "unanswering": {**_count(), "description": "connections whose last requests timed"
                                                   " out"},
        "lastError": {**_text_or_null(), "description": "the last failed connection attempt"
                                                        " or lost connection (kept after a"
                                                        " reconnect)"},
    })


def _config() -> Json:
    key = _record({
        "key": {**_string(), "description": "the HOCON key, as in the Java files"},
        "value": {**_text_or_null(), "description": "as it would be written in the file (null:"
                                                    " none); a secret: `set` or `unset`"},
        "source": {"type": "string", "enum": ["file", "default"]},
        "secret": {"type": "boolean"},
    })
    unknown = _record({
        "key": _string(),
        "didYouMean": {**_text_or_null(), "description": "the nearest known key"},
    })
    return _record({
        "file": {**_string(), "description": "the config file the daemon was started with"},
        "keys": {"type": "array", "items": key, "description": "every key, in table order"},
        "unknownKeys": {"type": "array", "items": unknown,
                        "description": "keys under `mp.alloc` the daemon does not know"},
    }, description="The settings in effect (docs/configuration.md lists every key).")


def _user_routes() -> Json:
    return _record({
        "userId": _string(),
        "online": {"type": "boolean", "description": "online on at least one client type"},
        "routes": {"type": "array", "items": ref("schemas", "UserRoute"), "minItems": 1,
                   "description": "one per client type, then the malformed entries"},
    }, description="The entries of `mp:ur:<userId>`, as the Java console's `route` command"
                   " shows them.")


def _user_route() -> Json:
    text = _text_or_null()
    return _record({
        "field": {**_string(), "description": "the hash field (the client type written)"},
        "clientType": {"type": ["integer", "null"], "description": "1 mobile, 2 PC, 3 web, -1"
                                                                   " other (from osName);"
                                                                   " null if malformed"},
        "online": {"type": "boolean", "description": "the entry has a `connId`"},
        "gateway": {**text, "description": "the gateway server `host:port` holding the user"},
        "connectionServers": {**_strings(), "description": "served `ip:port` of the"
                                                           " connection servers on the"
                                                           " gateway's host"},
        "osName": text, "clientVersion": text, "deviceId": text, "connId": text,
        "malformed": {"type": ["object", "null"], "description": "why the entry cannot be"
                                                                 " used, and its value"
                                                                 " (shortened)",
                      "required": ["reason", "value"], "additionalProperties": False,
                      "properties": {"reason": _string(), "value": _string()}},
    })


def _health_gateways() -> Json:
    per_gateway = _record({"connected": _count(), "configured": _count(), "pending": _count()})
    by_reason = {"type": "object", "additionalProperties": _count()}
    datagrams = _record({
        "sent": _count(),
        "received": _count(),
        "dropped": {**by_reason, "description": "received and ignored: `unknown_sender`,"
                                                " `malformed`, `unmatched`"},
        "refused": {**by_reason, "description": "requests not sent: `too_large`,"
                                                " `send_failed`"},
    })
    return _record({
        "known": _count(),
        "connected": _count(),
        "connections": _count(),
        "configuredConnections": _count(),
        "pending": _count(),
        "servers": {"type": "object", "additionalProperties": per_gateway},
        "transport": {"type": "string", "enum": ["tcp", "udp"],
                      "description": "`mp.net.gateway-server-net`"},
        "datagrams": {**datagrams, "type": ["object", "null"],
                      "description": "the UDP socket's counts since start; null over tcp"},
    })
