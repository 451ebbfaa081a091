"""Pushing to users and broadcasting through the gateway servers.

This is the job of the Java ``PushClient`` (``mpusher/mpush``
``mpush-client``, 0.8.x): look a user's routes up in Redis (``mp:ur:<userId>``,
one ClientLocation JSON per client type), send one GATEWAY_PUSH per online
client type to the gateway server holding it, and map the answers to
success / failure / offline / timeout. A broadcast goes to every gateway
server once.

Usable as a library on its own: :class:`PushClient` needs only something with
``request(address, build, timeout)`` and ``addresses()`` (``mpush.gateway.
GatewayPool``) and something with ``hgetall(key)`` (``mpush.cache.
RedisService``). Everything runs on the reactor thread and never blocks.

Where we differ from the Java client, and why (see docs/push-client.md):

* A route change is resent once, within the original deadline (Java resends
  with a fresh full timeout, and again on every further route change).
* Locations that say "offline" (or no location at all) are cached only for
  ``negative_route_ttl`` (1 s): nothing would tell us when the user comes
  back, whereas a stale *online* route is corrected by the gateway's OFFLINE
  or ROUTER_CHANGE answer. Java drops the entry on every offline result,
  i.e. caches none of it.
* A broadcast waits for every gateway's OK, taskId or not, and reports one
  result per gateway (Java: the first answer ends it; with a taskId it is
  "success" as soon as written).
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.config.keys import default
from mpush.protocol import (
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_TIMEOUT_MS,
    ERR_OFFLINE,
    ERR_ROUTER_CHANGE,
    ERROR_REASONS,
    MIN_TIMEOUT_MS,
    AckModel,
    _java_is_blank,
    broadcast_packet,
    client_type_of,
    single_push_packet,
)

__all__ = [
    "DEFAULT_BROADCAST_TIMEOUT",
    "DEFAULT_NEGATIVE_CACHE_SIZE",
    "DEFAULT_NEGATIVE_ROUTE_TTL",
    "DEFAULT_ROUTE_CACHE_SIZE",
    "DEFAULT_ROUTE_TTL",
    "FAILURE",
    "OFFLINE",
    "ROUTE_KEY_PREFIX",
    "SUCCESS",
    "TIMEOUT",
    "GatewayPoolLike",
    "GatewayReplyLike",
    "PushClient",
    "PushResult",
    "RedisLike",
    "Route",
    "RouteCache",
    "parse_route",
    "parse_routes",
]

log = Logger(namespace="mpush.push")

STOPPING: Final = "daemon stopping"  # the gateway detail of requests expired at shutdown

#: The user route hash (Java ``CacheKeys.getUserRouteKey``).
ROUTE_KEY_PREFIX: Final = "mp:ur:"
#: The Java client's route cache lifetime (Guava, 5 minutes after write).
DEFAULT_ROUTE_TTL: Final = 300.0
#: Lifetime of a lookup that found a user offline on some client type (or
#: not at all): short, because no answer would ever correct it; long enough
#: to spare Redis a burst of pushes to the same absent user.
DEFAULT_NEGATIVE_ROUTE_TTL: Final = 1.0
DEFAULT_ROUTE_CACHE_SIZE: Final = 100_000
#: Bound on the offline/no-route answers kept (each for the negative TTL):
#: about 3 s of pushes to absent users at the daemon's top rate.
DEFAULT_NEGATIVE_CACHE_SIZE: Final = 10_000
#: A gateway answers a broadcast once it has pushed to all its users, at
#: about 3,000 users/s (flow control): far longer than a single push.
DEFAULT_BROADCAST_TIMEOUT: Final[float] = default("mp.alloc.broadcast-timeout")

# PushResult.result values (Java PushResult codes 1..4).
SUCCESS: Final = "success"
FAILURE: Final = "failure"
OFFLINE: Final = "offline"
TIMEOUT: Final = "timeout"

_INT_FIELD = re.compile(r"[+-]?[0-9]+")  # what Java's Integer.parseInt takes
_DIGITS = re.compile(r"[0-9]{1,5}")
_WARNED_MAX = 1024  # distinct bad route values remembered so each is logged once


# ------------------------------------------------------------------ contracts


class GatewayReplyLike(Protocol):
    """What we read of ``mpush.gateway.GatewayReply``."""

    @property
    def outcome(self) -> str: ...  # "ok" | "error" | "timeout" | "unavailable" | "lost"

    @property
    def gateway(self) -> str: ...

    @property
    def code(self) -> int | None: ...


class GatewayPoolLike(Protocol):
    """What we need of ``mpush.gateway.GatewayPool`` (docs/INTERNALS.md)."""

    def addresses(self) -> list[str]: ...

    def request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> Deferred[Any]: ...  # Deferred[GatewayReplyLike], never errbacks

    def expire_pending(self, detail: str) -> int: ...  # pending requests end "timeout"


class RedisLike(Protocol):
    """What we need of ``mpush.cache.RedisService``."""

    def hgetall(self, key: str) -> Deferred[dict[str, str]]: ...


@dataclass(frozen=True)
class PushResult:
    """The outcome of one push to one user on one client type, or of a broadcast on one gateway.

    ``client_type`` is None when the user had no route at all (or the lookup
    failed); ``gateway`` ("host:port") is the gateway last asked, None when
    none was. ``ms`` is the time since ``push()``/``broadcast()`` was called.
    ``reason`` says briefly why a result is not a success (for logs and
    operators; not a stable API).
    """

    user_id: str | None
    client_type: int | None
    result: str  # SUCCESS | FAILURE | OFFLINE | TIMEOUT
    gateway: str | None
    ms: float
    reason: str | None = None


# --------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """One ClientLocation of a user (a value of the ``mp:ur:<userId>`` hash)."""

    field: str  # the hash field it was read from
    client_type: int  # derived from osName, as the Java client sends it
    host: str | None  # the *gateway* server holding the connection
    port: int | None
    conn_id: str | None  # None: offline on this client type
    os_name: str | None = None
    device_id: str | None = None
    client_version: str | None = None

    @property
    def online(self) -> bool:
        # Java ClientLocation.isOnline: connId != null (an empty one counts).
        return self.conn_id is not None

    @property
    def gateway(self) -> str:
        return f"{self.host}:{self.port}"


def _optional_str(location: Mapping[str, Any], key: str) -> str | None:
    value = location.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # fastjson would coerce a number into a String field
    raise ValueError(f"{key} is not a string: {value!r}")


def parse_route(field: str, value: str) -> Route:
    """One hash entry as a Route; ValueError says why it cannot be used."""
    try:
        location = json.loads(value)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(location, dict):
        raise ValueError("not a JSON object")
    os_name = _optional_str(location, "osName")
    fallback = int(field) if _INT_FIELD.fullmatch(field) else None
    if os_name is None and fallback is None:
        raise ValueError("no osName and the field is not a client type")
    client_type = client_type_of(os_name, fallback=fallback)
    conn_id = _optional_str(location, "connId")
    host = location.get("host")
    port = location.get("port")
    if isinstance(port, str) and _DIGITS.fullmatch(port):
        port = int(port)
    host_ok = isinstance(host, str) and host != ""
    port_ok = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    if conn_id is not None and not (host_ok and port_ok):
        # Online but nowhere to send to.
        raise ValueError(f"bad gateway address host={host!r} port={port!r}")
    return Route(
        field=field,
        client_type=client_type,
        host=host if host_ok else None,
        port=port if port_ok else None,
        conn_id=conn_id,
        os_name=os_name,
        device_id=_optional_str(location, "deviceId"),
        client_version=_optional_str(location, "clientVersion"),
    )


def _preference(route: Route) -> tuple[bool, bool, str]:
    # The field named after the derived type is the one the gateway itself
    # reads (hget mp:ur:<u> <clientType>) when it checks a route; then online.
    return (route.field != str(route.client_type), not route.online, route.field)


def parse_routes(fields: Mapping[str, str]) -> tuple[tuple[Route, ...], list[tuple[str, str, str]]]:
    """The usable routes of a ``mp:ur:`` hash, one per client type, by client type.

    Also returns the unusable entries as ``(field, value, why)``. Two entries
    deriving the same client type (Java keeps one of them, in a HashSet) give
    one route: the one whose field is that type, else an online one, else
    the lowest field.
    """
    by_type: dict[int, Route] = {}
    bad: list[tuple[str, str, str]] = []
    for field, value in fields.items():
        try:
            route = parse_route(field, value)
        except ValueError as e:
            bad.append((field, value, str(e)))
            continue
        known = by_type.get(route.client_type)
        if known is None or _preference(route) < _preference(known):
            by_type[route.client_type] = route
    return tuple(by_type[t] for t in sorted(by_type)), bad


@dataclass
class _Entry:
    routes: tuple[Route, ...]
    expires: float  # reactor time


class RouteCache:
    """User routes read from Redis, cached in time and in number (LRU).

    Concurrent lookups of one user share one Redis call. A lookup that
    fails (Redis down) is not cached. ``invalidate`` also detaches a lookup
    in flight, so the next lookup reads Redis afresh and the detached
    answer, possibly older than the reason for invalidating, is not cached.
    """

    def __init__(
        self,
        cache: RedisLike,
        *,
        ttl: float = DEFAULT_ROUTE_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_ROUTE_TTL,
        max_size: int = DEFAULT_ROUTE_CACHE_SIZE,
        negative_max_size: int = DEFAULT_NEGATIVE_CACHE_SIZE,
        reactor: Any = None,
    ) -> None:
        if not ttl >= 0 or not negative_ttl >= 0:
            raise ValueError(f"route TTLs must be >= 0, not {ttl!r} / {negative_ttl!r}")
        if not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"route cache size must be an int >= 0, not {max_size!r}")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._cache = cache
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_size = max_size
        self._reactor = reactor
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest use first
        # Offline/no-route answers live apart, briefly: a burst of pushes to
        # absent users must not evict the warm routes of online ones. One
        # TTL for all, so insertion order is expiry order.
        self._negative: OrderedDict[str, _Entry] = OrderedDict()
        self._negative_max = min(negative_max_size, max_size)
        self._inflight: dict[str, list[Deferred[tuple[Route, ...]]]] = {}
        self._warned: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self.reads = 0  # Redis calls made
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries) + len(self._negative)

    def lookup(self, user_id: str) -> Deferred[tuple[Route, ...]]:
        """The user's routes (empty: no route at all); errbacks if Redis fails."""
        entry = self._entries.get(user_id)
        if entry is not None:
            if self._reactor.seconds() < entry.expires:
                self._entries.move_to_end(user_id)
                self.hits += 1
                return succeed(entry.routes)
            del self._entries[user_id]
        else:
            entry = self._negative.get(user_id)
            if entry is not None:
                if self._reactor.seconds() < entry.expires:
                    self.hits += 1
                    return succeed(entry.routes)
                del self._negative[user_id]
        waiter: Deferred[tuple[Route, ...]] = Deferred()
        flight = self._inflight.get(user_id)
        if flight is not None:
            flight.append(waiter)
            return waiter
        flight = [waiter]
        # Registered before the call: a fake (or cached) hgetall may answer
        # synchronously, and _done must find the flight current.
        self._inflight[user_id] = flight
        self.reads += 1
        d = maybeDeferred(self._cache.hgetall, ROUTE_KEY_PREFIX + user_id)
        d.addCallback(self._parse, user_id)
        d.addCallbacks(
            self._done, self._failed, callbackArgs=(user_id, flight), errbackArgs=(user_id, flight)
        )
        return waiter

    def invalidate(self, user_id: str) -> None:
        self._entries.pop(user_id, None)
        self._negative.pop(user_id, None)
        self._inflight.pop(user_id, None)

    def clear(self) -> None:
        self._entries.clear()
        self._negative.clear()
        self._inflight.clear()

    def _parse(self, fields: Mapping[str, str], user_id: str) -> tuple[tuple[Route, ...], bool]:
        routes, bad = parse_routes(fields)
        for field, value, why in bad:
            self._warn_once(user_id, field, value, why)
        all_online = bool(routes) and not bad and all(r.online for r in routes)
        return routes, all_online

    def _warn_once(self, user_id: str, field: str, value: str, why: str) -> None:
        # Once per distinct value, not per push: cached or not, the same
        # broken entry would otherwise be logged on every push to that user.
        key = (user_id, field, str(hash(value)))  # the hash: values may be large
        if key in self._warned:
            return
        self._warned[key] = None
        if len(self._warned) > _WARNED_MAX:
            self._warned.popitem(last=False)
        log.warn(
            "ignoring route {key} field {field}: {why}: {value!r}",
            key=ROUTE_KEY_PREFIX + user_id, field=field, why=why, value=value[:200],
        )

    def _done(
        self,
        parsed: tuple[tuple[Route, ...], bool],
        user_id: str,
        flight: list[Deferred[tuple[Route, ...]]],
    ) -> None:
        routes, all_online = parsed
        if self._inflight.get(user_id) is flight:
            del self._inflight[user_id]
            self._store(user_id, routes, all_online)
        for waiter in flight:
            waiter.callback(routes)

    def _failed(
        self, failure: Failure, user_id: str, flight: list[Deferred[tuple[Route, ...]]]
    ) -> None:
        if self._inflight.get(user_id) is flight:
            del self._inflight[user_id]
        for waiter in flight:
            waiter.errback(failure)

    def _store(self, user_id: str, routes: tuple[Route, ...], online: bool) -> None:
        now = self._reactor.seconds()
        self._entries.pop(user_id, None)
        self._negative.pop(user_id, None)
        if online:
            if self._ttl <= 0 or self._max_size == 0:
                return
            self._entries[user_id] = _Entry(routes, now + self._ttl)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)
            return
        if self._negative_ttl <= 0 or self._negative_max == 0:
            return
        negative = self._negative
        negative[user_id] = _Entry(routes, now + self._negative_ttl)
        while negative and (len(negative) > self._negative_max
                            or next(iter(negative.values())).expires <= now):
            negative.popitem(last=False)


# --------------------------------------------------------------------- pushes


@dataclass
class _Job:
    """One push() call: what every request of it shares."""

    start: float
    content: bytes
    timeout_ms: int
    tags: tuple[str, ...] | None
    ack: AckModel
    # With Redis down, a push to 10,000 users would log 10,000 times.
    lookup_error_logged: bool = False


@dataclass(frozen=True)
class _StoppingReply:
    """What a gateway request made after ``expire_all`` gets at once."""

    gateway: str
    outcome: str = "timeout"
    code: int | None = None
    detail: str = STOPPING


def _as_tags(tags: Iterable[str] | None) -> tuple[str, ...] | None:
    # Materialised once: an iterator would be used up by the first build.
    if tags is None:
        return None
    if isinstance(tags, str | bytes):
        raise TypeError("tags must be an iterable of str, not a single string")
    return tuple(tags)


def _as_content(content: bytes) -> bytes:
    # A private copy: the caller may reuse its buffer while requests are pending.
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    return content


def _check_timeout_ms(timeout_ms: object) -> int:
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"timeout_ms must be an int, not {type(timeout_ms).__name__}")
    if timeout_ms < MIN_TIMEOUT_MS:
        raise ValueError(f"timeout_ms must be >= {MIN_TIMEOUT_MS}, not {timeout_ms}")
    return timeout_ms


def _error_reason(code: int | None) -> str:
    text = ERROR_REASONS.get(code) if code is not None else None
    return f"gateway error {code}" + (f" ({text})" if text else "")


class PushClient:
    """Pushes to users and broadcasts, on the reactor thread.

    ``pool``: a GatewayPool-like (:class:`GatewayPoolLike`); ``cache``: a
    RedisService-like (:class:`RedisLike`). Nothing to start or stop: the
    pool and the cache are the services.
    """

    def __init__(
        self,
        pool: GatewayPoolLike,
        cache: RedisLike,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        route_ttl: float = DEFAULT_ROUTE_TTL,
        route_cache_size: int = DEFAULT_ROUTE_CACHE_SIZE,
        broadcast_timeout: float = DEFAULT_BROADCAST_TIMEOUT,
        negative_route_ttl: float = DEFAULT_NEGATIVE_ROUTE_TTL,
        reactor: Any = None,
    ) -> None:
        if not broadcast_timeout > 0:
            raise ValueError(f"broadcast_timeout must be > 0, not {broadcast_timeout!r}")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._pool = pool
        self._reactor = reactor
        self._max_packet_size = max_packet_size
        self._broadcast_timeout = broadcast_timeout
        self.routes = RouteCache(
            cache,
            ttl=route_ttl,
            negative_ttl=negative_route_ttl,
            max_size=route_cache_size,
            reactor=reactor,
        )
        self.stopping = False  # set by expire_all: no gateway request waits any more

    # -- public API -------------------------------------------------------

    def expire_all(self) -> int:
        """Shutdown: end every push still waiting for a gateway as ``"timeout"``.

        Pending gateway requests end now; any request a push would send
        from now on (after a route lookup, or a route change) ends at once
        as well. Returns how many gateway requests were pending.
        """
        self.stopping = True
        return self._pool.expire_pending(STOPPING)

    def lookup_routes(self, user_id: str) -> Deferred[tuple[Route, ...]]:
        """The user's routes, through the cache (errbacks if Redis fails)."""
        return self.routes.lookup(user_id)

    def invalidate_route(self, user_id: str) -> None:
        """Forget the cached routes of a user (the next push reads Redis)."""
        self.routes.invalidate(user_id)

    def push(
        self,
        user_ids: Iterable[str],
        content: bytes,
        *,
        ack: AckModel = "none",
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        tags: Iterable[str] | None = None,
    ) -> Deferred[list[PushResult]]:
        """Push ``content`` to every online client of each user.

        Raises synchronously (before any Redis or gateway I/O) on bad
        arguments: ValueError (no user, a blank user id, timeout_ms < 1000,
        empty tags or content, unknown ack), TypeError, PacketTooLarge.
        Then the Deferred always succeeds, with the results in input user
        order (duplicates pushed once), each user's by client type.
        """
        if isinstance(user_ids, str | bytes):
            raise TypeError("user_ids must be a sequence of user ids, not a single string")
        users = list(dict.fromkeys(user_ids))
        if not users:
            raise ValueError("no user id to push to")
        for user_id in users:
            if not isinstance(user_id, str):
                raise TypeError(f"user id must be str, not {type(user_id).__name__}")
            # Same rule as the wire codec: an empty userId reads back as null
            # on the server, i.e. as a broadcast.
            if _java_is_blank(user_id):
                raise ValueError(f"blank user id {user_id!r}: that would be a broadcast")
        timeout_ms = _check_timeout_ms(timeout_ms)
        content = _as_content(content)
        tag_tuple = _as_tags(tags)
        # One trial build for all: the body grows only with the user id's
        # length (clientType is a fixed int32), so if the longest id fits,
        # all do. It also checks content, tags and ack.
        longest = max(users, key=lambda u: len(u.encode("utf-8", "replace")))
        single_push_packet(
            0, longest, 0, timeout_ms, content,
            tags=tag_tuple, ack=ack, max_body=self._max_packet_size,
        )
        job = _Job(self._reactor.seconds(), content, timeout_ms, tag_tuple, ack)
        per_user = [ensureDeferred(self._push_user(job, user_id)) for user_id in users]
        d = gatherResults(per_user, consumeErrors=True)
        return d.addCallback(lambda lists: [r for results in lists for r in results])

    def broadcast(
        self,
        content: bytes,
        *,
        tags: Iterable[str] | None = None,
        condition: str | None = None,
        task_id: str | None = None,
        ack: AckModel = "none",
        timeout_ms: int | None = None,
    ) -> Deferred[list[PushResult]]:
        """Send one broadcast request to every known gateway server.

        One result per gateway (``gateway`` set, ``user_id`` and
        ``client_type`` None), in ``pool.addresses()`` order: "success" once
        that gateway has pushed to all its (matching) users. No gateway
        known: a single "failure" with gateway None. Raises synchronously on
        bad arguments, as ``push``.
        """
        timeout = (
            self._broadcast_timeout if timeout_ms is None
            else _check_timeout_ms(timeout_ms) / 1000
        )
        content = _as_content(content)
        tag_tuple = _as_tags(tags)

        def build(session_id: int) -> bytes:
            return broadcast_packet(
                session_id, content, tags=tag_tuple, condition=condition,
                task_id=task_id, ack=ack, max_body=self._max_packet_size,
            )

        build(0)  # validation only (content, tags, condition, ack, size)
        start = self._reactor.seconds()
        addresses = list(dict.fromkeys(self._pool.addresses()))
        if not addresses:
            # Not an empty list: all(r.result == "success" for r in []) is
            # True, and nobody got this broadcast.
            return succeed([PushResult(None, None, FAILURE, None, 0.0, "no gateway server known")])
        per_gateway = [
            ensureDeferred(self._broadcast_one(start, address, build, timeout))
            for address in addresses
        ]
        return gatherResults(per_gateway, consumeErrors=True)

    # -- internals --------------------------------------------------------

    def _elapsed_ms(self, start: float) -> float:
        return (self._reactor.seconds() - start) * 1000.0

    def _result(
        self,
        job: _Job,
        user_id: str,
        client_type: int | None,
        result: str,
        gateway: str | None,
        reason: str | None = None,
    ) -> PushResult:
        ms = self._elapsed_ms(job.start)
        return PushResult(user_id, client_type, result, gateway, ms, reason)

    async def _request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> GatewayReplyLike | None:
        """The pool's reply; None if the pool broke its never-fails contract."""
        if self.stopping:
            return _StoppingReply(address)
        try:
            return await self._pool.request(address, build, timeout)
        except Exception:
            log.failure("gateway request to {address} failed unexpectedly", address=address)
            return None

    def _single_builder(self, job: _Job, user_id: str, client_type: int, timeout_ms: int
                        ) -> Callable[[int], bytes]:
        def build(session_id: int) -> bytes:
            return single_push_packet(
                session_id, user_id, client_type, timeout_ms, job.content,
                tags=job.tags, ack=job.ack, max_body=self._max_packet_size,
            )

        return build

    async def _push_user(self, job: _Job, user_id: str) -> list[PushResult]:
        try:
            routes = await self.routes.lookup(user_id)
        except Exception as e:
            # Redis down or slow: we cannot know where the user is; not
            # "offline", which would claim we know.
            if not job.lookup_error_logged:
                job.lookup_error_logged = True
                log.warn("route lookup of {user} failed: {error}", user=user_id, error=e)
            return [self._result(job, user_id, None, FAILURE, None, f"route lookup failed: {e}")]
        if not routes:
            return [self._result(job, user_id, None, OFFLINE, None, "no route")]
        per_route = [ensureDeferred(self._push_route(job, user_id, r)) for r in routes]
        results: list[PushResult] = await gatherResults(per_route, consumeErrors=True)
        return results

    async def _push_route(self, job: _Job, user_id: str, route: Route) -> PushResult:
        try:
            return await self._push_route_inner(job, user_id, route)
        except Exception:
            # A bug must not leave the caller's Deferred hanging or failing.
            log.failure("push to {user} type {ct} failed", user=user_id, ct=route.client_type)
            return self._result(job, user_id, route.client_type, FAILURE, None, "internal error")

    async def _push_route_inner(self, job: _Job, user_id: str, route: Route) -> PushResult:
        ct = route.client_type
        if not route.online:
            return self._result(job, user_id, ct, OFFLINE, None, "no connection")
        # The deadline runs from the first send, as the Java client's timer does.
        deadline = self._reactor.seconds() + job.timeout_ms / 1000
        build = self._single_builder(job, user_id, ct, job.timeout_ms)
        reply = await self._request(route.gateway, build, job.timeout_ms / 1000)
        if not self._is_router_change(reply):
            return self._single_result(job, user_id, ct, route.gateway, reply)

        # ROUTER_CHANGE: the user moved; drop the cached route, read it
        # again, resend once to where it points now.
        gateway = route.gateway
        log.info("route of {user} type {ct} changed (was {gw})", user=user_id, ct=ct, gw=gateway)
        self.routes.invalidate(user_id)
        try:
            fresh = await self.routes.lookup(user_id)
        except Exception as e:
            return self._result(job, user_id, ct, FAILURE, gateway, f"route lookup failed: {e}")
        new = next((r for r in fresh if r.client_type == ct), None)
        if new is None or not new.online:
            return self._result(job, user_id, ct, OFFLINE, gateway, "offline after route change")
        # Floor to whole ms; round first so 2.6 s is 2600 ms, not 2599.
        remaining_ms = math.floor(round((deadline - self._reactor.seconds()) * 1000, 6))
        if remaining_ms < MIN_TIMEOUT_MS:
            # The server would get < 500 ms (remaining - 500) and likely drop
            # its own OK; only our timer would end it: say so now.
            return self._result(
                job, user_id, ct, TIMEOUT, gateway, "route changed, no time left to resend"
            )
        build = self._single_builder(job, user_id, ct, remaining_ms)
        reply = await self._request(new.gateway, build, remaining_ms / 1000)
        if self._is_router_change(reply):
            self.routes.invalidate(user_id)
            return self._result(job, user_id, ct, FAILURE, new.gateway, "route changed twice")
        return self._single_result(job, user_id, ct, new.gateway, reply)

    @staticmethod
    def _is_router_change(reply: GatewayReplyLike | None) -> bool:
        return reply is not None and reply.outcome == "error" and reply.code == ERR_ROUTER_CHANGE

    def _single_result(
        self,
        job: _Job,
        user_id: str,
        ct: int,
        gateway: str,
        reply: GatewayReplyLike | None,
    ) -> PushResult:
        if reply is None:
            return self._result(job, user_id, ct, FAILURE, gateway, "internal error")
        outcome = reply.outcome
        if outcome == "ok":
            return self._result(job, user_id, ct, SUCCESS, gateway)
        if outcome == "error":
            if reply.code == ERR_OFFLINE:
                # The gateway checked Redis itself: our cached route is stale.
                self.routes.invalidate(user_id)
                return self._result(job, user_id, ct, OFFLINE, gateway, "gateway: user offline")
            return self._result(job, user_id, ct, FAILURE, gateway, _error_reason(reply.code))
        result, reason = self._transport_result(outcome, getattr(reply, "detail", None))
        return self._result(job, user_id, ct, result, gateway, reason)

    @staticmethod
    def _transport_result(outcome: str, detail: str | None = None) -> tuple[str, str]:
        """(result, reason) for the replies that are not the gateway's answer."""
        if outcome == "timeout" and detail == STOPPING:
            return TIMEOUT, "daemon stopping: no answer within the shutdown grace"
        if outcome == "timeout":
            return TIMEOUT, "no answer in time"
        if outcome == "unavailable":
            # As the Java client: no gateway connection is a failure.
            return FAILURE, "no gateway connection"
        if outcome == "lost":
            return FAILURE, "gateway connection lost"
        return FAILURE, f"unknown reply outcome {outcome!r}"

    async def _broadcast_one(
        self, start: float, address: str, build: Callable[[int], bytes], timeout: float
    ) -> PushResult:
        reply = await self._request(address, build, timeout)
        if reply is None:
            result, reason = FAILURE, "internal error"
        elif reply.outcome == "ok":
            result, reason = SUCCESS, None
        elif reply.outcome == "error":
            result, reason = FAILURE, _error_reason(reply.code)
        else:
            result, reason = self._transport_result(reply.outcome, getattr(reply, "detail", None))
        return PushResult(None, None, result, address, self._elapsed_ms(start), reason)
