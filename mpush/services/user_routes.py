"""A user's routes as an operator asks for them (``GET /users/{userId}``).

What the Java console's ``route:<uid>`` command shows (``AdminHandler``:
every ClientLocation of ``mp:ur:<userId>``), read from Redis on each call,
never from the push client's route cache: the usable routes, one per client
type (:func:`mpush.routes.parse_routes`), and every entry that cannot be
used, with its field and why. Each route's gateway is matched to the
connection server(s) on its host in the ZooKeeper view (the gateway server
runs in the connection server's process; nothing in ZooKeeper links the two
nodes but the host).

A read is bounded by ``timeout`` (the daemon passes the Redis connect plus
reply timeouts, within which the Redis client already fails); when Redis
cannot answer, the Deferred fails with :class:`RoutesUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from mpush.arguments import require_positive
from mpush.interfaces import ClusterView, RedisClient
from mpush.reactor import default_reactor
from mpush.routes import ROUTE_KEY_PREFIX, Route, parse_routes

__all__ = ["RouteRow", "RoutesUnavailable", "UserRouteReader", "UserRoutes"]

#: How much of a malformed entry's value is shown.
VALUE_PREVIEW = 200


class RoutesUnavailable(Exception):
    """Redis could not be read; the message says why (never the password)."""


@dataclass(frozen=True)
class RouteRow:
    """One entry of ``mp:ur:<userId>``: a usable route, or a malformed entry."""

    field: str  # the hash field (the client type, as the Java server writes it)
    route: Route | None  # None: malformed
    connection_servers: tuple[str, ...] = ()  # served ip:port on the gateway's host
    problem: str | None = None  # malformed: why
    value: str | None = None  # malformed: the value, shortened


@dataclass(frozen=True)
class UserRoutes:
    user_id: str
    rows: tuple[RouteRow, ...]  # usable routes by client type, then malformed entries by field

    @property
    def online(self) -> bool:
        return any(r.route is not None and r.route.online for r in self.rows)


class UserRouteReader:
    """Reads one user's routes from Redis for the operator API."""

    def __init__(self, redis: RedisClient, view: ClusterView | None, *, timeout: float,
                 reactor: Any = None) -> None:
        require_positive(timeout=timeout)
        self._redis = redis
        self._view = view
        self._timeout = timeout
        self._reactor = default_reactor(reactor)

    def read(self, user_id: str) -> Deferred[UserRoutes]:
        """The routes of ``user_id`` (no rows: no route at all); fails with RoutesUnavailable."""
        d = maybeDeferred(self._redis.hgetall, ROUTE_KEY_PREFIX + user_id)
        d.addTimeout(self._timeout, self._reactor)
        d.addCallbacks(self._routes, self._unavailable, callbackArgs=(user_id,))
        return d

    def _routes(self, fields: Mapping[str, str], user_id: str) -> UserRoutes:
        routes, bad = parse_routes(fields)
        servers = self._servers_by_host()
        rows = [RouteRow(r.field, r, servers.get(r.host or "", ())) for r in routes]
        rows += [RouteRow(field, None, problem=why, value=_preview(value))
                 for field, value, why in sorted(bad)]
        return UserRoutes(user_id, tuple(rows))

    def _servers_by_host(self) -> dict[str, tuple[str, ...]]:
        if self._view is None:
            return {}
        found: dict[str, set[str]] = {}
        for node in self._view.connection_servers().values():
            served = f"{node.public_host}:{node.port}"  # as the refresher serves it
            for host in {node.host, node.public_host}:
                found.setdefault(host, set()).add(served)
        return {host: tuple(sorted(addresses)) for host, addresses in found.items()}

    def _unavailable(self, failure: Failure) -> Failure:
        # The Redis client logs outages itself (once per state change).
        if failure.check(defer.TimeoutError):
            message = f"no answer from Redis within {self._timeout:g} s"
        else:
            message = failure.getErrorMessage() or failure.type.__name__
        password = self._redis.password
        if password:
            message = message.replace(password, "***")
        return Failure(RoutesUnavailable(message))


def _preview(value: str) -> str:
    return value if len(value) <= VALUE_PREVIEW else value[:VALUE_PREVIEW] + "..."
