"""``GET /metrics``: the daemon's Prometheus metrics (``prometheus-client``).

Each daemon has its own :class:`~prometheus_client.CollectorRegistry` (never
the process-wide one: tests run several daemons in one process). Most
metrics are read from the daemon's state when scraped, by
:class:`StateCollector`: the request path pays nothing for them, and a
labelled series (a connection server, a gateway) is there exactly while its
subject is, so churn in ZooKeeper cannot make the output grow. The request
path pays for three histograms only (``GET /`` latency, push latency,
refresh duration, each a handful of additions) and for a dict increment per
answered request (``AllocSite.requests``). docs/operations.md ("Metrics") documents
every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet.interfaces import IReactorTime

from mpush.daemon.server_series import SERVER_SERIES_LIMIT, ServerSeries
from mpush.interfaces import Admission, HttpSite, LoadReporter
from mpush.reactor import default_reactor
from mpush.services.status import (
    AllocationStatus,
    DatagramStatus,
    GatewaysStatus,
    RedisStatus,
    RefreshStatus,
    SharingStatus,
    Status,
    ZooKeeperStatus,
)

PREFIX = "mpush_alloc_"
#: The reasons of the UDP socket's counts, each a series from the start (0 until seen).
DROP_REASONS = ("unknown_sender", "malformed", "unmatched")
REFUSE_REASONS = ("too_large", "send_failed")
#: ZooKeeper states, each a series of ``mpush_alloc_zookeeper_state``
#: (1 for the current one); a state not listed here gets a series while current.
ZK_STATES = ("connected", "suspended", "lost", "stopped")

# Buckets, in seconds. GET / is answered in ~0.1 ms in-process.
ROOT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0)
PUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0)
REFRESH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def _counter(name: str, documentation: str, value: float) -> Metric:
    """An unlabelled counter series, ``mpush_alloc_`` + ``name``."""
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    """An unlabelled gauge series, ``mpush_alloc_`` + ``name``."""
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _gauges(*rows: tuple[str, str, float]) -> Iterator[Metric]:
    """Unlabelled gauges of (name, documentation, value) rows."""
    for name, documentation, value in rows:
        yield _gauge(name, documentation, value)


# -- the collector ------------------------------------------------------------


class StateCollector:
    """Reads the daemon's state at scrape time: one :class:`Status` snapshot
    (the same reading ``/health`` renders), the site's and the pushes'
    counters. Every part is optional."""

    def __init__(self, status: Status | None = None, *, site: HttpSite | None = None,
                 push: Admission | None = None) -> None:
        self.status = Status() if status is None else status
        self.site = site
        self.push = push
        self._series = ServerSeries()

    def collect(self) -> Iterator[Metric]:
        # No rows: the per-server series are written by server_series().
        snap = self.status.snapshot(rows=False)
        # In the order of the exposition; a part that is None is not there.
        parts: tuple[tuple[Any, Callable[[Any], Iterator[Metric]]], ...] = (
            (self.site, self._site),
            (snap.allocation, self._allocation),
            (snap.refresh, self._refresh),
            (snap.websocket, self._websocket),
            (snap.websocket_refresh, self._websocket_refresh),
            (self.push, self._push),
            (snap.gateways, self._gateways),
            (snap.zookeeper, self._zk),
            (snap.redis, self._redis),
            (snap.draining, self._draining),
            (snap.sharing, self._sharing),
        )
        for part, render in parts:
            if part is not None:
                yield from render(part)

    def _site(self, site: HttpSite) -> Iterator[Metric]:
        requests = CounterMetricFamily(PREFIX + "http_requests",
                                       "HTTP requests answered, by path and status",
                                       labels=["path", "status"])
        for (path, status), n in sorted(site.requests.items()):
            requests.add_metric([path.decode("ascii", "replace"), str(status)], n)
        yield requests
        refused = CounterMetricFamily(PREFIX + "http_refused",
                                      "Requests refused before they were served, by reason",
                                      labels=["reason"])
        refused.add_metric(["head_timeout"], site.head_timeouts)
        refused.add_metric(["body_timeout"], site.body_timeouts)
        refused.add_metric(["body_too_large"], site.body_refusals)
        yield refused
        yield _counter("http_stalled_clients",
                       "Connections aborted: their client left the answers unread",
                       site.stalled_clients)
        yield _gauge("http_connections", "Open HTTP connections", len(site.channels))

    def _allocation(self, allocation: AllocationStatus) -> Iterator[Metric]:
        yield _gauge("servers", "Connection servers in the allocation list", allocation.servers)
        yield _gauge("server_series_omitted", "Servers of the list without per-server series"
                     f" (beyond the first {SERVER_SERIES_LIMIT:,} of the GET / order)",
                     max(0, allocation.servers - SERVER_SERIES_LIMIT))

    def server_series(self) -> bytes:
        """The per-server families, as text (see :mod:`mpush.daemon.server_series`)."""
        policy = self.status.policy
        if not isinstance(policy, LoadReporter):
            return b""  # no per-server load to show (none, or not the daemon's policy)
        return self._series.render(policy.describe(SERVER_SERIES_LIMIT))

    def _refresh(self, refresh: RefreshStatus) -> Iterator[Metric]:
        yield _counter("refreshes", "Refreshes of the allocation list done", refresh.refreshes)
        yield _counter("refresh_failures", "Refreshes whose online counts could not be read",
                       refresh.failures)
        yield _gauge("servers_stale", "1 while serving a list ZooKeeper no longer shows",
                     1 if refresh.stale else 0)
        yield _gauge("servers_held", "Connection servers kept in the list after a mass drop"
                     " (they left ZooKeeper; each until it registers again or its hold ends)",
                     refresh.held)
        yield _counter("mass_drop_holds", "Mass drops of connection servers that started a hold",
                       refresh.holds_started)
        yield _gauge("unreadable_count_keys", "Online count keys (mp:oul:<ip>) the last refresh"
                     " could not read (a wrong type); their servers keep their last count",
                     refresh.unreadable_keys)

    def _websocket(self, websocket: AllocationStatus) -> Iterator[Metric]:
        yield _gauge("websocket_servers", "WebSocket servers in the GET /ws list",
                     websocket.servers)

    def _websocket_refresh(self, refresh: RefreshStatus) -> Iterator[Metric]:
        yield _counter("websocket_refreshes", "Refreshes of the GET /ws list done",
                       refresh.refreshes)
        yield _counter("websocket_refresh_failures", "Refreshes of the GET /ws list whose"
                       " online counts could not be read", refresh.failures)
        yield _gauge("websocket_servers_stale", "1 while GET /ws serves a list ZooKeeper no"
                     " longer shows", 1 if refresh.stale else 0)
        yield _gauge("websocket_servers_held", "WebSocket servers kept in the GET /ws list"
                     " after a mass drop", refresh.held)
        yield _counter("websocket_mass_drop_holds", "Mass drops of WebSocket servers that"
                       " started a hold", refresh.holds_started)

    def _push(self, push: Admission) -> Iterator[Metric]:
        outcomes = CounterMetricFamily(PREFIX + "push_outcomes",
                                       "Push outcomes answered, by result (one per target;"
                                       " a broadcast: one per gateway)", labels=["result"])
        for result, n in push.outcomes.items():
            outcomes.add_metric([result], n)
        yield outcomes
        yield _gauge("push_inflight", "User pushes (a broadcast: 1) whose outcome is not known yet",
                     push.inflight)

    def _gateways(self, gateways: GatewaysStatus) -> Iterator[Metric]:
        labels = ["gateway"]
        connected = GaugeMetricFamily(PREFIX + "gateway_connections",
                                      "Connected connections to this gateway server", labels=labels)
        configured = GaugeMetricFamily(PREFIX + "gateway_configured_connections",
                                       "Connections kept to this gateway server when all is"
                                       " well", labels=labels)
        pending = GaugeMetricFamily(PREFIX + "gateway_pending_requests",
                                    "Requests sent to this gateway server awaiting an answer",
                                    labels=labels)
        for g in gateways.servers:
            connected.add_metric([g.address], g.connected)
            configured.add_metric([g.address], g.configured)
            pending.add_metric([g.address], g.pending)
        yield connected
        yield configured
        yield pending
        yield from _gauges(
            ("gateways_known", "Gateway servers known", gateways.known),
            ("gateways_connected", "Gateway servers with at least one connected connection",
             gateways.up),
            ("gateways_connections", "Connected gateway connections, all servers",
             gateways.connections),
            ("gateways_pending_requests", "Gateway requests awaiting an answer, all servers",
             gateways.pending))
        transport = GaugeMetricFamily(PREFIX + "gateway_transport",
                                      "1 for how the gateway servers are reached"
                                      " (mp.net.gateway-server-net)", labels=["transport"])
        for name in ("tcp", "udp"):
            transport.add_metric([name], 1 if gateways.transport == name else 0)
        yield transport
        if gateways.datagrams is not None:
            yield from self._datagrams(gateways.datagrams)

    def _datagrams(self, datagrams: DatagramStatus) -> Iterator[Metric]:
        yield _counter("gateway_datagrams_sent", "UDP datagrams sent to gateway servers",
                       datagrams.sent)
        yield _counter("gateway_datagrams_received", "UDP datagrams received on the gateway"
                       " socket", datagrams.received)
        for name, text, counts in (
                ("gateway_datagrams_dropped", "UDP datagrams received and ignored, by reason",
                 dict(datagrams.dropped)),
                ("gateway_datagrams_refused", "Gateway requests not sent as datagrams, by"
                 " reason", dict(datagrams.refused))):
            family = CounterMetricFamily(PREFIX + name, text, labels=["reason"])
            reasons = DROP_REASONS if name.endswith("dropped") else REFUSE_REASONS
            for reason in dict.fromkeys((*reasons, *counts)):
                family.add_metric([reason], counts.get(reason, 0))
            yield family

    def _redis(self, redis: RedisStatus) -> Iterator[Metric]:
        yield _gauge("redis_up", "1 while Redis answers (the last probe or call worked)",
                     1 if redis.reachable else 0)

    def _sharing(self, sharing: SharingStatus) -> Iterator[Metric]:
        yield _counter("handout_exchanges", "Exchanges of handout counts with the other alloc"
                       " instances (through Redis) that worked", sharing.exchanges)
        yield _counter("handout_exchange_failures", "Exchanges of handout counts that failed",
                       sharing.failures)
        yield _gauge("handout_sharing_ok", "1 while the last exchange of handout counts worked",
                     1 if sharing.last_error is None else 0)

    def _draining(self, draining: bool) -> Iterator[Metric]:
        yield _gauge("draining", "1 once the daemon is stopping", 1 if draining else 0)

    def _zk(self, zk: ZooKeeperStatus) -> Iterator[Metric]:
        state = GaugeMetricFamily(PREFIX + "zookeeper_state",
                                  "1 for the ZooKeeper session's current state, 0 for the"
                                  " others", labels=["state"])
        current = zk.state
        for name in ZK_STATES if current in ZK_STATES else (*ZK_STATES, current):
            state.add_metric([name], 1 if name == current else 0)
        yield state
        yield from _gauges(
            ("zookeeper_connection_servers", "Connection server nodes in the ZooKeeper view",
             zk.connection_servers),
            ("zookeeper_gateway_servers", "Gateway server nodes in the ZooKeeper view",
             zk.gateway_servers),
            ("zookeeper_rejected_connection_servers",
             "Connection server nodes left out of the view: unusable data",
             zk.rejected_connection_servers),
            ("zookeeper_rejected_gateway_servers",
             "Gateway server nodes left out of the view: unusable data",
             zk.rejected_gateway_servers),
            ("zookeeper_websocket_servers", "WebSocket server nodes in the ZooKeeper view",
             zk.websocket_servers),
            ("zookeeper_rejected_websocket_servers",
             "WebSocket server nodes left out of the view: unusable data",
             zk.rejected_websocket_servers))


# -- the daemon's metrics -----------------------------------------------------


class Metrics:
    """A daemon's registry: its :class:`StateCollector` and three histograms.

    Hook the histograms in with :meth:`attach`; serve with
    :class:`mpush.web.metrics.MetricsResource`.
    """

    #: A text at least this large (a list of some 500 servers or more) is
    #: served again, for ``reuse_for`` seconds, to the scrapes that follow:
    #: scrapers in a loop then cost one rendering per period, not one each.
    #: Smaller texts are cheap and always made anew.
    reuse_from = 64 * 1024
    reuse_for = 0.1

    def __init__(self, collector: StateCollector | None = None, *,
                 clock: IReactorTime | None = None) -> None:
        self._clock = clock  # for the reuse period; None: the global reactor, when needed
        self._last: tuple[float, bytes] | None = None  # (made at, text) of a large text
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = collector or StateCollector()
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self.root_latency = Histogram(
            PREFIX + "root_request_duration_seconds",
            "GET / from the complete request to its answer (in the daemon)",
            buckets=ROOT_BUCKETS, registry=self.registry)
        self.push_latency = Histogram(
            PREFIX + "push_duration_seconds",
            "From a push's start to each target's outcome (forced timeouts at shutdown"
            " not included)", buckets=PUSH_BUCKETS, registry=self.registry)
        self.refresh_duration = Histogram(
            PREFIX + "refresh_duration_seconds",
            "One refresh of the allocation list (ZooKeeper view and Redis counts)",
            buckets=REFRESH_BUCKETS, registry=self.registry)

    def attach(self, *, site: Any = None, push: Any = None, refresher: Any = None) -> None:
        """Sets the observe hooks of the objects given (and reads them at scrape time)."""
        if site is not None:
            site.observe_root = self.root_latency.observe
            self.collector.site = site
        if push is not None:
            push.observe_push = self.push_latency.observe
            self.collector.push = push
        if refresher is not None:
            refresher.on_refreshed = self.refresh_duration.observe
            self.collector.status.refresher = refresher

    def exposition(self) -> bytes:
        """The Prometheus text (format 0.0.4); a large one is at most
        ``reuse_for`` seconds old."""
        self._clock = default_reactor(self._clock)
        now = self._clock.seconds()
        last = self._last
        if last is not None and 0 <= now - last[0] < self.reuse_for:
            return last[1]
        text = generate_latest(self.registry) + self.collector.server_series()
        self._last = (now, text) if len(text) >= self.reuse_from else None
        return text
