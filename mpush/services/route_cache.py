"""The route cache of the push client: user routes read from Redis, bounded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.interfaces import RedisClient
from mpush.reactor import default_reactor
from mpush.routes import ROUTE_KEY_PREFIX, Route, parse_routes

__all__ = [
    "DEFAULT_NEGATIVE_CACHE_SIZE",
    "DEFAULT_NEGATIVE_ROUTE_TTL",
    "DEFAULT_ROUTE_CACHE_SIZE",
    "DEFAULT_ROUTE_TTL",
    "RouteCache",
    "RouteCacheOptions",
]

log = Logger()

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
_WARNED_MAX = 1024  # distinct bad route values remembered so each is logged once


@dataclass(frozen=True)
class RouteCacheOptions:
    """How long and how many answers a :class:`RouteCache` keeps."""

    ttl: float = DEFAULT_ROUTE_TTL
    negative_ttl: float = DEFAULT_NEGATIVE_ROUTE_TTL  # offline/no-route answers
    max_size: int = DEFAULT_ROUTE_CACHE_SIZE
    negative_max_size: int = DEFAULT_NEGATIVE_CACHE_SIZE  # at most max_size

    def __post_init__(self) -> None:
        ttl, negative_ttl, max_size = self.ttl, self.negative_ttl, self.max_size
        if not ttl >= 0 or not negative_ttl >= 0:
            raise ValueError(f"route TTLs must be >= 0, not {ttl!r} / {negative_ttl!r}")
        if not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"route cache size must be an int >= 0, not {max_size!r}")


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

    def __init__(self, cache: RedisClient, *, options: RouteCacheOptions | None = None,
                 reactor: Any = None) -> None:
        self._cache = cache
        self.options = RouteCacheOptions() if options is None else options
        self._reactor = default_reactor(reactor)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest use first
        # Offline/no-route answers live apart, briefly: a burst of pushes to
        # absent users must not evict the warm routes of online ones. One
        # TTL for all, so insertion order is expiry order.
        self._negative: OrderedDict[str, _Entry] = OrderedDict()
        self._negative_max = min(self.options.negative_max_size, self.options.max_size)
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
            if self.options.ttl <= 0 or self.options.max_size == 0:
                return
            self._entries[user_id] = _Entry(routes, now + self.options.ttl)
            while len(self._entries) > self.options.max_size:
                self._entries.popitem(last=False)
            return
        if self.options.negative_ttl <= 0 or self._negative_max == 0:
            return
        negative = self._negative
        negative[user_id] = _Entry(routes, now + self.options.negative_ttl)
        while negative and (len(negative) > self._negative_max
                            or next(iter(negative.values())).expires <= now):
            negative.popitem(last=False)
