"""The Refresher: feeds the balance policy from ZooKeeper and Redis.

It reads one kind of served node from the ZooKeeper view (the connection
servers of ``GET /``, or the WebSocket servers of ``GET /ws``: ``kind``) and
their online counts from Redis, every ``refresh_interval`` and shortly after
any change under that kind's path, and hands the result to a policy of
:mod:`mpush.balance`. It keeps the last list when the view has no servable
node (never from servers to none) and flags itself ``stale``, and keeps the
servers of a mass drop a while (:mod:`mpush.services.mass_drop`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.arguments import require_non_negative, require_positive
from mpush.balance import ONLINE_KEY_PREFIX, AllocPolicy, Candidate, RefreshToken
from mpush.config.keys import default
from mpush.interfaces import ClusterView, OnlineCounts, RedisClient, ServerNodeInfo
from mpush.reactor import default_reactor
from mpush.server_kinds import KIND_NAMES, SERVED_KINDS
from mpush.services.mass_drop import HoldKeeper

__all__ = [
    "COUNT_BATCH",
    "DEFAULT_CHANGE_DELAY",
    "DEFAULT_REFRESH_INTERVAL",
    "VIEW_LISTS",
    "RefreshSchedule",
    "Refresher",
]

#: Our default period of the count refresh (s): ``mp.alloc.refresh-interval``'s.
#: Handout counting makes the list right between refreshes; the refresh only
#: corrects drift (disconnects, clients of other alloc instances, handouts
#: that never connected).
DEFAULT_REFRESH_INTERVAL: float = default("mp.alloc.refresh-interval")
#: Default delay (s) between a /cluster/cs change and the refresh it causes,
#: so a burst of changes (a cluster restart, a ZK resync) costs one refresh:
#: ``mp.alloc.change-delay``'s.
DEFAULT_CHANGE_DELAY: float = default("mp.alloc.change-delay")
#: Default bound (s) on keeping the servers of a mass drop: ``mp.alloc.mass-drop-hold``'s.
DEFAULT_MASS_DROP_HOLD: float = default("mp.alloc.mass-drop-hold")
#: Default span (s) within which removals add up to one burst: ``mp.alloc.mass-drop-window``'s.
DEFAULT_MASS_DROP_WINDOW: float = default("mp.alloc.mass-drop-window")
#: Online counts read per Redis round trip. Between two, the reactor serves
#: what waits, so a refresh never holds it for long whatever the servers;
#: 500 ZCARDs cost about a millisecond to send and to read back.
COUNT_BATCH = 500
#: New unreadable count keys logged one by one per refresh; more are summed
#: up in one line, so a Redis full of wrong keys cannot flood the log.
UNREADABLE_LOGGED = 10
#: The kinds of node a Refresher can serve (:data:`mpush.server_kinds.SERVED_KINDS`)
#: -> the view's method listing them. Both count their users in ``mp:oul:<ip>``.
VIEW_LISTS = {"cs": "connection_servers", "ws": "websocket_servers"}


# --------------------------------------------------------------------------
# Refresher service
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshSchedule:
    """When a :class:`Refresher` refreshes, and how long one may take; checked when built."""

    interval: float = DEFAULT_REFRESH_INTERVAL  # s between refreshes
    change_delay: float = DEFAULT_CHANGE_DELAY  # s from a /cluster/cs change to its refresh
    # Bound (s) on one count fetch, None: the interval. RedisService promises
    # to fail sooner, but a refresh that never ends would block every later one.
    timeout: float | None = None
    batch: int = COUNT_BATCH  # online counts read per Redis round trip
    mass_drop_hold: float = DEFAULT_MASS_DROP_HOLD  # s a mass drop's servers stay; 0: off
    mass_drop_window: float = DEFAULT_MASS_DROP_WINDOW  # s between removals of one burst

    def __post_init__(self) -> None:
        require_positive(interval=self.interval, batch=self.batch)
        require_non_negative(change_delay=self.change_delay,
                             mass_drop_hold=self.mass_drop_hold,
                             mass_drop_window=self.mass_drop_window)
        if self.timeout is not None:
            require_positive(timeout=self.timeout)

    @property
    def burst_window(self) -> float:
        """Removals less apart than this add up to one burst: at least twice the change
        delay, since a burst of ZooKeeper events costs a refresh per change delay."""
        return max(self.mass_drop_window, 2 * self.change_delay)

    @property
    def fetch_timeout(self) -> float:
        """The bound on one count fetch, in seconds."""
        return self.interval if self.timeout is None else self.timeout


def _same(a: list[Candidate], b: list[Candidate]) -> bool:
    """The same candidates, in the same order (by identity: cheap)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _candidate(node: ServerNodeInfo) -> Candidate:
    """A node as served to clients. The view holds only servable nodes: an IPv4
    address or host name, a port of 1-65535 (``ServerNode.parse`` checks them)."""
    host = node.public_host
    return Candidate(f"{host}:{node.port}", host, node.weight)


class Refresher(Service):
    """Keeps the policy's list in step with ZooKeeper and Redis.

    A refresh reads the view, sets the servers, then asks Redis for the
    online counts. It runs every ``interval`` seconds and ``change_delay``
    seconds after a change of its ``kind`` (``/cluster/cs`` or
    ``/cluster/ws``; a burst of changes gives one refresh), as its
    :class:`RefreshSchedule` says; it listens to the view only while
    running. Refreshes never overlap: one asked for while another is in
    flight runs once right after it. Failures are logged on state changes,
    never raised: the loop keeps running and the last order keeps serving.
    """

    log = Logger()

    def __init__(self, policy: AllocPolicy, view: ClusterView, cache: RedisClient, *,
                 schedule: RefreshSchedule | None = None, reactor: Any = None,
                 kind: str = "cs") -> None:
        if kind not in SERVED_KINDS:
            raise ValueError(f"kind must be one of {sorted(SERVED_KINDS)}, not {kind!r}")
        self.kind = kind  # the view's kind of node served: "cs" (GET /) or "ws" (GET /ws)
        self._list_nodes, self._words = VIEW_LISTS[kind], KIND_NAMES[kind]
        # Told apart in the lines both refreshers write about Redis.
        self._of = "" if kind == "cs" else " for GET /ws"
        self.policy = policy
        self._view = view
        self._cache = cache
        self.schedule = RefreshSchedule() if schedule is None else schedule
        self._reactor = default_reactor(reactor)

        self.last_success: float | None = None  # reactor time of the last applied counts
        self.last_error: str | None = None  # why the last count fetch failed, None if it worked
        self.stale = False  # serving a list the view no longer shows
        self.refreshes = 0  # completed refreshes
        self.failures = 0  # refreshes whose count fetch failed (or that raised)
        # IP -> the error its mp:oul key answered at the last fetch (its
        # servers keep their last count); bounded by the list's IPs.
        self.unreadable: dict[str, str] = {}
        # Called with each refresh's duration in seconds (reactor time): metrics.
        self.on_refreshed: Callable[[float], None] | None = None
        self._started = 0.0

        self._loop: LoopingCall | None = None
        self._pending_change: IDelayedCall | None = None
        self._busy = False
        self._again = False
        self._inflight: Deferred[Any] | None = None  # the count fetch, for cancelling
        self._waiters: list[Deferred[None]] = []
        # Node name -> (the node, its candidate): a node object the view still
        # holds is not read again, so an unchanged view costs no new objects.
        self._made: dict[str, tuple[ServerNodeInfo, Candidate]] = {}
        self._served: list[Candidate] = []  # the last list given to the policy
        self.hold = HoldKeeper(self.schedule.mass_drop_hold, self.schedule.burst_window,
                               self._reactor, self.refresh, f"{self._words}s")

    @property
    def held(self) -> Mapping[str, float]:
        """Servers kept after a mass drop: served address -> reactor time their hold ends."""
        return self.hold.held

    @property
    def holds_started(self) -> int:
        return self.hold.holds_started

    # -- lifecycle ------------------------------------------------------

    def startService(self) -> None:
        if self.running:
            return
        super().startService()
        self._view.add_listener(self._on_view_event)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._reactor
        # _tick never raises, so this Deferred only fires on stop.
        self._loop.start(self.schedule.interval, now=True)

    def stopService(self) -> None:
        if not self.running:
            return
        super().stopService()
        self._view.remove_listener(self._on_view_event)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._pending_change is not None and self._pending_change.active():
            self._pending_change.cancel()
        self._pending_change = None
        self._again = False
        self.hold.stop()
        if self._inflight is not None:
            self._inflight.cancel()  # fires the chain now, with CancelledError

    # -- triggers -------------------------------------------------------

    def _tick(self) -> None:
        # Not returning the Deferred: the loop must keep its period even
        # when a refresh is slow; overlap is handled by refresh() itself.
        self.refresh()

    def _on_view_event(self, kind: str, event: str, node: Any) -> None:
        if kind != self.kind or not self.running:
            return
        if self._pending_change is not None and self._pending_change.active():
            return  # the scheduled refresh will read the view as it is then
        self._pending_change = self._reactor.callLater(self.schedule.change_delay,
                                                       self._on_change_due)

    def _on_change_due(self) -> None:
        self._pending_change = None
        self.refresh()

    def refresh(self) -> Deferred[None]:
        """Refresh now, or once more right after the refresh in flight.
        The Deferred fires (never fails) when that refresh is done."""
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self._busy:
            self._again = True
        else:
            self._run()
        return d

    def _run(self) -> None:
        self._busy = True
        self._again = False
        waiters, self._waiters = self._waiters, []
        self._started = self._reactor.seconds()
        d = maybeDeferred(self._refresh_once)
        d.addErrback(self._unexpected)
        d.addBoth(self._done, waiters)

    def _unexpected(self, failure: Failure) -> None:
        self.failures += 1
        self.log.failure("unexpected error in refresh", failure)

    def _done(self, _: object, waiters: list[Deferred[None]]) -> None:
        self._busy = False
        self.refreshes += 1
        observe = self.on_refreshed
        if observe is not None:
            observe(max(0.0, self._reactor.seconds() - self._started))
        for w in waiters:
            w.callback(None)
        if self._again and self.running:
            self._run()
        elif self._waiters:
            # Stopped with callers still waiting: release them.
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.callback(None)

    # -- one refresh ----------------------------------------------------

    def _refresh_once(self) -> Deferred[None] | None:
        nodes = self._nodes()
        candidates = self.hold.serve(self._candidates(nodes))
        if candidates:
            if self.stale:
                self.stale = False
                self.log.info(
                    "{what}s are back in ZooKeeper ({n}); list fresh again",
                    what=self._words, n=len(candidates),
                )
            if not _same(candidates, self._served):
                self.policy.set_servers(candidates)
                self._served = candidates
        elif self.policy.servers:
            # The Java alloc never goes from servers to none: a client keeps
            # trying the last list, which is better than "no server".
            if not self.stale:
                self.stale = True
                self.log.warn(
                    "no servable {what} in ZooKeeper ({n} nodes, view "
                    "{state}); keeping the last list of {m} (stale)",
                    what=self._words, n=len(nodes),
                    state=getattr(self._view, "state", "?"),
                    m=len(self.policy.servers),
                )
        else:
            return None  # nothing known yet: GET / (GET /ws) answers 503
        token = self.policy.begin_refresh()
        # Held servers keep their last count: a server that is really gone may
        # have had its key cleared, and would then look empty and draw everyone.
        frozen = self.hold.frozen_ips()
        ips = tuple(ip for ip in token.ips if ip not in frozen) if frozen else token.ips
        if not ips:
            return None
        d = ensureDeferred(self._read_counts(ips))
        d.addTimeout(self.schedule.fetch_timeout, self._reactor)
        self._inflight = d
        d.addCallbacks(self._counts_ok, self._counts_failed, callbackArgs=(token, frozen))
        return d

    def _nodes(self) -> Mapping[str, ServerNodeInfo]:
        """The view's nodes of this refresher's kind."""
        list_nodes: Callable[[], Mapping[str, ServerNodeInfo]] = getattr(self._view,
                                                                         self._list_nodes)
        return list_nodes()

    def _candidates(self, nodes: Mapping[str, ServerNodeInfo]) -> list[Candidate]:
        made, self._made = self._made, {}
        out: list[Candidate] = []
        for name in sorted(nodes):  # a stable order for equal loads
            node = nodes[name]
            entry = made.get(name)
            if entry is None or entry[0] is not node:
                entry = (node, _candidate(node))
            self._made[name] = entry  # the same tuple again: nothing new to collect
            out.append(entry[1])
        return out

    async def _read_counts(self, ips: tuple[str, ...]) -> OnlineCounts:
        """The counts of ``ips``, one Redis round trip per batch, the
        reactor free between two."""
        read = OnlineCounts({}, {})
        batch = self.schedule.batch
        for start in range(0, len(ips), batch):
            if start:
                await deferLater(self._reactor, 0, lambda: None)
            part = await self._cache.read_online_counts(ips[start:start + batch])
            read.counts.update(part.counts)
            read.unreadable.update(part.unreadable)
        return read

    def _counts_ok(self, read: OnlineCounts, token: RefreshToken,
                   frozen: frozenset[str]) -> None:
        self._inflight = None
        # A frozen IP is passed as unreadable: the policy keeps its count and handouts.
        self.policy.apply_counts(token, read.counts,
                                 read.unreadable.keys() | frozen if frozen else read.unreadable)
        self._note_unreadable(read.unreadable)
        self.last_success = self._reactor.seconds()
        if self.last_error is not None:
            self.log.info("online counts from Redis are back{of}", of=self._of)
            self.last_error = None

    def _note_unreadable(self, unreadable: dict[str, str]) -> None:
        # Logged once per key while it stays unreadable: the key is the
        # problem (written by something else), not Redis.
        new = [ip for ip in unreadable if ip not in self.unreadable]
        for ip in new[:UNREADABLE_LOGGED]:
            self.log.warn(
                "cannot read the online count of {ip}: Redis key {key} answers {error}; "
                "its {what}s keep their last count",
                ip=ip, key=ONLINE_KEY_PREFIX + ip, error=unreadable[ip], what=self._words)
        if len(new) > UNREADABLE_LOGGED:
            self.log.warn("... and {n} more online count keys that cannot be read",
                          n=len(new) - UNREADABLE_LOGGED)
        healed = sum(1 for ip in self.unreadable if ip not in unreadable)
        if healed:
            self.log.info("{n} online count key(s) readable again", n=healed)
        self.unreadable = unreadable

    def _counts_failed(self, failure: Failure) -> None:
        self._inflight = None
        if not self.running:
            return  # cancelled by stopService: not a Redis problem
        self.failures += 1
        if failure.check(defer.TimeoutError):
            # addTimeout's own error reads "(1.0, 'Deferred')".
            message = f"no answer within {self.schedule.fetch_timeout:g} s"
        else:
            message = failure.getErrorMessage() or failure.type.__name__
        if self.last_error is None:
            self.log.warn(
                "cannot read online counts from Redis{of} ({error}); keeping the last "
                "known order and counting handouts",
                error=message, of=self._of,
            )
        self.last_error = message
