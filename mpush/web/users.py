"""``GET /users/{userId}``: a user's routes, as the Java console's ``route`` command shows them.

One row per client type (online or not, gateway ``host:port``, the
connection server on that gateway's host, ``osName``, ``clientVersion``,
...) and one per malformed entry of ``mp:ur:<userId>`` (its field and
why); read from Redis on each request by
:class:`mpush.services.user_routes.UserRouteReader`, the only endpoint that
reads Redis. ``404`` for a user without any route, ``503`` when Redis
cannot be read, ``400`` for a bad user id.

The user id is the one path segment after ``/users/``, URL-decoded (``%2F``
is a ``/`` of the id), UTF-8, not blank (the ``/push`` rule) and at most
``max_user_id`` bytes. Access is ``/push``'s (:mod:`mpush.web.push_access`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from mpush.interfaces import RouteLookup
from mpush.services.user_routes import RouteRow, RoutesUnavailable, UserRoutes
from mpush.web.base import JsonResource
from mpush.web.errors import json_answer, json_error, not_found
from mpush.web.push_access import PushAccess
from mpush.web.push_body import is_blank

__all__ = ["UsersResource"]


class UsersResource(JsonResource):
    """``/users/{userId}`` (``GET``, ``HEAD``); ``/users`` alone and deeper paths are 404."""

    isLeaf = True  # the rest of the path is the user id
    log = Logger()

    def __init__(self, reader: RouteLookup, access: PushAccess, *, max_user_id: int) -> None:
        super().__init__()
        self._reader = reader
        self._access = access
        self.max_user_id = max_user_id

    def render(self, request: Request) -> bytes | int:
        if len(request.postpath) != 1:
            return not_found(request)  # "/users", "/users/a/b"
        return super().render(request)

    def render_GET(self, request: Request) -> bytes | int:
        refusal = self._access.check(request, "query")
        if refusal is not None:
            return refusal
        raw = unquote_to_bytes(request.postpath[0])
        problem = self._problem(raw)
        if problem is not None:
            return json_error(request, 400, problem, field="userId")
        user_id = raw.decode("utf-8")
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def finish(body: bytes) -> None:
            if gone:
                return  # the client left: nobody to answer
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

        d = self._reader.read(user_id)
        d.addCallbacks(lambda found: self._found(request, found),
                       lambda failure: self._unavailable(request, failure))
        d.addCallback(finish)
        return NOT_DONE_YET

    def _problem(self, raw: bytes) -> str | None:
        if len(raw) > self.max_user_id:
            return (f"userId is {len(raw)} bytes long, over the limit of {self.max_user_id}"
                    " (mp.core.max-packet-size: no client can bind a longer one)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"userId is not valid UTF-8 once URL-decoded (byte {exc.start})"
        return "userId is empty" if is_blank(text) else None

    def _found(self, request: Request, found: UserRoutes) -> bytes:
        if not found.rows:
            return json_error(request, 404, f"user {found.user_id!r} has no route in Redis"
                              " (offline on every client type, or never connected)")
        return json_answer(request, {
            "userId": found.user_id,
            "online": found.online,
            "routes": [_row(r) for r in found.rows],
        })

    def _unavailable(self, request: Request, failure: Failure) -> bytes:
        if failure.check(RoutesUnavailable):
            reason = failure.getErrorMessage()
        else:
            # A bug, not Redis: logged in full, and still an answer (never a 500).
            self.log.failure("GET /users: reading the routes failed", failure)
            reason = f"internal error ({failure.type.__name__})"
        return json_error(request, 503, f"cannot read the routes from Redis: {reason}")


def _row(row: RouteRow) -> dict[str, Any]:
    r = row.route
    if r is None:
        return {"field": row.field, "clientType": None, "online": False, "gateway": None,
                "connectionServers": [], "osName": None, "clientVersion": None,
                "deviceId": None, "connId": None,
                "malformed": {"reason": row.problem, "value": row.value}}
    return {
        "field": row.field,
        "clientType": r.client_type,
        "online": r.online,
        "gateway": r.gateway if r.host is not None and r.port is not None else None,
        "connectionServers": list(row.connection_servers),
        "osName": r.os_name,
        "clientVersion": r.client_version,
        "deviceId": r.device_id,
        "connId": r.conn_id,
        "malformed": None,
    }
