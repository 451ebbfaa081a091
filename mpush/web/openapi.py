"""``/openapi.json``: the OpenAPI 3.1 document of the HTTP API, and its resource.

The document is built here (paths, components) and in
:mod:`mpush.web.openapi_schemas` (the schemas), as a dict, from the same
facts as the resources: every path, every method (the accepted ones with their real
answers, the others with ``405``), every status each can answer, the
headers that come with them. ``tests/test_openapi.py`` keeps it true: it
sends real requests to an in-process daemon and checks each answer against
the document, and checks that every declared status (but ``500``) is
actually produced.
"""

from __future__ import annotations

import json

from twisted.web.server import Request

from mpush.web.base import JsonLeaf
from mpush.web.openapi_schemas import Json, ref, schemas

__all__ = ["OPENAPI_VERSION", "OpenApiResource", "build_document"]

OPENAPI_VERSION = "3.1.0"
METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")


def _error_response(description: str, *, headers: Json | None = None) -> Json:
    answer: Json = {
        "description": description,
        "content": {"application/json": {"schema": ref("schemas", "Error")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _components() -> Json:
    return {
        "schemas": schemas(),
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
                " methods it accepts.", headers={"Allow": ref("headers", "Allow")}),
            "BadRequest": _error_response(
                "Not valid HTTP/1.1: a malformed request line, header or chunk, or a body"
                " whose length is ambiguous (a `Transfer-Encoding` other than `chunked`"
                " alone, or with a `Content-Length`: RFC 9112); the connection is closed."
                " Any path and method."),
            "UriTooLong": _error_response(
                "A request line over 16 KiB (`limit`, bytes); the connection is closed."
                " Any path and method."),
            "HeadTooLarge": _error_response(
                "A header line over 16 KiB, or a request head over 16 KiB in all (`limit`,"
                " bytes); the connection is closed. Any path and method."),
            "RequestTimeout": _error_response(
                "The request line and headers were not all in within"
                " `mp.alloc.request-head-timeout` (10 s), or the body within"
                " `mp.alloc.request-body-timeout` (30 s) of the headers' end; the connection"
                " is closed. Any path and method."),
            "ContentTooLarge": _error_response(
                "A body over `mp.alloc.max-request-size` (`limit`, bytes), refused from its"
                " `Content-Length` before it is read, or while a chunked body streams; the"
                " connection is closed. Any path and method."),
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "With `mp.alloc.push-token` set, `/push`, `/cluster` and"
                               " `/users/{userId}` require `Authorization: Bearer <token>`"
                               " (401 otherwise) and the token alone decides. Without one,"
                               " only clients in `mp.alloc.push-allow` may use them (403"
                               " otherwise), browsers only from this server's own origin,"
                               " reached by IP address or `localhost`.",
            },
        },
    }


#: What every operation can answer before a resource sees the request, by
#: status (an operation's own 400 or 413 says so too).
_CONNECTION_LEVEL = {"400": "BadRequest", "408": "RequestTimeout", "413": "ContentTooLarge",
                     "414": "UriTooLong", "431": "HeadTooLarge"}


def _common(operation: Json) -> Json:
    """Adds what every operation can answer: not HTTP/1.1 (400), a late head (408), a
    body too large (413), a request line (414) or head (431) too long."""
    responses = operation["responses"]
    for status, name in _CONNECTION_LEVEL.items():
        responses.setdefault(status, ref("responses", name))
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _not_allowed(path: str, allowed: tuple[str, ...]) -> Json:
    return _common({
        "summary": f"not allowed on {path}: answers 405 (accepted: {', '.join(allowed)})",
        "responses": {"405": ref("responses", "MethodNotAllowed")},
    })


def _head(get: Json) -> Json:
    """HEAD: GET's statuses and headers, without a body, with GET's Content-Length."""
    responses: Json = {}
    for status, answer in get["responses"].items():
        if "$ref" in answer or status in _CONNECTION_LEVEL:
            continue
        headers = {**answer.get("headers", {})}
        headers["Content-Length"] = ref("headers", "Content-Length")
        responses[status] = {"description": answer["description"] + " (no body)",
                             "headers": headers}
    same = {key: get[key] for key in ("description", "security", "parameters") if key in get}
    return _common({"summary": get["summary"] + " (HEAD: status and headers only)",
                    **same, "responses": responses})


def _retry_after() -> Json:
    return {"Retry-After": ref("headers", "Retry-After")}


def _allocation_get(what: str, description: str) -> Json:
    """``GET /`` (connection servers) or ``GET /ws`` (WebSocket servers)."""
    return _common({
        "summary": f"the {what}s, least loaded first",
        "description": description + " Every GET counts one allocation to"
                       " the server it lists first (HEAD counts nothing). Served from the"
                       " last known list through ZooKeeper and Redis outages. Always open.",
        "responses": {
            "200": {"description": "`ip:port,ip:port`, least loaded first",
                    "content": {"text/plain; charset=utf-8": {
                        "schema": ref("schemas", "Allocation")}}},
            "503": _error_response(f"no {what} was ever known", headers=_retry_after()),
        },
    })


def _root_get() -> Json:
    return _allocation_get("connection server", "What the mpush client SDK polls.")


def _ws_get() -> Json:
    return _allocation_get(
        "WebSocket server", "For browsers and mini-programs: the nodes under `/cluster/ws`,"
        " ordered by the online count of their IP (`mp:oul:<ip>`, shared with the"
        " connection server of that IP), with handouts counted apart from `GET /`'s.")


def _push_post() -> Json:
    return _common({
        "summary": "send a push and answer with every outcome",
        "description": "Access is checked from the headers: a request refused (401, 403)"
                       " is answered at once, its body unread, and the connection closed."
                       " Answers once every outcome is known. A request naming more distinct"
                       " users than `mp.alloc.max-users-per-push` is 413 (`field: userIds`,"
                       " `limit`), content too large for a gateway frame"
                       " (`mp.core.max-packet-size`) is 413 (`field: content`), both before"
                       " any push is sent. 500 only a bug produces (an unexpected error"
                       " while pushing): it is declared for completeness, never expected.",
        "security": [{"bearer": []}, {}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref("schemas", "PushRequest")}},
        },
        "responses": {
            "200": {"description": "every outcome",
                    "content": {"application/json": {
                        "schema": ref("schemas", "PushAnswer")}}},
            **_push_errors(),
        },
    })


def _access_errors() -> Json:
    """401 and 403: the access rule of `/push` and the operator endpoints."""
    return {
        "401": _error_response("a push token is configured and the request did not"
                               " carry it", headers={
                                   "WWW-Authenticate": ref("headers", "WWW-Authenticate")}),
        "403": _error_response("no push token configured, and the client is not in"
                               " `mp.alloc.push-allow`, or a browser request from another"
                               " origin or through a host name"),
    }


def _push_errors() -> Json:
    return {
        "400": _error_response("a body refused: invalid JSON or UTF-8, lone surrogates,"
                               " NaN, Infinity or numbers past a double or 4,300 digits,"
                               " an unknown field (with the closest known one),"
                               " wrong types, missing target or content, blank user id,"
                               " `taskId` on a single push, empty `tags`; `field` names"
                               " the culprit. Or not valid HTTP/1.1 (see `BadRequest`)"),
        **_access_errors(),
        "413": _error_response("a body over `mp.alloc.max-request-size` (`limit`), more"
                               " distinct users than `mp.alloc.max-users-per-push`"
                               " (`field: userIds`, `limit`), or content too large for a"
                               " gateway frame (`field: content`)"),
        "415": _error_response("a multipart form body (`field: body`)"),
        "500": _error_response("an internal error while pushing: only a bug produces"
                               " it"),
        "503": _error_response("the request would take the pushes in flight past"
                               " `mp.alloc.max-inflight-pushes` (`limit`); nothing was"
                               " sent", headers=_retry_after()),
    }


def _health_get() -> Json:
    return _common({
        "summary": "what the daemon depends on, and whether it can serve",
        "description": "`Cache-Control: no-store`. Reads in-memory state only.",
        "responses": {
            "200": {"description": "allocations are served: `ok`, or `degraded` (see"
                                   " `reasons`)",
                    "content": {"application/json": {"schema": ref("schemas", "Health")}}},
            "503": {"description": "`unavailable`: no connection server known yet, or"
                                   " draining",
                    "content": {"application/json": {"schema": ref("schemas", "Health")}}},
        },
    })


def _json_ok(description: str, schema: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": ref("schemas", schema)}}}


def _operator_get(summary: str, description: str, answer: Json) -> Json:
    """A read-only operator endpoint: `/push`'s access rule, never cached."""
    return _common({
        "summary": summary,
        "description": description + " `Cache-Control: no-store`. `/push`'s access rule.",
        "security": [{"bearer": []}, {}],
        "responses": {"200": answer, **_access_errors()},
    })


def _cluster_get() -> Json:
    return _operator_get(
        "every server as this daemon sees it (operators)",
        "Reads in-memory state only: the status snapshot `/health` and `/metrics` render.",
        _json_ok("connection servers as allocated, gateway servers, ZooKeeper, Redis, the last"
                 " refresh", "Cluster"))


def _config_get() -> Json:
    return _operator_get(
        "the settings in effect, and where each came from (operators)",
        "Made once at start. Secrets (`mp.redis.password`, `mp.zk.digest`,"
        " `mp.alloc.push-token`) only as `set` or `unset`.",
        _json_ok("every key of the configuration table, in table order", "Config"))


def _user_id_parameter() -> Json:
    return {
        "name": "userId", "in": "path", "required": True,
        "description": "URL-encoded (`%2F` for a `/` of the id); UTF-8, not blank, at most"
                       " `mp.core.max-packet-size` bytes",
        "schema": {"type": "string", "minLength": 1},
    }


def _users_get() -> Json:
    return _common({
        "summary": "a user's routes, as the Java console's `route` command shows them",
        "description": "Reads `mp:ur:<userId>` from Redis (the only endpoint that does),"
                       " within the Redis connect and reply timeouts. `Cache-Control:"
                       " no-store`. `/push`'s access rule.",
        "security": [{"bearer": []}, {}],
        "parameters": [_user_id_parameter()],
        "responses": {
            "200": {"description": "the routes: one per client type, then the malformed"
                                   " entries",
                    "content": {"application/json": {"schema": ref("schemas",
                                                                   "UserRoutes")}}},
            "400": _error_response("a bad user id: blank, not UTF-8 once URL-decoded, or"
                                   " too long (`field: userId`); or not valid HTTP/1.1"
                                   " (see `BadRequest`)"),
            **_access_errors(),
            "404": _error_response("the user has no route in Redis"),
            "503": _error_response("Redis cannot be read (down, or no answer in time): the"
                                   " reason"),
        },
    })


def _page_get() -> Json:
    return _common({
        "summary": "the console page: cluster, user routes, push (self-contained HTML)",
        "responses": {"200": {"description": "the page", "content": {
            "text/html; charset=utf-8": {"schema": ref("schemas", "Page")}}}},
    })


def _openapi_get() -> Json:
    return _common({
        "summary": "this document",
        "responses": {"200": {"description": "the OpenAPI document", "content": {
            "application/json": {"schema": ref("schemas", "OpenApiDocument")}}}},
    })


def _metrics_get() -> Json:
    return _common({
        "summary": "Prometheus metrics (text format 0.0.4)",
        "description": "`Cache-Control: no-store`. Reads in-memory state only. On this port"
                       " unless `mp.alloc.admin-port` is set: then on that port only, and"
                       " here 404.",
        "responses": {"200": {"description": "the metrics", "content": {
            "text/plain; version=0.0.4; charset=utf-8": {
                "schema": ref("schemas", "Metrics")}}}},
    })


def _paths() -> Json:
    """Every path with every method: the accepted ones, the others as 405."""
    root_get, ws_get, health_get, page_get = _root_get(), _ws_get(), _health_get(), _page_get()
    openapi_get, metrics_get = _openapi_get(), _metrics_get()
    cluster_get, users_get, config_get = _cluster_get(), _users_get(), _config_get()
    accepted: dict[str, Json] = {
        "/": {"get": root_get, "head": _head(root_get)},
        "/ws": {"get": ws_get, "head": _head(ws_get)},
        "/push": {"post": _push_post()},
        "/health": {"get": health_get, "head": _head(health_get)},
        "/index.html": {"get": page_get, "head": _head(page_get)},
        "/openapi.json": {"get": openapi_get, "head": _head(openapi_get)},
        "/metrics": {"get": metrics_get, "head": _head(metrics_get)},
        "/cluster": {"get": cluster_get, "head": _head(cluster_get)},
        "/users/{userId}": {"get": users_get, "head": _head(users_get)},
        "/config": {"get": config_get, "head": _head(config_get)},
    }
    paths: Json = {}
    for path, operations in accepted.items():
        allowed = tuple(m.upper() for m in METHODS if m in operations)
        paths[path] = {method: operations.get(method) or _not_allowed(path, allowed)
                       for method in METHODS}
        if "{userId}" in path:  # every operation of the path declares its parameter
            for operation in paths[path].values():
                operation.setdefault("parameters", [_user_id_parameter()])
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
                " operation may answer 400 (not valid HTTP/1.1), 408 (request head or body"
                " too slow), 413 (body too large), 414 (request line too long) and 431"
                " (head too large), each closing the connection. `OPTIONS *` (or any"
                " method on `*`) answers 405 with an empty `Allow`."
                " `/cluster` and `/users/{userId}` are the operator API, under `/push`'s"
                " access rule."
                " 500 is declared on `POST /push` only, where a bug in pushing would produce"
                " it; no test request can."
            ),
        },
        "paths": _paths(),
        "components": _components(),
    }


class OpenApiResource(JsonLeaf):
    """Serves the document at ``/openapi.json`` (``GET``/``HEAD``), ``application/json``."""

    def __init__(self, document: Json | None = None) -> None:
        super().__init__()
        doc = build_document() if document is None else document
        self._body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        return self._body
