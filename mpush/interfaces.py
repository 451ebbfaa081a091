"""The roles the daemon's parts play for each other, as ``typing.Protocol``\\ s.

One name per collaborator, whoever reads it: the refresher, the gateway pool
and the status all read the ZooKeeper view as a :class:`ClusterView`, the
push client and the refresher both use Redis as a :class:`RedisClient`, and
so on. Each protocol is the union of what its readers use; a reader needing
less still type-checks against it, and a test fake needs only what its
subject reads (nothing here is checked at runtime but :class:`LoadReporter`).

Typing only: this module holds no behaviour. It may name Twisted types and
the pure core (:mod:`mpush.balance`, :mod:`mpush.outcomes`, ...), never an
adapter (``cluster/``), a service, ``web/`` or ``daemon/``, so every layer
can import it. Settings are not protocols: the adapters take the frozen
dataclasses of :mod:`mpush.config` (``ZkSettings``, ``RedisSettings``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from mpush.balance import Candidate, ServerStatus
from mpush.outcomes import TimeoutCause

__all__ = [
    "Admission",
    "ClusterView",
    "Draining",
    "GatewayReplyInfo",
    "GatewayRequester",
    "HttpSite",
    "LoadReporter",
    "MetricsExporter",
    "OnlineCounts",
    "Policy",
    "PushOutcomeRow",
    "Pusher",
    "RedisClient",
    "RefreshReport",
    "RouteLookup",
    "ServerNodeInfo",
    "WebListener",
]


# -- the cluster (adapters in mpush.cluster) ---------------------------------


class ServerNodeInfo(Protocol):
    """A server node of the view, read by the refresher; is ``cluster.server_node.ServerNode``."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def public_host(self) -> str: ...  # the address clients get: IPv4 or a host name
    @property
    def weight(self) -> float: ...
    @property
    def since(self) -> float | None: ...  # reactor time it entered the view


class ClusterView(Protocol):
    """The ZooKeeper view of refresher, gateway pool, status; is ``cluster.zookeeper.ZkWatcher``."""

    state: str  # "connected", "suspended", "lost", "stopped", ...
    session_id: int | None
    initialized: bool  # the first full view is loaded
    last_error: str | None  # why ZooKeeper cannot be used now (unreachable, NoAuth, ...)

    def connection_servers(self) -> Mapping[str, ServerNodeInfo]: ...
    def gateway_servers(self) -> Mapping[str, ServerNodeInfo]: ...
    def websocket_servers(self) -> Mapping[str, ServerNodeInfo]: ...
    def rejected_nodes(self) -> Mapping[str, int]: ...  # by kind: nodes left out as unusable
    # cb(kind, event, node): kind "cs"|"gs"|"ws"; event "added"|"updated"|"removed"|"resync"
    def add_listener(self, cb: Callable[[str, str, Any], object]) -> None: ...
    def remove_listener(self, cb: Callable[[str, str, Any], object]) -> None: ...


class OnlineCounts(NamedTuple):
    """The online counts read for some IPs (a value: the one data type here)."""

    counts: dict[str, int]  # by IP; a missing key counts 0
    unreadable: dict[str, str]  # by IP: the error its key answered (WRONGTYPE ...)


class RedisClient(Protocol):
    """Redis for route cache, refresher and status; is ``cluster.redis.RedisService``.

    ``password`` is read only to scrub it from error texts.
    """

    mode: str
    healthy: bool  # the last probe or call worked
    last_error: str | None
    password: str | None

    def hgetall(self, key: str) -> Deferred[dict[str, str]]: ...
    def read_online_counts(self, ips: Iterable[str]) -> Deferred[OnlineCounts]: ...


class GatewayReplyInfo(Protocol):
    """How a gateway request ended, for the pusher; is ``cluster.gateway_connection.GatewayReply``.

    Also ``cause`` (a :class:`TimeoutCause`, None unless the outcome is
    timeout), read with ``getattr``: a reply without it is a plain deadline.
    """

    @property
    def outcome(self) -> str: ...  # a GatewayOutcome value
    @property
    def gateway(self) -> str: ...
    @property
    def code(self) -> int | None: ...


class GatewayRequester(Protocol):
    """The gateway servers for the pusher and the status.

    Is ``cluster.gateways.GatewayPool`` (TCP) or ``cluster.gateway_udp.UdpGateways``.
    """

    def addresses(self) -> list[str]: ...
    # Where a broadcast goes, one result each: addresses(), or a multicast group.
    def broadcast_addresses(self) -> list[str]: ...
    def request(self, address: str, build: Callable[[int], bytes],
                timeout: float) -> Deferred[Any]: ...  # a GatewayReplyInfo; never errbacks
    def expire_pending(self, cause: TimeoutCause) -> int: ...  # pending requests end timeout
    # Per address: connected, configured, pending, queued_bytes, unanswering (counts),
    # last_error (str|None).
    def status(self) -> Mapping[str, Mapping[str, Any]]: ...


# -- pushing (mpush.services) -------------------------------------------------


class PushOutcomeRow(Protocol):
    """One target's outcome for admission and ``/push``; is ``services.push_results.PushResult``."""

    @property
    def user_id(self) -> str | None: ...
    @property
    def client_type(self) -> int | None: ...
    @property
    def result(self) -> str: ...  # a PushOutcome value
    @property
    def gateway(self) -> str | None: ...
    @property
    def ms(self) -> float: ...
    @property
    def reason(self) -> str | None: ...  # a PushReason value; None on success
    @property
    def code(self) -> int | None: ...  # the gateway's ERROR code, if its answer ended it


class Admission(Protocol):
    """The push limit for ``/push``, drain, metrics; is ``services.admission.PushAdmission``."""

    max_inflight: int
    inflight: int  # user pushes (a broadcast: 1) whose outcome is not known yet
    closing: bool
    outcomes: dict[str, int]  # results given, by PushOutcome value

    @property
    def calls(self) -> int: ...  # push()/broadcast() calls in flight
    def admits(self, cost: int) -> bool: ...
    def when_idle(self) -> Deferred[None]: ...
    def close(self) -> None: ...


class Pusher(Protocol):
    """The push service for ``/push`` and the drain; is ``services.pusher.PushClient``."""

    admission: Admission

    def push(self, user_ids: Sequence[str], content: bytes, *, ack: str = ...,
             timeout_ms: int = ..., tags: Sequence[str] | None = ...,
             ) -> Deferred[list[Any]]: ...
    def broadcast(self, content: bytes, *, tags: Sequence[str] | None = ...,
                  condition: str | None = ..., task_id: str | None = ..., ack: str = ...,
                  timeout_ms: int | None = ...) -> Deferred[list[Any]]: ...
    def expire_all(self) -> int: ...
    def end_all_as_timeout(self) -> int: ...


class RouteLookup(Protocol):
    """One user's routes for ``/users``; is ``services.user_routes.UserRouteReader``."""

    # A UserRoutes; fails with RoutesUnavailable when Redis cannot be read.
    def read(self, user_id: str) -> Deferred[Any]: ...


# -- allocation ---------------------------------------------------------------


class Policy(Protocol):
    """The policy read by ``GET /`` and the status; is ``balance.BalancePolicy`` (JavaPolicy)."""

    def allocate(self) -> bytes | None: ...  # counts a handout
    @property
    def body(self) -> bytes | None: ...  # the same, counting nothing
    @property
    def servers(self) -> tuple[Candidate, ...]: ...


@runtime_checkable
class LoadReporter(Protocol):
    """A policy telling each server's load, for the status; is ``balance.BalancePolicy``."""

    def describe(self, limit: int | None = None) -> Sequence[ServerStatus]: ...


class RefreshReport(Protocol):
    """The refresher's record, for the status; is ``services.refresher.Refresher``."""

    last_success: float | None  # reactor time of the last applied counts
    last_error: str | None
    stale: bool
    refreshes: int
    failures: int
    unreadable: Mapping[str, str]  # IP -> the error its online count key answered
    held: Mapping[str, float]  # kept after a mass drop: address -> when its hold ends
    holds_started: int  # mass drops that held servers


class SharingReport(Protocol):
    """The handout sharer's record; is ``services.handout_sharing.HandoutSharer``."""

    interval: float  # s between exchanges
    exchanges: int  # that worked
    failures: int
    last_ok: float | None  # reactor time of the last exchange that worked
    last_error: str | None  # None while it works


# -- serving and stopping -----------------------------------------------------


class WebListener(Protocol):
    """The listening port, closed by the drain; is ``daemon.listener.WebService``."""

    listening: Any  # the IListeningPort, None when not listening

    def stopService(self) -> Deferred[None] | None: ...


class HttpSite(Protocol):
    """The HTTP site, counted by metrics, closed by the drain; is ``web.site.AllocSite``."""

    requests: dict[tuple[bytes, int], int]  # answered, by (path, status)
    head_timeouts: int
    body_timeouts: int
    body_refusals: int
    stalled_clients: int
    channels: Any  # a sized collection of open connections

    def close_connections(self, wait: float) -> Deferred[tuple[int, int]]: ...


class Draining(Protocol):
    """The stop's flag (set once it began), for the status; is ``services.drain.Drain``."""

    draining: bool


class MetricsExporter(Protocol):
    """The Prometheus text, served by ``/metrics``; is ``daemon.metrics.Metrics``."""

    def exposition(self) -> bytes: ...
