"""``/openapi.json``: the OpenAPI 3.1 document of the HTTP API, and its resource.

The document is built here, as a dict, from the same facts as the
resources: every path, every method (the accepted ones with their real
answers, the others with ``405``), every status each can answer, the
headers that come with them. ``tests/test_openapi.py`` keeps it true: it
sends real requests to an in-process daemon and checks each answer against
the document, and checks that every declared status (but ``500``) is
actually produced.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.web.errors import json_error, method_not_allowed
from mpush.web.push import MAX_TIMEOUT_MS
from mpush.wire.codec import MIN_TIMEOUT_MS

__all__ = ["OPENAPI_VERSION", "OpenApiResource", "build_document"]

OPENAPI_VERSION = "3.1.0"
METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")
_ALLOWED = (b"GET", b"HEAD")

Json = dict[str, Any]


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: Json) -> Json:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _error_response(description: str, *, headers: Json | None = None) -> Json:
    answer: Json = {
        "description": description,
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _schemas() -> Json:
    string: Json = {"type": "string"}
    strings: Json = {"type": "array", "items": string}
    return {
        "Error": {
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
                                         " (`body` for the whole body)"},
                "limit": {"type": "integer", "minimum": 1,
                          "description": "413/503: the limit passed"
                                         " (bytes, users or pushes in flight)"},
                "allow": {"type": "array", "items": string, "minItems": 1,
                          "description": "405: the methods the path accepts"},
            },
        },
        "Allocation": {
            "type": "string",
            "description": "`ip:port` of every servable connection server, comma-separated,"
                           " least loaded first, no trailing newline.",
            "pattern": r"^[^,:\s]+:[0-9]+(,[^,:\s]+:[0-9]+)*$",
        },
        "PushRequest": {
            "type": "object",
            "description": "A push. `null` is the same as absent; unknown fields are ignored"
                           " (as the Java alloc ignores them). A target (`userId`, `userIds` or"
                           " `broadcast: true`) and a content (`hello` or `content`, not both)"
                           " are required. The Java alloc's own body"
                           " `{\"userId\",\"hello\",\"broadcast\":false,\"condition\":\"\"}`"
                           " works as it is. Any `Content-Type` but multipart.",
            "additionalProperties": True,
            "properties": {
                "userId": _nullable({**string, "description":
                                     "one user (with `userIds`: the union, order kept,"
                                     " duplicates once); not blank"}),
                "userIds": _nullable({**strings, "description":
                                      "several users; none blank; at most"
                                      " `mp.alloc.max-users-per-push` distinct (else 413)"}),
                "broadcast": _nullable({"type": "boolean", "description":
                                        "push to every connected user; wins over user ids"}),
                "hello": _nullable({**string, "description":
                                    "text wrapped as the Java alloc wraps it (a notification"
                                    " titled MPUSH推送)"}),
                "msgType": {"type": ["integer", "null"], "enum": [1, 2, 3, None],
                            "description": "with `hello` only: 1 notification, 2 message,"
                                           " 3 both (default)"},
                "content": {"type": ["string", "object", "null"], "description":
                            "raw content instead of `hello`: a string is sent as its UTF-8"
                            " bytes, an object as its compact JSON; not empty; at most"
                            " `mp.core.max-packet-size` once framed (else 413)"},
                "tags": _nullable({"type": "array", "minItems": 1,
                                   "items": {"type": "string", "minLength": 1},
                                   "description": "broadcast: only users with one of these"
                                                  " tags"}),
                "condition": _nullable({**string, "description":
                                        "broadcast: a script the connection servers evaluate;"
                                        " blank = none"}),
                "taskId": _nullable({**string, "description":
                                     "broadcast only (400 on a single push): task id"}),
                "ackModel": {"type": ["string", "null"], "enum": ["none", "auto", "biz", None],
                             "description": "delivery ack asked of the device (default none)"},
                "timeout": {"type": ["integer", "null"], "minimum": MIN_TIMEOUT_MS,
                            "maximum": MAX_TIMEOUT_MS,
                            "description": "ms to wait for the gateway's answer (default"
                                           " `mp.alloc.push-timeout`, a broadcast's"
                                           " `mp.alloc.broadcast-timeout`); the gateway is"
                                           " given 500 ms less"},
            },
        },
        "PushResult": {
            "type": "object",
            "required": ["userId", "clientType", "result", "gateway", "ms"],
            "additionalProperties": False,
            "properties": {
                "userId": {"type": ["string", "null"],
                           "description": "the user; null for a broadcast's per-gateway row"},
                "clientType": {"type": ["integer", "null"],
                               "description": "1 mobile, 2 PC, 3 web, -1 other (from the"
                                              " route's osName); null when the user has no"
                                              " route, and for a broadcast"},
                "result": {"type": "string",
                           "enum": ["success", "failure", "offline", "timeout"]},
                "gateway": {"type": ["string", "null"],
                            "description": "the gateway `host:port` asked; null if none"},
                "ms": {"type": "number", "minimum": 0, "description": "time taken, ms"},
            },
        },
        "PushAnswer": {
            "type": "object",
            "description": "Sent once every outcome is known (also when every user is"
                           " offline): one result per user and client type, or per gateway"
                           " server for a broadcast.",
            "required": ["results", "summary"],
            "additionalProperties": False,
            "properties": {
                "results": {"type": "array", "items": _ref("schemas", "PushResult")},
                "summary": {
                    "type": "object",
                    "required": ["success", "failure", "offline", "timeout"],
                    "additionalProperties": False,
                    "properties": {kind: {"type": "integer", "minimum": 0}
                                   for kind in ("success", "failure", "offline", "timeout")},
                },
            },
        },
        "Health": _health_schema(),
        "OpenApiDocument": {
            "type": "object",
            "description": "This document.",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"type": "string"}, "info": {"type": "object"},
                           "paths": {"type": "object"}},
        },
        "Page": {"type": "string", "description": "a self-contained HTML page"},
        "Metrics": {"type": "string", "pattern": "^# (HELP|TYPE) mpush_alloc_",
                    "description": "Prometheus text exposition format 0.0.4; README.md"
                                   " (Metrics) lists every metric"},
    }


def _health_schema() -> Json:
    count: Json = {"type": "integer", "minimum": 0}
    text_or_null: Json = {"type": ["string", "null"]}
    per_gateway: Json = {
        "type": "object",
        "required": ["connected", "configured", "pending"],
        "additionalProperties": False,
        "properties": {"connected": count, "configured": count, "pending": count},
    }
    return {
        "type": "object",
        "description": "In-memory state only: cheap to poll, answers the same during an outage."
                       " `ok`/`degraded` come with 200, `unavailable` with 503.",
        "required": ["status", "reasons", "draining", "allocation", "zookeeper", "redis",
                     "gateways"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "reasons": {"type": "array", "items": {"type": "string"},
                        "description": "why not ok, for people; the blocking ones first"},
            "draining": {"type": "boolean"},
            "allocation": {
                "type": "object",
                "required": ["servers", "stale", "lastRefreshAgeSeconds", "lastRefreshError",
                             "refreshes"],
                "additionalProperties": False,
                "properties": {
                    "servers": count,
                    "stale": {"type": "boolean"},
                    "lastRefreshAgeSeconds": {"type": ["number", "null"], "minimum": 0},
                    "lastRefreshError": text_or_null,
                    "refreshes": count,
                },
            },
            "zookeeper": {
                "type": "object",
                "required": ["state", "sessionId", "initialized", "connectionServers",
                             "gatewayServers"],
                "additionalProperties": False,
                "properties": {
                    "state": {"type": "string", "enum": ["connecting", "connected", "suspended",
                                                         "lost", "stopped"]},
                    "sessionId": {"type": ["string", "null"], "pattern": "^0x[0-9a-f]+$"},
                    "initialized": {"type": "boolean"},
                    "connectionServers": count,
                    "gatewayServers": count,
                },
            },
            "redis": {
                "type": "object",
                "required": ["mode", "reachable", "lastError"],
                "additionalProperties": False,
                "properties": {
                    "mode": {"type": "string", "enum": ["single", "sentinel", "cluster"]},
                    "reachable": {"type": "boolean"},
                    "lastError": text_or_null,
                },
            },
            "gateways": {
                "type": "object",
                "required": ["known", "connected", "connections", "configuredConnections",
                             "pending", "servers"],
                "additionalProperties": False,
                "properties": {
                    "known": count,
                    "connected": count,
                    "connections": count,
                    "configuredConnections": count,
                    "pending": count,
                    "servers": {"type": "object", "additionalProperties": per_gateway},
                },
            },
        },
    }


def _components() -> Json:
    return {
        "schemas": _schemas(),
        "headers": {
            "Retry-After": {"description": "seconds to wait (`mp.alloc.retry-after`)",
                            "required": True, "schema": {"type": "integer", "minimum": 0}},
            "Allow": {"description": "the methods the path accepts", "required": True,
                      "schema": {"type": "string"}},
            "WWW-Authenticate": {"description": "`Bearer realm=\"mpush-alloc\"`",
                                 "required": True, "schema": {"type": "string"}},
            "Content-Length": {"description": "the size of the body GET would send",
                               "required": True, "schema": {"type": "integer", "minimum": 0}},
        },
        "responses": {
            "NotFound": _error_response(
                "No resource at this path (any path not listed here, `//`, `/push/`,"
                " `/health/x` …)."),
            "MethodNotAllowed": _error_response(
                "Method not allowed on this path; `allow` and the `Allow` header list the"
                " methods it accepts.", headers={"Allow": _ref("headers", "Allow")}),
            "RequestTimeout": _error_response(
                "The request line and headers were not all in within"
                " `mp.alloc.request-head-timeout` (10 s); the connection is closed. Any"
                " path and method."),
            "ContentTooLarge": _error_response(
                "A body over `mp.alloc.max-request-size` (`limit`, bytes), refused from its"
                " `Content-Length` before it is read, or while a chunked body streams; the"
                " connection is closed. Any path and method."),
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "With `mp.alloc.push-token` set, `/push` requires"
                               " `Authorization: Bearer <token>` (401 otherwise) and the token"
                               " alone decides. Without one, only clients in"
                               " `mp.alloc.push-allow` may push (403 otherwise), browsers"
                               " only from this server's own origin, reached by IP address"
                               " or `localhost`.",
            },
        },
    }


def _common(operation: Json) -> Json:
    """Adds what every operation can answer: a late head (408), a body too large (413)."""
    operation["responses"]["408"] = _ref("responses", "RequestTimeout")
    operation["responses"]["413"] = operation["responses"].get(
        "413", _ref("responses", "ContentTooLarge"))
    return operation


def _not_allowed(path: str, allowed: tuple[str, ...]) -> Json:
    return _common({
        "summary": f"not allowed on {path}: answers 405 (accepted: {', '.join(allowed)})",
        "responses": {"405": _ref("responses", "MethodNotAllowed")},
    })


def _head(get: Json) -> Json:
    """HEAD: GET's statuses and headers, without a body, with GET's Content-Length."""
    responses: Json = {}
    for status, answer in get["responses"].items():
        if "$ref" in answer or status in ("408", "413"):
            continue
        headers = {**answer.get("headers", {})}
        headers["Content-Length"] = _ref("headers", "Content-Length")
        responses[status] = {"description": answer["description"] + " (no body)",
                             "headers": headers}
    return _common({"summary": get["summary"] + " (HEAD: status and headers only)",
                    **({"description": get["description"]} if "description" in get else {}),
                    "responses": responses})


def _paths() -> Json:
    retry_after = {"Retry-After": _ref("headers", "Retry-After")}
    root_get = _common({
        "summary": "the connection servers, least loaded first",
        "description": "What the mpush client SDK polls. Every GET counts one allocation to"
                       " the server it lists first (HEAD counts nothing). Served from the"
                       " last known list through ZooKeeper and Redis outages. Always open.",
        "responses": {
            "200": {"description": "`ip:port,ip:port`, least loaded first",
                    "content": {"text/plain; charset=utf-8": {
                        "schema": _ref("schemas", "Allocation")}}},
            "503": _error_response("no connection server was ever known",
                                   headers=retry_after),
        },
    })
    push_post = _common({
        "summary": "send a push and answer with every outcome",
        "description": "Answers once every outcome is known. A request naming more distinct"
                       " users than `mp.alloc.max-users-per-push` is 413 (`field: userIds`,"
                       " `limit`), content too large for a gateway frame"
                       " (`mp.core.max-packet-size`) is 413 (`field: content`), both before"
                       " any push is sent. 500 only a bug produces (an unexpected error"
                       " while pushing): it is declared for completeness, never expected.",
        "security": [{"bearer": []}, {}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", "PushRequest")}},
        },
        "responses": {
            "200": {"description": "every outcome",
                    "content": {"application/json": {
                        "schema": _ref("schemas", "PushAnswer")}}},
            "400": _error_response("a body refused: invalid JSON or UTF-8, lone surrogates,"
                                   " wrong types, missing target or content, blank user id,"
                                   " `taskId` on a single push, empty `tags`; `field` names"
                                   " the culprit"),
            "401": _error_response("a push token is configured and the request did not"
                                   " carry it", headers={
                                       "WWW-Authenticate": _ref("headers", "WWW-Authenticate")}),
            "403": _error_response("no push token configured, and the client is not in"
                                   " `mp.alloc.push-allow`, or a browser request from another"
                                   " origin or through a host name"),
            "413": _error_response("a body over `mp.alloc.max-request-size` (`limit`), more"
                                   " distinct users than `mp.alloc.max-users-per-push`"
                                   " (`field: userIds`, `limit`), or content too large for a"
                                   " gateway frame (`field: content`)"),
            "415": _error_response("a multipart form body (`field: body`)"),
            "500": _error_response("an internal error while pushing: only a bug produces"
                                   " it"),
            "503": _error_response("the request would take the pushes in flight past"
                                   " `mp.alloc.max-inflight-pushes` (`limit`); nothing was"
                                   " sent", headers=retry_after),
        },
    })
    health_get = _common({
        "summary": "what the daemon depends on, and whether it can serve",
        "description": "`Cache-Control: no-store`. Reads in-memory state only.",
        "responses": {
            "200": {"description": "allocations are served: `ok`, or `degraded` (see"
                                   " `reasons`)",
                    "content": {"application/json": {"schema": _ref("schemas", "Health")}}},
            "503": {"description": "`unavailable`: no connection server known yet, or"
                                   " draining",
                    "content": {"application/json": {"schema": _ref("schemas", "Health")}}},
        },
    })
    page_get = _common({
        "summary": "the push page (self-contained HTML)",
        "responses": {"200": {"description": "the page", "content": {
            "text/html; charset=utf-8": {"schema": _ref("schemas", "Page")}}}},
    })
    openapi_get = _common({
        "summary": "this document",
        "responses": {"200": {"description": "the OpenAPI document", "content": {
            "application/json": {"schema": _ref("schemas", "OpenApiDocument")}}}},
    })
    metrics_get = _common({
        "summary": "Prometheus metrics (text format 0.0.4)",
        "description": "`Cache-Control: no-store`. Reads in-memory state only. On this port"
                       " unless `mp.alloc.admin-port` is set: then on that port only, and"
                       " here 404.",
        "responses": {"200": {"description": "the metrics", "content": {
            "text/plain; version=0.0.4; charset=utf-8": {
                "schema": _ref("schemas", "Metrics")}}}},
    })
    accepted: dict[str, Json] = {
        "/": {"get": root_get, "head": _head(root_get)},
        "/push": {"post": push_post},
        "/health": {"get": health_get, "head": _head(health_get)},
        "/index.html": {"get": page_get, "head": _head(page_get)},
        "/openapi.json": {"get": openapi_get, "head": _head(openapi_get)},
        "/metrics": {"get": metrics_get, "head": _head(metrics_get)},
    }
    paths: Json = {}
    for path, operations in accepted.items():
        allowed = tuple(m.upper() for m in METHODS if m in operations)
        paths[path] = {method: operations.get(method) or _not_allowed(path, allowed)
                       for method in METHODS}
    return paths


def build_document() -> Json:
    """The OpenAPI document (a fresh dict, ready for JSON)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "mpush-alloc",
            "version": "0.1.0",
            "description": (
                "The alloc server of an mpush push cluster. Every path lists every method:"
                " the ones it accepts with their answers, the others with 405. Errors are"
                " JSON (`Error`). Any path not listed answers 404 (`NotFound`). Every"
                " operation may answer 408 (request head too slow) and 413 (body too large)."
                " 500 is declared on `POST /push` only, where a bug in pushing would produce"
                " it; no test request can. A request that is not valid HTTP/1.1 (malformed"
                " request line or header) gets twisted.web's bare `400 Bad Request` and the"
                " connection closed: it reaches no operation, so it is not listed."
            ),
        },
        "paths": _paths(),
        "components": _components(),
    }


class OpenApiResource(Resource):
    """Serves the document at ``/openapi.json`` (``GET``/``HEAD``), ``application/json``."""

    isLeaf = True

    def __init__(self, document: Json | None = None) -> None:
        super().__init__()
        doc = build_document() if document is None else document
        self._body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        self._length = b"%d" % len(self._body)

    def render(self, request: Request) -> bytes:
        if request.postpath:
            path = request.path.decode("utf-8", "replace")
            return json_error(request, 404, f"no resource at {path}")
        if request.method not in _ALLOWED:
            return method_not_allowed(request, _ALLOWED)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        if request.method == b"HEAD":
            request.setHeader(b"content-length", self._length)
            return b""
        return self._body
