"""Pushing to users and broadcasting through the gateway servers.

This is the job of the Java ``PushClient`` (``mpusher/mpush``
``mpush-client``, 0.8.x): look a user's routes up in Redis (``mp:ur:<userId>``,
one ClientLocation JSON per client type), send one GATEWAY_PUSH per online
client type to the gateway server holding it, and map the answers to
success / failure / offline / timeout. A broadcast goes to every gateway
server once.

Usable as a library on its own: :class:`PushClient` needs only something with
``request(address, build, timeout)`` and ``addresses()`` (``mpush.cluster.gateways.
GatewayPool``) and something with ``hgetall(key)`` (``mpush.cluster.redis.
RedisService``). Everything runs on the reactor thread and never blocks.

Where we differ from the Java client, and why (see docs/push-client.md):

* A route change is resent once, within the original deadline (Java resends
  with a fresh full timeout, and again on every further route change).
* Locations that say "offline" (or no location at all) are cached only for
  ``negative_route_ttl`` (1 s): nothing would tell us when the user comes
  back, whereas a stale *online* route is corrected by the gateway's PushOutcome.OFFLINE
  or ROUTER_CHANGE answer. Java drops the entry on every offline result,
  i.e. caches none of it.
* A broadcast waits for every gateway's OK, taskId or not, and reports one
  result per gateway (Java: the first answer ends it; with a taskId it is
  "success" as soon as written).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.logger import Logger

from mpush.outcomes import AckModel, GatewayOutcome, PushOutcome, TimeoutCause
from mpush.routes import Route
from mpush.services.route_cache import (
    DEFAULT_NEGATIVE_ROUTE_TTL,
    DEFAULT_ROUTE_CACHE_SIZE,
    DEFAULT_ROUTE_TTL,
    RedisLike,
    RouteCache,
)
from mpush.wire.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_TIMEOUT_MS,
    ERR_OFFLINE,
    ERR_ROUTER_CHANGE,
    ERROR_REASONS,
    MIN_TIMEOUT_MS,
    _java_is_blank,
    broadcast_packet,
    single_push_packet,
)

__all__ = [
    "DEFAULT_BROADCAST_TIMEOUT",
    "GatewayPoolLike",
    "GatewayReplyLike",
    "PushClient",
    "PushResult",
]

log = Logger(namespace="mpush.services.pusher")

#: A gateway answers a broadcast once it has pushed to all its users, at
#: about 3,000 users/s (flow control): far longer than a single push.
DEFAULT_BROADCAST_TIMEOUT: Final = 30.0


# ------------------------------------------------------------------ contracts


class GatewayReplyLike(Protocol):
    """What we read of ``mpush.cluster.gateways.GatewayReply``.

    Also ``cause`` (a :class:`TimeoutCause`, None unless the outcome is
    timeout), read with ``getattr``: a reply without it is a plain deadline.
    """

    @property
    def outcome(self) -> str: ...  # a GatewayOutcome value

    @property
    def gateway(self) -> str: ...

    @property
    def code(self) -> int | None: ...


class GatewayPoolLike(Protocol):
    """What we need of ``mpush.cluster.gateways.GatewayPool`` (docs/INTERNALS.md)."""

    def addresses(self) -> list[str]: ...

    def request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> Deferred[Any]: ...  # Deferred[GatewayReplyLike], never errbacks

    def expire_pending(self, cause: TimeoutCause) -> int: ...  # pending requests end timeout


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
    result: PushOutcome
    gateway: str | None
    ms: float
    reason: str | None = None


# --------------------------------------------------------------------- pushes


@dataclass
class _Job:
    """One push() call: what every request of it shares."""

    start: float
    content: bytes
    timeout_ms: int
    tags: tuple[str, ...] | None
    ack: AckModel | str
    # With Redis down, a push to 10,000 users would log 10,000 times.
    lookup_error_logged: bool = False


@dataclass(frozen=True)
class _StoppingReply:
    """What a gateway request made after ``expire_all`` gets at once."""

    gateway: str
    outcome: GatewayOutcome = GatewayOutcome.TIMEOUT
    code: int | None = None
    cause: TimeoutCause = TimeoutCause.SHUTDOWN


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
        return self._pool.expire_pending(TimeoutCause.SHUTDOWN)

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
        ack: AckModel | str = AckModel.NONE,
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
        ack: AckModel | str = AckModel.NONE,
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
            return succeed([PushResult(None, None, PushOutcome.FAILURE, None, 0.0,
                                       "no gateway server known")])
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
        result: PushOutcome,
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
            return [self._result(job, user_id, None, PushOutcome.FAILURE, None,
                                 f"route lookup failed: {e}")]
        if not routes:
            return [self._result(job, user_id, None, PushOutcome.OFFLINE, None, "no route")]
        per_route = [ensureDeferred(self._push_route(job, user_id, r)) for r in routes]
        results: list[PushResult] = await gatherResults(per_route, consumeErrors=True)
        return results

    async def _push_route(self, job: _Job, user_id: str, route: Route) -> PushResult:
        try:
            return await self._push_route_inner(job, user_id, route)
        except Exception:
            # A bug must not leave the caller's Deferred hanging or failing.
            log.failure("push to {user} type {ct} failed", user=user_id, ct=route.client_type)
            return self._result(job, user_id, route.client_type, PushOutcome.FAILURE, None,
                                "internal error")

    async def _push_route_inner(self, job: _Job, user_id: str, route: Route) -> PushResult:
        ct = route.client_type
        if not route.online:
            return self._result(job, user_id, ct, PushOutcome.OFFLINE, None, "no connection")
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
            return self._result(job, user_id, ct, PushOutcome.FAILURE, gateway,
                                f"route lookup failed: {e}")
        new = next((r for r in fresh if r.client_type == ct), None)
        if new is None or not new.online:
            return self._result(job, user_id, ct, PushOutcome.OFFLINE, gateway,
                                "offline after route change")
        # Floor to whole ms; round first so 2.6 s is 2600 ms, not 2599.
        remaining_ms = math.floor(round((deadline - self._reactor.seconds()) * 1000, 6))
        if remaining_ms < MIN_TIMEOUT_MS:
            # The server would get < 500 ms (remaining - 500) and likely drop
            # its own OK; only our timer would end it: say so now.
            return self._result(job, user_id, ct, PushOutcome.TIMEOUT, gateway,
                                "route changed, no time left to resend")
        build = self._single_builder(job, user_id, ct, remaining_ms)
        reply = await self._request(new.gateway, build, remaining_ms / 1000)
        if self._is_router_change(reply):
            self.routes.invalidate(user_id)
            return self._result(job, user_id, ct, PushOutcome.FAILURE, new.gateway,
                                "route changed twice")
        return self._single_result(job, user_id, ct, new.gateway, reply)

    @staticmethod
    def _is_router_change(reply: GatewayReplyLike | None) -> bool:
        return (reply is not None and reply.outcome == GatewayOutcome.ERROR
                and reply.code == ERR_ROUTER_CHANGE)

    def _single_result(
        self,
        job: _Job,
        user_id: str,
        ct: int,
        gateway: str,
        reply: GatewayReplyLike | None,
    ) -> PushResult:
        if reply is None:
            return self._result(job, user_id, ct, PushOutcome.FAILURE, gateway, "internal error")
        outcome = reply.outcome
        if outcome == GatewayOutcome.OK:
            return self._result(job, user_id, ct, PushOutcome.SUCCESS, gateway)
        if outcome == GatewayOutcome.ERROR:
            if reply.code == ERR_OFFLINE:
                # The gateway checked Redis itself: our cached route is stale.
                self.routes.invalidate(user_id)
                return self._result(job, user_id, ct, PushOutcome.OFFLINE, gateway,
                                    "gateway: user offline")
            return self._result(job, user_id, ct, PushOutcome.FAILURE, gateway,
                                _error_reason(reply.code))
        result, reason = self._transport_result(outcome, getattr(reply, "cause", None))
        return self._result(job, user_id, ct, result, gateway, reason)

    @staticmethod
    def _transport_result(
        outcome: str, cause: TimeoutCause | None = None
    ) -> tuple[PushOutcome, str]:
        """(result, reason) for the replies that are not the gateway's answer."""
        if outcome == GatewayOutcome.TIMEOUT:
            # A typed cause, set by the pool's shutdown expiry; anything else is the deadline.
            if cause is not TimeoutCause.SHUTDOWN:
                cause = TimeoutCause.DEADLINE
            return PushOutcome.TIMEOUT, cause.value
        if outcome == GatewayOutcome.UNAVAILABLE:
            # As the Java client: no gateway connection is a failure.
            return PushOutcome.FAILURE, "no gateway connection"
        if outcome == GatewayOutcome.LOST:
            return PushOutcome.FAILURE, "gateway connection lost"
        return PushOutcome.FAILURE, f"unknown reply outcome {outcome!r}"

    async def _broadcast_one(
        self, start: float, address: str, build: Callable[[int], bytes], timeout: float
    ) -> PushResult:
        reply = await self._request(address, build, timeout)
        if reply is None:
            result, reason = PushOutcome.FAILURE, "internal error"
        elif reply.outcome == GatewayOutcome.OK:
            result, reason = PushOutcome.SUCCESS, None
        elif reply.outcome == GatewayOutcome.ERROR:
            result, reason = PushOutcome.FAILURE, _error_reason(reply.code)
        else:
            result, reason = self._transport_result(reply.outcome, getattr(reply, "cause", None))
        return PushResult(None, None, result, address, self._elapsed_ms(start), reason)
