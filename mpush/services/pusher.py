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

Every call goes through the client's :class:`~mpush.services.admission.
PushAdmission` (``client.admission``): at most ``max_inflight`` user pushes
(a broadcast: one) in flight, a call past it refused with
:class:`~mpush.services.admission.PushRefused`; the outcome counts; and at
shutdown :meth:`PushClient.expire_all` then :meth:`PushClient.end_all_as_timeout`.

Where we differ from the Java client, and why (see docs/library.md):

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

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.logger import Logger

from mpush.arguments import require_positive
from mpush.config.keys import default
from mpush.interfaces import GatewayReplyInfo, GatewayRequester, RedisClient
from mpush.outcomes import AckModel, PushOutcome, PushReason, TimeoutCause
from mpush.reactor import default_reactor
from mpush.routes import Route
from mpush.services.admission import PushAdmission, PushRefused
from mpush.services.push_results import (
    PushResult,
    ShutdownReply,
    is_router_change,
    reply_result,
    shutdown_results,
)
from mpush.services.route_cache import (
    DEFAULT_NEGATIVE_ROUTE_TTL,
    DEFAULT_ROUTE_CACHE_SIZE,
    DEFAULT_ROUTE_TTL,
    RouteCache,
    RouteCacheOptions,
)
from mpush.wire import (
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_TIMEOUT_MS,
    MIN_TIMEOUT_MS,
    broadcast_packet,
    single_push_packet,
)
from mpush.wire import java_is_blank as _java_is_blank

__all__ = ["DEFAULT_BROADCAST_TIMEOUT", "PushClient", "PushRefused", "PushResult"]

log = Logger(namespace="mpush.services.pusher")

#: A gateway answers a broadcast once it has pushed to all its users, at
#: about 3,000 users/s (flow control): far longer than a single push.
DEFAULT_BROADCAST_TIMEOUT: Final[float] = default("mp.alloc.broadcast-timeout")


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


def _check_users(user_ids: Iterable[str]) -> list[str]:
    """The distinct user ids, in order; TypeError / ValueError before any I/O."""
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
    return users


def _check_timeout_ms(timeout_ms: object) -> int:
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"timeout_ms must be an int, not {type(timeout_ms).__name__}")
    if timeout_ms < MIN_TIMEOUT_MS:
        raise ValueError(f"timeout_ms must be >= {MIN_TIMEOUT_MS}, not {timeout_ms}")
    return timeout_ms


class PushClient:
    """Pushes to users and broadcasts, on the reactor thread.

    ``pool``: a GatewayPool-like (:class:`~mpush.interfaces.GatewayRequester`);
    ``cache``: a RedisService-like (:class:`~mpush.interfaces.RedisClient`).
    Nothing to start or stop: the pool and the cache are the services.
    ``max_inflight`` (required: the daemon passes ``mp.alloc.max-inflight-pushes``)
    bounds the user pushes in flight; ``admission`` counts them, see
    :class:`PushAdmission`.
    """

    def __init__(
        self,
        pool: GatewayRequester,
        cache: RedisClient,
        *,
        max_inflight: int,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        route_ttl: float = DEFAULT_ROUTE_TTL,
        route_cache_size: int = DEFAULT_ROUTE_CACHE_SIZE,
        broadcast_timeout: float = DEFAULT_BROADCAST_TIMEOUT,
        negative_route_ttl: float = DEFAULT_NEGATIVE_ROUTE_TTL,
        reactor: Any = None,
    ) -> None:
        require_positive(broadcast_timeout=broadcast_timeout)
        reactor = default_reactor(reactor)
        self._pool = pool
        self._reactor = reactor
        self._max_packet_size = max_packet_size
        self._broadcast_timeout = broadcast_timeout
        options = RouteCacheOptions(ttl=route_ttl, negative_ttl=negative_route_ttl,
                                    max_size=route_cache_size)
        self.routes = RouteCache(cache, options=options, reactor=reactor)
        self.admission = PushAdmission(max_inflight=max_inflight)
        self.stopping = False  # set by expire_all: no gateway request waits any more

    # -- shutdown ---------------------------------------------------------

    def expire_all(self) -> int:
        """Shutdown: end every push still waiting for a gateway as ``"timeout"``.

        Pending gateway requests end now; any request a push would send
        from now on (after a route lookup, or a route change) ends at once
        as well. Returns how many gateway requests were pending.
        """
        self.stopping = True
        return self._pool.expire_pending(TimeoutCause.SHUTDOWN)

    def end_all_as_timeout(self) -> int:
        """Shutdown, last resort: every call still in flight ends now.

        Also those waiting for Redis, which :meth:`expire_all` cannot reach:
        each target ``timeout`` (a broadcast: one row), reason
        ``TimeoutCause.SHUTDOWN``; what they learn later is dropped.
        Returns how many calls ended this way.
        """
        return self.admission.end_all_as_timeout()

    # -- public API -------------------------------------------------------

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
        empty tags or content, unknown ack), TypeError, PacketTooLarge; and
        PushRefused when closing or over ``max_inflight`` (a user each).
        Then the Deferred always succeeds, with the results in input user
        order (duplicates pushed once), each user's by client type.
        """
        users = _check_users(user_ids)
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
        return self.admission.run(len(users), lambda: self._push_users(job, users),
                                  lambda: shutdown_results(users))

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
        ``client_type`` None), in ``pool.broadcast_addresses()`` order: "success"
        once that gateway has pushed to all its (matching) users (UDP multicast:
        one row for the group, the first gateway's answer). No gateway
        known: a single "failure" with gateway None. Raises synchronously on
        bad arguments, as ``push``; counts one against ``max_inflight``.
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
        return self.admission.run(1, lambda: self._broadcast_all(build, timeout),
                                  lambda: shutdown_results([None]))

    # -- internals --------------------------------------------------------

    def _push_users(self, job: _Job, users: list[str]) -> Deferred[list[PushResult]]:
        per_user = [ensureDeferred(self._push_user(job, user_id)) for user_id in users]
        d = gatherResults(per_user, consumeErrors=True)
        return d.addCallback(lambda lists: [r for results in lists for r in results])

    def _broadcast_all(self, build: Callable[[int], bytes], timeout: float
                       ) -> Deferred[list[PushResult]]:
        start = self._reactor.seconds()
        addresses = list(dict.fromkeys(self._pool.broadcast_addresses()))
        if not addresses:
            # Not an empty list: all(r.result == "success" for r in []) is
            # True, and nobody got this broadcast.
            return succeed([PushResult(None, None, PushOutcome.FAILURE, None, 0.0,
                                       PushReason.UNKNOWN_GATEWAY)])
        per_gateway = [
            ensureDeferred(self._broadcast_one(start, address, build, timeout))
            for address in addresses
        ]
        return gatherResults(per_gateway, consumeErrors=True)

    def _elapsed_ms(self, start: float) -> float:
        return (self._reactor.seconds() - start) * 1000.0

    def _result(
        self,
        job: _Job,
        user_id: str,
        client_type: int | None,
        result: PushOutcome,
        gateway: str | None,
        reason: PushReason | None = None,
        code: int | None = None,
    ) -> PushResult:
        ms = self._elapsed_ms(job.start)
        return PushResult(user_id, client_type, result, gateway, ms, reason, code)

    def _reply_result(self, reply: GatewayReplyInfo | None, gateway: str, *, single: bool
                      ) -> tuple[PushOutcome, PushReason | None, int | None]:
        result, reason, code = reply_result(reply, single=single)
        if reason is PushReason.INTERNAL_ERROR and reply is not None:
            log.error("gateway request to {address} ended with an unknown outcome {outcome!r}",
                      address=gateway, outcome=reply.outcome)
        elif reason is PushReason.GATEWAY_UNREACHABLE and gateway not in self._pool.addresses():
            # Not a connection down: the pool has no such gateway server, i.e.
            # ZooKeeper does not list it (a stale route, or a gateway gone).
            reason = PushReason.UNKNOWN_GATEWAY
        return result, reason, code

    async def _request(
        self, address: str, build: Callable[[int], bytes], timeout: float
    ) -> GatewayReplyInfo | None:
        """The pool's reply; None if the pool broke its never-fails contract."""
        if self.stopping:
            return ShutdownReply(address)
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
            self._lookup_failed(job, user_id, e)
            return [self._result(job, user_id, None, PushOutcome.FAILURE, None,
                                 PushReason.REDIS_UNAVAILABLE)]
        if not routes:
            return [self._result(job, user_id, None, PushOutcome.OFFLINE, None,
                                 PushReason.NO_ROUTE)]
        per_route = [ensureDeferred(self._push_route(job, user_id, r)) for r in routes]
        results: list[PushResult] = await gatherResults(per_route, consumeErrors=True)
        return results

    @staticmethod
    def _lookup_failed(job: _Job, user_id: str, error: Exception) -> None:
        # The reason says redis_unavailable; the log says why, once per call.
        if not job.lookup_error_logged:
            job.lookup_error_logged = True
            log.warn("route lookup of {user} failed: {error}", user=user_id, error=error)

    async def _push_route(self, job: _Job, user_id: str, route: Route) -> PushResult:
        try:
            return await self._push_route_inner(job, user_id, route)
        except Exception:
            # A bug must not leave the caller's Deferred hanging or failing.
            log.failure("push to {user} type {ct} failed", user=user_id, ct=route.client_type)
            return self._result(job, user_id, route.client_type, PushOutcome.FAILURE, None,
                                PushReason.INTERNAL_ERROR)

    async def _push_route_inner(self, job: _Job, user_id: str, route: Route) -> PushResult:
        ct = route.client_type
        if not route.online:
            return self._result(job, user_id, ct, PushOutcome.OFFLINE, None,
                                PushReason.NO_CONNECTION)
        # The deadline runs from the first send, as the Java client's timer does.
        deadline = self._reactor.seconds() + job.timeout_ms / 1000
        build = self._single_builder(job, user_id, ct, job.timeout_ms)
        reply = await self._request(route.gateway, build, job.timeout_ms / 1000)
        if not is_router_change(reply):
            return self._single_result(job, user_id, ct, route.gateway, reply)

        # ROUTER_CHANGE: the user moved; drop the cached route, read it
        # again, resend once to where it points now.
        gateway = route.gateway
        log.info("route of {user} type {ct} changed (was {gw})", user=user_id, ct=ct, gw=gateway)
        self.routes.invalidate(user_id)
        try:
            fresh = await self.routes.lookup(user_id)
        except Exception as e:
            self._lookup_failed(job, user_id, e)
            return self._result(job, user_id, ct, PushOutcome.FAILURE, gateway,
                                PushReason.REDIS_UNAVAILABLE)
        new = next((r for r in fresh if r.client_type == ct), None)
        if new is None or not new.online:
            # Offline after the route change: no route left for this client type, or one
            # without a connection.
            reason = PushReason.NO_ROUTE if new is None else PushReason.NO_CONNECTION
            return self._result(job, user_id, ct, PushOutcome.OFFLINE, gateway, reason)
        # Floor to whole ms; round first so 2.6 s is 2600 ms, not 2599.
        remaining_ms = math.floor(round((deadline - self._reactor.seconds()) * 1000, 6))
        if remaining_ms < MIN_TIMEOUT_MS:
            # The server would get < 500 ms (remaining - 500) and likely drop
            # its own OK; only our timer would end it: say so now (timed_out).
            return self._result(job, user_id, ct, PushOutcome.TIMEOUT, gateway,
                                PushReason.TIMED_OUT)
        build = self._single_builder(job, user_id, ct, remaining_ms)
        reply = await self._request(new.gateway, build, remaining_ms / 1000)
        if is_router_change(reply):
            # Changed twice: no resend; a failure, gateway_error with code 3.
            self.routes.invalidate(user_id)
        return self._single_result(job, user_id, ct, new.gateway, reply)

    def _single_result(
        self,
        job: _Job,
        user_id: str,
        ct: int,
        gateway: str,
        reply: GatewayReplyInfo | None,
    ) -> PushResult:
        result, reason, code = self._reply_result(reply, gateway, single=True)
        if result is PushOutcome.OFFLINE:
            # The gateway checked Redis itself: our cached route is stale.
            self.routes.invalidate(user_id)
        return self._result(job, user_id, ct, result, gateway, reason, code)

    async def _broadcast_one(
        self, start: float, address: str, build: Callable[[int], bytes], timeout: float
    ) -> PushResult:
        reply = await self._request(address, build, timeout)
        result, reason, code = self._reply_result(reply, address, single=False)
        return PushResult(None, None, result, address, self._elapsed_ms(start), reason, code)
