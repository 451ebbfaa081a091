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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.web.errors import json_error, method_not_allowed

_ALLOWED = (b"GET", b"HEAD")
_JSON = b"application/json"

OK = "ok"
DEGRADED = "degraded"
UNAVAILABLE = "unavailable"


# -- what is read (typed so that unit tests can pass fakes) ------------------


class ZkState(Protocol):
    """What is read of :class:`mpush.cluster.zookeeper.ZkWatcher`."""

    state: str
    session_id: int | None
    initialized: bool

    def connection_servers(self) -> Mapping[str, Any]: ...
    def gateway_servers(self) -> Mapping[str, Any]: ...


class RedisState(Protocol):
    """What is read of :class:`mpush.cluster.redis.RedisService`. ``password`` is
    read only to scrub it from error texts, should one ever carry it."""

    mode: str
    healthy: bool
    last_error: str | None
    password: str | None


class GatewayState(Protocol):
    """What is read of :class:`mpush.cluster.gateways.GatewayPool`."""

    def status(self) -> Mapping[str, Mapping[str, int]]: ...


class RefreshState(Protocol):
    """What is read of :class:`mpush.services.refresher.Refresher`."""

    last_success: float | None
    last_error: str | None
    stale: bool
    refreshes: int


class PolicyState(Protocol):
    """What is read of the allocation policy (:class:`mpush.services.refresher.BalancePolicy`)."""

    @property
    def body(self) -> bytes | None: ...
    @property
    def servers(self) -> tuple[Any, ...]: ...


class Clock(Protocol):
    def seconds(self) -> float: ...


# -- the resource -------------------------------------------------------------


class HealthResource(Resource):
    """Leaf at ``/health``.

    ``clock`` must be the reactor the refresher stamps ``last_success``
    with (its ``seconds()``). ``draining`` is a flag or a callable read on
    every request; the :attr:`draining` property can also be set later.
    """

    isLeaf = True

    def __init__(
        self,
        zk: ZkState,
        cache: RedisState,
        gateways: GatewayState,
        refresher: RefreshState,
        policy: PolicyState,
        *,
        clock: Clock | None = None,
        draining: Callable[[], bool] | bool = False,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = cast(Clock, default_reactor)
        self._zk = zk
        self._cache = cache
        self._gateways = gateways
        self._refresher = refresher
        self._policy = policy
        self._clock = clock
        self._draining = draining

    @property
    def draining(self) -> bool:
        d = self._draining
        return bool(d() if callable(d) else d)

    @draining.setter
    def draining(self, value: Callable[[], bool] | bool) -> None:
        self._draining = value

    def render(self, request: Request) -> bytes:
        if request.postpath:
            # Leaf: "/health/" and "/health/x" land here; only "/health" is the API.
            path = request.path.decode("utf-8", "replace")
            return json_error(request, 404, f"no resource at {path}")
        method = request.method
        if method not in _ALLOWED:
            return method_not_allowed(request, _ALLOWED)
        report = self.report()
        body = json.dumps(report, separators=(",", ":")).encode()
        request.setResponseCode(503 if report["status"] == UNAVAILABLE else 200)
        request.setHeader(b"content-type", _JSON)
        # A cached "ok" would hide an outage from whoever polls through a cache.
        request.setHeader(b"cache-control", b"no-store")
        if method == b"HEAD":
            # Same status and length as GET, without the body (returning it
            # would make twisted.web log a warning and drop it anyway).
            request.setHeader(b"content-length", b"%d" % len(body))
            return b""
        return body

    # -- the report -----------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The health document (a dict ready for JSON)."""
        unavailable: list[str] = []
        degraded: list[str] = []

        draining = self.draining
        if self._policy.body is None:
            unavailable.append("no connection server known yet")
        if draining:
            unavailable.append("draining")

        zk = self._zk
        session = zk.session_id
        if zk.state != "connected":
            degraded.append(f"zookeeper {zk.state}")
        elif not zk.initialized:
            degraded.append("zookeeper view not loaded yet")
        zk_part = {
            "state": zk.state,
            "sessionId": None if session is None else f"0x{session:x}",
            "initialized": zk.initialized,
            "connectionServers": len(zk.connection_servers()),
            "gatewayServers": len(zk.gateway_servers()),
        }

        cache = self._cache
        if not cache.healthy:
            degraded.append("redis unreachable")
        redis_part = {
            "mode": cache.mode,
            "reachable": bool(cache.healthy),
            "lastError": self._scrub(cache.last_error),
        }

        gateways_part = self._gateways_part(degraded)

        ref = self._refresher
        if ref.stale:
            degraded.append("connection server list stale")
        if ref.last_error is not None:
            degraded.append("online counts not refreshed")
        age = None
        if ref.last_success is not None:
            # Clamped: a clock stepped back must not show a negative age.
            age = round(max(0.0, self._clock.seconds() - ref.last_success), 3)
        alloc_part = {
            "servers": len(self._policy.servers),
            "stale": bool(ref.stale),
            "lastRefreshAgeSeconds": age,
            "lastRefreshError": self._scrub(ref.last_error),
            "refreshes": ref.refreshes,
        }

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
            "allocation": alloc_part,
            "zookeeper": zk_part,
            "redis": redis_part,
            "gateways": gateways_part,
        }

    def _gateways_part(self, degraded: list[str]) -> dict[str, Any]:
        status = self._gateways.status()
        servers = {address: {"connected": int(s.get("connected", 0)),
                             "configured": int(s.get("configured", 0)),
                             "pending": int(s.get("pending", 0))}
                   for address, s in status.items()}
        down = sum(1 for s in servers.values() if s["connected"] == 0)
        partial = sum(1 for s in servers.values() if 0 < s["connected"] < s["configured"])
        known = len(servers)
        # One reason per kind, not per server: the list stays short with a
        # large cluster; "servers" below says which.
        if known == 0:
            degraded.append("no gateway server known")
        if down:
            degraded.append(f"gateway servers not connected: {down} of {known}")
        if partial:
            degraded.append(f"gateway servers partly connected: {partial} of {known}")
        # A frozen or overloaded server keeps its connections: only its
        # timeouts tell (reset by its next answer). Absent from fakes: 0.
        silent = sum(1 for s in status.values() if int(s.get("unanswering", 0)) > 0)
        if silent:
            degraded.append(f"gateway servers not answering: {silent} of {known}")
        return {
            "known": known,
            "connected": known - down,
            "connections": sum(s["connected"] for s in servers.values()),
            "configuredConnections": sum(s["configured"] for s in servers.values()),
            "pending": sum(s["pending"] for s in servers.values()),
            "servers": servers,
        }

    def _scrub(self, text: str | None) -> str | None:
        # Defence in depth: RedisService's messages never carry the password,
        # but a health page is often open wider than the logs.
        password = self._cache.password
        if text is not None and password:
            text = text.replace(password, "***")
        return text
