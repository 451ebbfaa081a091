"""Which connection servers a client is told to use (``GET /``).

Two layers:

* a pure policy (:class:`BalancePolicy`, and :class:`JavaPolicy` for
  comparison) that holds the ordered server list and the pre-rendered body;
* :class:`Refresher`, a service that feeds the policy from the ZooKeeper view
  and the Redis online counts.

How the Java ``mpusher/alloc`` (0.8.x ``AllocHandler``) does it, for
reference: every 5 minutes and on every add/update/remove under
``/cluster/cs`` it reads the cached nodes, takes ``attrs.public_ip`` (else
``host``) as the address, ZCARDs ``mp:oul:<that ip>`` one key after another,
sorts ascending by that count (a stable sort, so ties keep ZK order) and
serves ``ip:port,ip:port``. It only replaces its list when ZK returns at least
one node. Between refreshes it hands the same first server to every client:
with a 5-minute period every new client herds onto one server.

Our policy counts its own handouts between refreshes, so the head moves on as
soon as it is no longer the least loaded (load = (online + handed out) /
weight), and reconciles them exactly against fresh counts (snapshot at refresh
start, subtract on arrival; see DESIGN.md).

Where the "never go from servers to none" rule lives: in the
:class:`Refresher`. The policies are literal (``set_servers([])`` empties
them); the Refresher keeps the last list when the view has no servable node
and flags itself ``stale``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mpush.config.keys import default

__all__ = [
    "DEFAULT_CHANGE_DELAY",
    "DEFAULT_REFRESH_INTERVAL",
    "JAVA_REFRESH_INTERVAL",
    "BalancePolicy",
    "Candidate",
    "JavaPolicy",
    "RefreshToken",
    "Refresher",
    "ServerStatus",
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
#: The Java alloc's fixed period (``scheduleAtFixedRate(..., 5, MINUTES)``).
JAVA_REFRESH_INTERVAL = 300.0


# --------------------------------------------------------------------------
# Pure policy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One connection server as clients see it."""

    address: str  # "ip:port", exactly as served; ip = the node's public host
    ip: str  # the IP whose mp:oul:<ip> sorted set counts this server's users
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a finite number > 0, not {self.weight!r}")
        if not self.address or not self.ip:
            raise ValueError("address and ip must not be empty")


@dataclass(frozen=True)
class RefreshToken:
    """What :meth:`begin_refresh` hands out: the IPs to count (``ips``) and
    the handouts made so far, which the fresh counts will already include."""

    seq: int
    ips: tuple[str, ...]
    handouts: Mapping[str, int]  # address -> handed out before the snapshot


@dataclass(frozen=True)
class ServerStatus:
    """Inspection view of one server (health pages, metrics, tests)."""

    address: str
    ip: str
    weight: float
    online: float  # this server's share of its IP's last known count
    handed: int  # handed out since the last applied count
    load: float  # (online + handed) / weight
    allocated: int = 0  # handed out since it joined the list (only grows; metrics)


class AllocPolicy(Protocol):
    def set_servers(self, candidates: Iterable[Candidate]) -> None: ...
    def begin_refresh(self) -> RefreshToken: ...
    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int]) -> bool: ...
    def allocate(self) -> bytes | None: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def servers(self) -> tuple[Candidate, ...]: ...


def _dedupe(candidates: Iterable[Candidate]) -> list[Candidate]:
    # Two ZK nodes can name one address (a restarted server whose old
    # ephemeral node has not expired yet): serve it once, first one wins.
    seen: dict[str, Candidate] = {}
    for c in candidates:
        seen.setdefault(c.address, c)
    return list(seen.values())


def _count(value: Any) -> int:
    # A count from Redis: anything odd (None, negative, garbage) counts as 0
    # rather than poisoning the order.
    try:
        n = int(value)
    except (TypeError, ValueError):
        return 0
    return n if n > 0 else 0


class _Server:
    __slots__ = ("address", "candidate", "encoded", "given", "handed", "ip", "online", "weight")

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.address = candidate.address
        self.ip = candidate.ip
        self.weight = candidate.weight
        self.encoded = candidate.address.encode("utf-8")
        self.online = 0.0
        self.handed = 0
        self.given = 0  # handouts already inside an applied count (handed moves here)

    def key(self) -> tuple[float, str]:
        # The one place the load is computed, so every comparison sees the
        # same float for the same state.
        return ((self.online + self.handed) / self.weight, self.address)


class BalancePolicy:
    """Least loaded first, counting our own handouts between refreshes.

    ``allocate()`` is O(log n) plus a small list move: after a handout only
    the head's load grows, so only the head can move, and only down. The body
    is re-rendered lazily, only when the order changed.
    """

    def __init__(self) -> None:
        self._order: list[_Server] = []
        self._keys: list[tuple[float, str]] = []  # parallel to _order, ascending
        self._by_address: dict[str, _Server] = {}
        self._ip_counts: dict[str, int] = {}  # last known ZCARD per IP
        self._body: bytes | None = None
        self._seq = 0  # seq of the latest begin_refresh; only that token applies

    # -- feeding --------------------------------------------------------

    def set_servers(self, candidates: Iterable[Candidate]) -> None:
        """Replace the server set. Servers that stay keep their counts and
        handouts. A new server gets its share of its IP's last known count,
        or 0 when the IP is new: a freshly registered server is usually empty,
        the refresh that follows a change corrects it within one Redis round
        trip, and until then handout counting stops it from taking more than
        its share."""
        by_address: dict[str, _Server] = {}
        for c in _dedupe(candidates):
            s = self._by_address.get(c.address)
            if s is None or s.ip != c.ip:
                s = _Server(c)
            else:
                s.candidate, s.weight = c, c.weight
            by_address[c.address] = s
        self._by_address = by_address
        self._split_counts(self._ip_counts.keys())
        self._resort()

    def begin_refresh(self) -> RefreshToken:
        self._seq += 1
        ips = tuple(sorted({s.ip for s in self._order}))
        handouts = {s.address: s.handed for s in self._order if s.handed}
        return RefreshToken(self._seq, ips, handouts)

    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int]) -> bool:
        """Take fresh online counts (by IP) for the IPs of ``token``; an IP
        missing from ``counts`` has 0 users. Handouts made before the token
        are now inside the counts, so they are subtracted; later ones stay.
        Returns False (and changes nothing) for a token that a later
        :meth:`begin_refresh` superseded: its snapshot would be subtracted
        twice."""
        if token.seq != self._seq:
            return False
        self._seq += 1  # a token applies once
        for address, n in token.handouts.items():
            s = self._by_address.get(address)
            if s is not None:
                # max(): the server may have been removed and re-added since
                # the snapshot, starting again from 0.
                taken = min(n, s.handed)
                s.handed -= taken
                s.given += taken
        for ip in token.ips:
            self._ip_counts[ip] = _count(counts.get(ip, 0))
        # Forget IPs no server uses any more, so the dict stays bounded.
        live = {s.ip for s in self._by_address.values()}
        for ip in [ip for ip in self._ip_counts if ip not in live]:
            del self._ip_counts[ip]
        self._split_counts(token.ips)
        self._resort()
        return True

    def _split_counts(self, ips: Iterable[str]) -> None:
        # mp:oul is keyed by IP only: servers sharing an IP share one count.
        # Split it in proportion to weight, i.e. assume the group is already
        # balanced the way we balance; handouts then spread inside the group.
        groups: dict[str, list[_Server]] = {}
        for s in self._by_address.values():
            groups.setdefault(s.ip, []).append(s)
        for ip in ips:
            group = groups.get(ip)
            total = self._ip_counts.get(ip)
            if not group or total is None:
                continue
            wsum = sum(s.weight for s in group)
            for s in group:
                s.online = total * s.weight / wsum

    def _resort(self) -> None:
        order = sorted(self._by_address.values(), key=_Server.key)
        self._order = order
        self._keys = [s.key() for s in order]
        self._body = None

    # -- serving --------------------------------------------------------

    def allocate(self) -> bytes | None:
        """The body for one client; counts one handout to its first server."""
        order = self._order
        if not order:
            return None
        body = self._body
        if body is None:
            body = self._body = b",".join([s.encoded for s in order])
        head = order[0]
        head.handed += 1
        key = ((head.online + head.handed) / head.weight, head.address)
        keys = self._keys
        if len(keys) > 1 and key > keys[1]:
            del keys[0], order[0]
            i = bisect_left(keys, key)
            keys.insert(i, key)
            order.insert(i, head)
            self._body = None
        else:
            keys[0] = key
        return body

    @property
    def body(self) -> bytes | None:
        """The current body, without counting a handout."""
        if not self._order:
            return None
        if self._body is None:
            self._body = b",".join([s.encoded for s in self._order])
        return self._body

    @property
    def servers(self) -> tuple[Candidate, ...]:
        return tuple(s.candidate for s in self._order)

    def describe(self) -> list[ServerStatus]:
        return [
            ServerStatus(s.address, s.ip, s.weight, s.online, s.handed, k[0],
                         s.given + s.handed)
            for s, k in zip(self._order, self._keys, strict=True)
        ]


class JavaPolicy:
    """The Java alloc's order, for comparison: ascending by the IP's online
    count as of the last refresh (every server on an IP gets the whole IP's
    count), ties in candidate order (Java's sort is stable); handouts are
    not counted, so the head only changes at a refresh."""

    def __init__(self) -> None:
        self._candidates: list[Candidate] = []
        self._ip_counts: dict[str, int] = {}
        self._order: tuple[Candidate, ...] = ()
        self._body: bytes | None = None
        self._seq = 0

    def set_servers(self, candidates: Iterable[Candidate]) -> None:
        self._candidates = _dedupe(candidates)
        self._resort()

    def begin_refresh(self) -> RefreshToken:
        self._seq += 1
        return RefreshToken(self._seq, tuple(sorted({c.ip for c in self._candidates})), {})

    def apply_counts(self, token: RefreshToken, counts: Mapping[str, int]) -> bool:
        if token.seq != self._seq:
            return False
        self._seq += 1
        for ip in token.ips:
            self._ip_counts[ip] = _count(counts.get(ip, 0))
        self._resort()
        return True

    def _resort(self) -> None:
        self._order = tuple(sorted(self._candidates, key=lambda c: self._ip_counts.get(c.ip, 0)))
        self._body = b",".join(c.address.encode("utf-8") for c in self._order) or None

    def allocate(self) -> bytes | None:
        return self._body

    @property
    def body(self) -> bytes | None:
        return self._body

    @property
    def servers(self) -> tuple[Candidate, ...]:
        return self._order


# --------------------------------------------------------------------------
# Refresher service
# --------------------------------------------------------------------------


class ServerNodeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def public_host(self) -> str: ...
    @property
    def weight(self) -> float: ...


class ViewLike(Protocol):
    """What the Refresher needs of mpush.zk.ZkWatcher."""

    initialized: bool
    state: str

    def connection_servers(self) -> Mapping[str, ServerNodeLike]: ...
    def add_listener(self, cb: Callable[[str, str, Any], None]) -> None: ...


class CacheLike(Protocol):
    """What the Refresher needs of mpush.cache.RedisService."""

    def online_counts(self, ips: Iterable[str]) -> Deferred[dict[str, int]]: ...


def _candidate_or_reason(node: ServerNodeLike) -> Candidate | str:
    """A node as served to clients, or why it cannot be served."""
    host = node.public_host
    if not host:
        return "it has no host"
    if ":" in host:
        # The Java client SDK splits each entry on ':' and drops any that does
        # not give exactly two parts, so an IPv6 address would be silently
        # lost, or worse, break the entries after it on older SDKs.
        return f"its address {host!r} is IPv6, which the client SDK cannot parse"
    port = node.port
    if not isinstance(port, int) or not 0 < port < 65536:
        return f"its port {port!r} is invalid"
    weight = node.weight
    if not (isinstance(weight, (int, float)) and weight > 0 and math.isfinite(weight)):
        weight = 1.0  # the Java node default
    return Candidate(f"{host}:{port}", host, float(weight))


class Refresher(Service):
    """Keeps the policy's list in step with ZooKeeper and Redis.

    A refresh reads the view, sets the servers, then asks Redis for the
    online counts. It runs every ``interval`` seconds and ``change_delay``
    seconds after a change under /cluster/cs (a burst of changes gives one
    refresh). Refreshes never overlap: one asked for while another is in
    flight runs once right after it. Failures are logged on state changes,
    never raised: the loop keeps running and the last order keeps serving.
    """

    log = Logger()

    def __init__(
        self,
        policy: AllocPolicy,
        view: ViewLike,
        cache: CacheLike,
        interval: float = DEFAULT_REFRESH_INTERVAL,
        change_delay: float = DEFAULT_CHANGE_DELAY,
        reactor: Any = None,
        timeout: float | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        if not change_delay >= 0:
            raise ValueError(f"change_delay must be >= 0, not {change_delay!r}")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.policy = policy
        self._view = view
        self._cache = cache
        self._interval = interval
        self._change_delay = change_delay
        # Bound on one count fetch: RedisService promises to fail sooner, but
        # a refresh that never ends would block every later one.
        self._timeout = interval if timeout is None else timeout
        self._reactor = reactor

        self.last_success: float | None = None  # reactor time of the last applied counts
        self.last_error: str | None = None  # why the last count fetch failed, None if it worked
        self.stale = False  # serving a list the view no longer shows
        self.refreshes = 0  # completed refreshes
        self.failures = 0  # refreshes whose count fetch failed (or that raised)
        # Called with each refresh's duration in seconds (reactor time): metrics.
        self.on_refreshed: Callable[[float], None] | None = None
        self._started = 0.0

        self._loop: LoopingCall | None = None
        self._pending_change: IDelayedCall | None = None
        self._subscribed = False
        self._busy = False
        self._again = False
        self._inflight: Deferred[Any] | None = None  # the count fetch, for cancelling
        self._waiters: list[Deferred[None]] = []
        self._unservable: set[tuple[str, str]] = set()  # (node name, reason) already logged

    # -- lifecycle ------------------------------------------------------

    def startService(self) -> None:
        if self.running:
            return
        super().startService()
        if not self._subscribed:
            # ZkWatcher has no remove_listener: subscribe once, and ignore
            # events while stopped.
            self._view.add_listener(self._on_view_event)
            self._subscribed = True
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._reactor
        # _tick never raises, so this Deferred only fires on stop.
        self._loop.start(self._interval, now=True)

    def stopService(self) -> None:
        if not self.running:
            return
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._pending_change is not None and self._pending_change.active():
            self._pending_change.cancel()
        self._pending_change = None
        self._again = False
        if self._inflight is not None:
            self._inflight.cancel()  # fires the chain now, with CancelledError

    # -- triggers -------------------------------------------------------

    def _tick(self) -> None:
        # Not returning the Deferred: the loop must keep its period even
        # when a refresh is slow; overlap is handled by refresh() itself.
        self.refresh()

    def _on_view_event(self, kind: str, event: str, node: Any) -> None:
        if kind != "cs" or not self.running:
            return
        if self._pending_change is not None and self._pending_change.active():
            return  # the scheduled refresh will read the view as it is then
        self._pending_change = self._reactor.callLater(self._change_delay, self._on_change_due)

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
        nodes = self._view.connection_servers()
        candidates = self._candidates(nodes)
        if candidates:
            if self.stale:
                self.stale = False
                self.log.info(
                    "connection servers are back in ZooKeeper ({n}); list fresh again",
                    n=len(candidates),
                )
            self.policy.set_servers(candidates)
        elif self.policy.servers:
            # The Java alloc never goes from servers to none: a client keeps
            # trying the last list, which is better than "no server".
            if not self.stale:
                self.stale = True
                self.log.warn(
                    "no servable connection server in ZooKeeper ({n} nodes, view "
                    "{state}); keeping the last list of {m} (stale)",
                    n=len(nodes),
                    state=getattr(self._view, "state", "?"),
                    m=len(self.policy.servers),
                )
        else:
            return None  # nothing known yet: GET / answers 503
        token = self.policy.begin_refresh()
        if not token.ips:
            return None
        d = maybeDeferred(self._cache.online_counts, list(token.ips))
        d.addTimeout(self._timeout, self._reactor)
        self._inflight = d
        d.addCallbacks(self._counts_ok, self._counts_failed, callbackArgs=(token,))
        return d

    def _candidates(self, nodes: Mapping[str, ServerNodeLike]) -> list[Candidate]:
        out: list[Candidate] = []
        seen: set[tuple[str, str]] = set()
        for name in sorted(nodes):  # a stable order for equal loads
            c = _candidate_or_reason(nodes[name])
            if isinstance(c, Candidate):
                out.append(c)
                continue
            seen.add((name, c))
            if (name, c) not in self._unservable:
                self.log.warn("connection server {name} left out: {reason}", name=name, reason=c)
        # Forget nodes that went away, so one that comes back is logged again
        # and the set stays bounded.
        self._unservable = seen
        return out

    def _counts_ok(self, counts: Mapping[str, int], token: RefreshToken) -> None:
        self._inflight = None
        self.policy.apply_counts(token, counts)
        self.last_success = self._reactor.seconds()
        if self.last_error is not None:
            self.log.info("online counts from Redis are back")
            self.last_error = None

    def _counts_failed(self, failure: Failure) -> None:
        self._inflight = None
        if not self.running:
            return  # cancelled by stopService: not a Redis problem
        self.failures += 1
        if failure.check(defer.TimeoutError):
            # addTimeout's own error reads "(1.0, 'Deferred')".
            message = f"no answer within {self._timeout:g} s"
        else:
            message = failure.getErrorMessage() or failure.type.__name__
        if self.last_error is None:
            self.log.warn(
                "cannot read online counts from Redis ({error}); keeping the last "
                "known order and counting handouts",
                error=message,
            )
        self.last_error = message
